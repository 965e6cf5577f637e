"""What the model is sent for a reply: its system prompt and the turns of its branch,
fitted to the model's context window (see `llm.context`). A user message's images go
as OpenAI content parts (a text part, then `image_url` parts with data URLs) to models
that take images; others get a note naming each image instead. The branch's documents
go into the system message (`_with_documents`).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models.functions import Length

from conversations import tree
from conversations.attachments import selectors as attachment_selectors
from conversations.attachments.retrieval import document_context
from conversations.llm import registry as llm
from conversations.llm import vision
from conversations.llm.context import ChatMessage, ReplyContext, fit, prompt_budget, text_of
from conversations.models import Attachment, Message


@dataclass(frozen=True)
class BranchContext(ReplyContext):
    # The documents and passages the model is given (Message.sources), named in the footer.
    sources: list[dict[str, Any]] = field(default_factory=list)


def model_context(*, reply: Message) -> list[ChatMessage]:
    """What the model is sent for `reply` (see `reply_context`)."""
    return reply_context(reply=reply).messages


def _reasoning_fields() -> tuple[str, ...]:
    return ("reasoning",) if settings.CHAT_SEND_REASONING_BACK else ()


def _reasoning_back(turns: list[ChatMessage], path: list[Message], reply: Message) -> None:
    """Thinking is not sent back, unless CHAT_SEND_REASONING_BACK says the server needs it
    (as `reasoning_content` on its reply, the OpenAI-compatible servers' field)."""
    model = reply.model or llm.default_model()
    if not settings.CHAT_SEND_REASONING_BACK or llm.model_option(model).backend != "openai":
        return
    sent = [
        m
        for m in path
        if m.role == Message.Role.ASSISTANT
        and m.status in (Message.Status.COMPLETE, Message.Status.STOPPED)
        and m.content
    ]
    answers = [turn for turn in turns if turn["role"] == Message.Role.ASSISTANT]
    for turn, message in zip(answers, sent, strict=True):
        if message.reasoning:
            turn["reasoning_content"] = message.reasoning


def reply_context(*, reply: Message) -> BranchContext:
    """What the model is sent for `reply`: its system prompt, then the turns of its branch.

    Only the branch leading to `reply` (from the user message it answers up to the root):
    never another branch, never anything after it. Only user text (with its images) and
    finished (complete or stopped) reply text is sent — never error text, never a failed
    attempt. The system prompt, model and reply length are those recorded on `reply`. If
    it all does not fit the model's context window, the oldest turns are left out (see
    `_fit`); images count by `vision.image_tokens`.
    """
    rows = Message.objects.filter(conversation_id=reply.conversation_id).only(
        "id", "parent_id", "role", "content", "status", *_reasoning_fields()
    )
    by_id = {m.pk: m for m in rows}
    start = by_id.get(reply.parent_id) if reply.parent_id is not None else None
    path = [
        message
        for message in tree.path_to(start, by_id)
        if message.role == Message.Role.USER
        or (message.status in (Message.Status.COMPLETE, Message.Status.STOPPED) and message.content)
    ]
    model = reply.model or llm.default_model()
    attachments = _attachments(path)
    images = _images(attachments)
    turns: list[ChatMessage] = []
    costs: list[int] = []
    for message in path:
        turn, cost = _turn(message, images.get(message.pk, []), model=model)
        turns.append(turn)
        costs.append(cost)
    _reasoning_back(turns, path, reply)
    system: list[ChatMessage] = []
    if reply.system_prompt.strip():
        system.append({"role": "system", "content": reply.system_prompt})
    documents = [a for a in attachments if a.kind == Attachment.Kind.DOCUMENT]
    system, sources = _with_documents(
        system, turns, costs, path, documents, reply=reply, model=model
    )
    fitted = fit(system, turns, model=model, max_tokens=reply.max_tokens, image_tokens=costs)
    return BranchContext(fitted.messages, fitted.omitted, sources)


def _attachments(path: list[Message]) -> list[Attachment]:
    """The attachments of the branch's user messages, in one query (none: no query).

    Documents' texts (megabytes, maybe) are left out: `text_chars` says how long each is,
    and retrieval reads a text only if it might fit whole.
    """
    ids = [m.pk for m in path if m.role == Message.Role.USER]
    if not ids:
        return []
    rows = Attachment.objects.filter(message_id__in=ids).defer("text")
    return list(rows.annotate(text_chars=Length("text")).order_by("message_id", "id"))


def _images(attachments: list[Attachment]) -> dict[int, list[Attachment]]:
    found: dict[int, list[Attachment]] = defaultdict(list)
    for attachment in attachments:
        if attachment.kind == Attachment.Kind.IMAGE:
            found[attachment.message_id].append(attachment)
    return found


def _turn(message: Message, images: list[Attachment], *, model: str) -> tuple[ChatMessage, int]:
    """The turn as sent, and what its images cost in tokens."""
    if not images:
        return {"role": message.role, "content": message.content}, 0
    if not vision.takes_images(model):
        names = ", ".join(f"“{image.caption or image.name}”" for image in images)
        note = f"\n\n[Images attached here, which this model cannot see: {names}]"
        return {"role": message.role, "content": message.content + note}, 0
    parts: list[dict[str, object]] = [{"type": "text", "text": message.content}]
    for image in images:
        data = base64.b64encode(attachment_selectors.attachment_bytes(image)).decode("ascii")
        url = f"data:{image.content_type};base64,{data}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    cost = sum(vision.image_tokens(image.width or 0, image.height or 0) for image in images)
    return {"role": message.role, "content": parts}, cost


def _with_documents(
    system: list[ChatMessage],
    turns: list[ChatMessage],
    costs: list[int],
    path: list[Message],
    documents: list[Attachment],
    *,
    reply: Message,
    model: str,
) -> tuple[list[ChatMessage], list[dict[str, Any]]]:
    """`system` with the branch's documents added (see `retrieval.document_context`).

    The documents of the user messages on the branch — the question's own and earlier
    ones — in conversation order, within CHAT_DOCUMENT_CONTEXT_SHARE of what the prompt
    budget leaves after the system prompt and the question (its images included). In the
    system message, so that fitting leaves out old turns before them and they are sent
    once, not per turn.
    """
    position = {m.pk: i for i, m in enumerate(path) if m.role == Message.Role.USER}
    documents = sorted(documents, key=lambda a: (position[a.message_id], a.pk))
    if not documents:
        return system, []
    asked = turns and turns[-1]["role"] == "user"
    question = text_of(turns[-1]) if asked else ""
    fixed = llm.count_tokens(
        [{"role": str(m["role"]), "content": text_of(m)} for m in system + turns[-1:]],
        model=model,
    ) + (costs[-1] if costs else 0)
    room = prompt_budget(model=model, max_tokens=reply.max_tokens) - fixed
    found = document_context(
        documents,
        question,
        budget_tokens=int(max(0, room) * settings.CHAT_DOCUMENT_CONTEXT_SHARE),
        count=lambda text: llm.count_tokens([{"role": "system", "content": text}], model=model),
    )
    if not found.text:
        return system, []
    prompt = "\n\n".join(text_of(m) for m in system)
    content = f"{prompt}\n\n{found.text}" if prompt else found.text
    return [{"role": "system", "content": content}], [s.as_json() for s in found.sources]
