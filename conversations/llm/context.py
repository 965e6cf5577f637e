"""The prompt budget and fitting it: leave out the oldest whole turns until the rest fits
the model's context window. Pure: counting goes through `registry.count_tokens`, and
images (content parts) count what their turn says they cost (`vision.image_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conversations.llm import registry as llm

TRUNCATED_NOTE = "[The start of this message was left out to fit the model's context window.]\n\n…"

# A message as sent: "content" is text, or OpenAI content parts (text and image_url).
ChatMessage = dict[str, Any]


@dataclass(frozen=True)
class ReplyContext:
    messages: list[ChatMessage]
    omitted: int  # earlier messages left out to fit the model's context window


def prompt_budget(*, model: str, max_tokens: int | None) -> int:
    """Tokens the context may take: the model's window less what the reply needs.

    The reply needs its maximum length, or without one a reserve (1024 tokens, less for
    small windows); never more than half the window, so a huge maximum still leaves room.
    """
    window = llm.model_option(model).context_window
    reserve = max_tokens or min(1024, window // 4)
    return window - min(reserve, window // 2)


def text_of(message: ChatMessage) -> str:
    """A message's text: its content, or the text parts of its content parts."""
    content = message.get("content", "")
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def _as_text(message: ChatMessage) -> dict[str, str]:
    counted = {"role": str(message["role"]), "content": text_of(message)}
    if "reasoning_content" in message:
        # Thinking sent back (CHAT_SEND_REASONING_BACK) takes room too.
        counted["reasoning_content"] = str(message["reasoning_content"])
    return counted


def fit(
    system: list[ChatMessage],
    turns: list[ChatMessage],
    *,
    model: str,
    max_tokens: int | None,
    image_tokens: Sequence[int] = (),
) -> ReplyContext:
    """Leave out the oldest whole turns (a question and its replies) until the rest fits.

    `image_tokens[i]` is what the images of `turns[i]` cost (none where it is shorter).
    The system prompt and the newest message always stay; if even they do not fit, the
    newest message loses the start of its text (with a note saying so; its images stay)
    rather than the call failing.
    """
    budget = prompt_budget(model=model, max_tokens=max_tokens)
    images = [*image_tokens, *[0] * (len(turns) - len(image_tokens))]

    def fits(start: int, last: ChatMessage | None = None) -> bool:
        """Whether the system prompt and turns[start:] (the newest as `last`) fit."""
        kept = turns[start:]
        if last is not None:
            kept = [*kept[:-1], last]
        counted = llm.count_tokens([_as_text(m) for m in system + kept], model=model)
        return counted + sum(images[start:]) <= budget

    if not turns or fits(0):
        return ReplyContext(system + turns, 0)
    # Turns start at each user message; the last one (the question answered) always stays.
    starts = [i for i, turn in enumerate(turns) if turn["role"] == "user" and i > 0]
    cuts = sorted({0, *starts, len(turns) - 1})
    # Fewest turns left out that fits: the count shrinks as more are left out (bisect).
    low, high = min(1, len(cuts) - 1), len(cuts) - 1
    while low < high:
        middle = (low + high) // 2
        if fits(cuts[middle]):
            high = middle
        else:
            low = middle + 1
    start = cuts[low]
    if low < len(cuts) - 1 or fits(start):
        return ReplyContext(system + turns[start:], start)
    last = _truncated(turns[-1], lambda message: fits(start, message))
    return ReplyContext([*system, last], len(turns) - 1)


def _with_text(message: ChatMessage, text: str) -> ChatMessage:
    content = message.get("content")
    if isinstance(content, list):
        parts = [part for part in content if part.get("type") != "text"]
        return {**message, "content": [{"type": "text", "text": text}, *parts]}
    return {**message, "content": text}


def _truncated(last: ChatMessage, fits: Callable[[ChatMessage], bool]) -> ChatMessage:
    """`last` with as much of the end of its text as fits after the system prompt, behind a note."""
    text = text_of(last)

    def shortened(keep: int) -> ChatMessage:
        return _with_text(last, TRUNCATED_NOTE + text[len(text) - keep :])

    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(shortened(middle)):
            low = middle
        else:
            high = middle - 1
    return shortened(low)
