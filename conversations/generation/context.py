"""What the model is sent for a reply: its system prompt and the turns of its branch,
fitted to the model's context window (see `llm.context`).
"""

from __future__ import annotations

from django.conf import settings

from conversations import tree
from conversations.llm import registry as llm
from conversations.llm.context import ReplyContext, fit
from conversations.models import Message


def model_context(*, reply: Message) -> list[dict[str, str]]:
    """What the model is sent for `reply` (see `reply_context`)."""
    return reply_context(reply=reply).messages


def _reasoning_fields() -> tuple[str, ...]:
    return ("reasoning",) if settings.CHAT_SEND_REASONING_BACK else ()


def _reasoning_back(turns: list[dict[str, str]], path: list[Message], reply: Message) -> None:
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


def reply_context(*, reply: Message) -> ReplyContext:
    """What the model is sent for `reply`: its system prompt, then the turns of its branch.

    Only the branch leading to `reply` (from the user message it answers up to the root):
    never another branch, never anything after it. Only user text and finished (complete
    or stopped) reply text is sent — never error text, never a failed attempt. The system
    prompt, model and reply length are those recorded on `reply`. If it all does not fit
    the model's context window, the oldest turns are left out (see `_fit`).
    """
    rows = Message.objects.filter(conversation_id=reply.conversation_id).only(
        "id", "parent_id", "role", "content", "status", *_reasoning_fields()
    )
    by_id = {m.pk: m for m in rows}
    start = by_id.get(reply.parent_id) if reply.parent_id is not None else None
    turns = [
        {"role": message.role, "content": message.content}
        for message in tree.path_to(start, by_id)
        if message.role == Message.Role.USER
        or (message.status in (Message.Status.COMPLETE, Message.Status.STOPPED) and message.content)
    ]
    _reasoning_back(turns, list(tree.path_to(start, by_id)), reply)
    system = []
    if reply.system_prompt.strip():
        system.append({"role": "system", "content": reply.system_prompt})
    model = reply.model or llm.default_model()
    return fit(system, turns, model=model, max_tokens=reply.max_tokens)
