"""What the model is sent for a reply: its system prompt and the turns of its branch,
fitted to the model's context window (see `llm.context`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models.functions import Length

from conversations import tree
from conversations.attachments.retrieval import document_context
from conversations.llm import registry as llm
from conversations.llm.context import ReplyContext, fit, prompt_budget
from conversations.models import Attachment, Message


@dataclass(frozen=True)
class BranchContext(ReplyContext):
    # The documents and passages the model is given (Message.sources), named in the footer.
    sources: list[dict[str, Any]] = field(default_factory=list)


def model_context(*, reply: Message) -> list[dict[str, str]]:
    """What the model is sent for `reply` (see `reply_context`)."""
    return reply_context(reply=reply).messages


def reply_context(*, reply: Message) -> BranchContext:
    """What the model is sent for `reply`: its system prompt, then the turns of its branch.

    Only the branch leading to `reply` (from the user message it answers up to the root):
    never another branch, never anything after it. Only user text and finished (complete
    or stopped) reply text is sent — never error text, never a failed attempt. The system
    prompt, model and reply length are those recorded on `reply`. If it all does not fit
    the model's context window, the oldest turns are left out (see `_fit`).
    """
    rows = Message.objects.filter(conversation_id=reply.conversation_id).only(
        "id", "parent_id", "role", "content", "status"
    )
    by_id = {m.pk: m for m in rows}
    start = by_id.get(reply.parent_id) if reply.parent_id is not None else None
    path = tree.path_to(start, by_id)
    turns = [
        {"role": message.role, "content": message.content}
        for message in path
        if message.role == Message.Role.USER
        or (message.status in (Message.Status.COMPLETE, Message.Status.STOPPED) and message.content)
    ]
    system = []
    if reply.system_prompt.strip():
        system.append({"role": "system", "content": reply.system_prompt})
    model = reply.model or llm.default_model()
    system, sources = _with_documents(system, turns, path, reply=reply, model=model)
    fitted = fit(system, turns, model=model, max_tokens=reply.max_tokens)
    return BranchContext(fitted.messages, fitted.omitted, sources)


def _with_documents(
    system: list[dict[str, str]],
    turns: list[dict[str, str]],
    path: list[Message],
    *,
    reply: Message,
    model: str,
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """`system` with the branch's documents added (see `retrieval.document_context`).

    The documents of the user messages on the branch — the question's own and earlier
    ones — in conversation order, within CHAT_DOCUMENT_CONTEXT_SHARE of what the prompt
    budget leaves after the system prompt and the question. In the system message, so
    that fitting leaves out old turns before them and they are sent once, not per turn.
    """
    position = {m.pk: i for i, m in enumerate(path) if m.role == Message.Role.USER}
    # The texts (megabytes, maybe) are read only if they might fit whole.
    rows = (
        Attachment.objects.filter(message_id__in=list(position), kind=Attachment.Kind.DOCUMENT)
        .defer("text")
        .annotate(text_chars=Length("text"))
    )
    documents = sorted(rows, key=lambda a: (position[a.message_id], a.pk))
    if not documents:
        return system, []
    question = _text(turns[-1]["content"]) if turns and turns[-1]["role"] == "user" else ""
    fixed = llm.count_tokens(system + turns[-1:], model=model)
    room = prompt_budget(model=model, max_tokens=reply.max_tokens) - fixed
    found = document_context(
        documents,
        question,
        budget_tokens=int(max(0, room) * settings.CHAT_DOCUMENT_CONTEXT_SHARE),
        count=lambda text: llm.count_tokens([{"role": "system", "content": text}], model=model),
    )
    if not found.text:
        return system, []
    prompt = "\n\n".join(m["content"] for m in system)
    content = f"{prompt}\n\n{found.text}" if prompt else found.text
    return [{"role": "system", "content": content}], [s.as_json() for s in found.sources]


def _text(content: object) -> str:
    """The text of a message's content: a string, or the text parts of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
