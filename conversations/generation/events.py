"""The one vocabulary of a reply's stream events, and the words of its phases.

`web.stream` produces them; templates (through the `sse` context variable) and
static/chatsite/chat.js (through the `data-sse-*` attributes of <body>) read their names
from here, so a name is written once.
"""

from __future__ import annotations

from enum import StrEnum


class StreamEvent(StrEnum):
    """Server-sent event names of `/c/<id>/m/<id>/stream/`."""

    # What the reply waits for before its first text (queued, loading the model…).
    PHASE = "phase"
    # New text, escaped; the event id is the length so far (to resume from Last-Event-ID).
    DELTA = "delta"
    # Markdown blocks just finished, as sanitized HTML: appended, each rendered once.
    BLOCK = "block"
    # The open (last, unfinished) block as sanitized HTML, throttled: it replaces the last.
    TAIL = "tail"
    # Reasoning, as the same three: escaped new thinking (for clients that ask deltas),
    # finished blocks (appended) and the open block (replaces the last), sanitized HTML.
    THINK_DELTA = "think-delta"
    THINK_BLOCK = "think-block"
    THINK_TAIL = "think-tail"
    # The answer began: "Thought for N s", escaped (the page folds the thinking).
    THOUGHT = "thought"
    # The answer so far was reasoning (`</think>` with no `<think>`): the page empties the
    # answer and the thinking; the events that follow bring both anew.
    RESET = "reset"
    # The finished message's HTML; the stream ends.
    DONE = "done"


def names() -> dict[str, str]:
    """{"phase": "phase", …}: for templates, which must not call an Enum class."""
    return {event.name.lower(): event.value for event in StreamEvent}


def thought_text(ms: int) -> str:
    """The thinking block's title once the answer began."""
    return f"Thought for {max(1, round(ms / 1000))} s"


def phase_text(phase: str, ahead: int) -> str:
    """What a reply is waiting for, in words ("" once it writes)."""
    if phase == "queued":
        waiting = f"{ahead} other {'reply' if ahead == 1 else 'replies'} first" if ahead else "next"
        return f"Queued: the model is busy with other replies (this one is {waiting})…"
    if phase == "loading":
        return "Loading the model (the first reply after a start takes a moment)…"
    return "Thinking…" if phase else ""
