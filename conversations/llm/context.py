"""The prompt budget and fitting it: leave out the oldest whole turns until the rest fits
the model's context window. Pure: counting goes through `registry.count_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conversations.llm import registry as llm

TRUNCATED_NOTE = "[The start of this message was left out to fit the model's context window.]\n\n…"


@dataclass(frozen=True)
class ReplyContext:
    messages: list[dict[str, str]]
    omitted: int  # earlier messages left out to fit the model's context window


def prompt_budget(*, model: str, max_tokens: int | None) -> int:
    """Tokens the context may take: the model's window less what the reply needs.

    The reply needs its maximum length, or without one a reserve (1024 tokens, less for
    small windows); never more than half the window, so a huge maximum still leaves room.
    """
    window = llm.model_option(model).context_window
    reserve = max_tokens or min(1024, window // 4)
    return window - min(reserve, window // 2)


def fit(
    system: list[dict[str, str]],
    turns: list[dict[str, str]],
    *,
    model: str,
    max_tokens: int | None,
) -> ReplyContext:
    """Leave out the oldest whole turns (a question and its replies) until the rest fits.

    The system prompt and the newest message always stay; if even they do not fit, the
    newest message loses its start (with a note saying so) rather than the call failing.
    """
    budget = prompt_budget(model=model, max_tokens=max_tokens)

    def fits(messages: list[dict[str, str]]) -> bool:
        return llm.count_tokens(messages, model=model) <= budget

    if not turns or fits(system + turns):
        return ReplyContext(system + turns, 0)
    # Turns start at each user message; the last one (the question answered) always stays.
    starts = [i for i, turn in enumerate(turns) if turn["role"] == "user" and i > 0]
    cuts = sorted({0, *starts, len(turns) - 1})
    # Fewest turns left out that fits: the count shrinks as more are left out (bisect).
    low, high = min(1, len(cuts) - 1), len(cuts) - 1
    while low < high:
        middle = (low + high) // 2
        if fits(system + turns[cuts[middle] :]):
            high = middle
        else:
            low = middle + 1
    kept = turns[cuts[low] :]
    if low < len(cuts) - 1 or fits(system + kept):
        return ReplyContext(system + kept, cuts[low])
    return ReplyContext(system + _truncated(system, kept[-1], fits), len(turns) - 1)


def _truncated(
    system: list[dict[str, str]], last: dict[str, str], fits: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """`last` with as much of its end as fits after the system prompt, behind a note."""
    text = last["content"]

    def shortened(keep: int) -> list[dict[str, str]]:
        return [{"role": last["role"], "content": TRUNCATED_NOTE + text[len(text) - keep :]}]

    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(system + shortened(middle)):
            low = middle
        else:
            high = middle - 1
    return shortened(low)
