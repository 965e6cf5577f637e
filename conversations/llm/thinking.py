"""Reasoning written inside the text: `<think>…</think>`, found as the text streams.

llama.cpp and local GGUF models (and OpenAI-compatible servers that do not parse it out)
send a reasoning model's thinking in the answer's text, between `<think>` and `</think>`.
DeepSeek-R1 distills often omit the opening tag (their chat template puts it in the
prompt): text that ends with `</think>` before any answer was reasoning all along.

`ThinkSplitter` reads the text piece by piece — a tag may be split across pieces at any
character — and says what is reasoning and what is answer. Each piece costs what the
piece costs, whatever the length of the reply. Pure: no project imports.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "<think>"
CLOSE = "</think>"


@dataclass(frozen=True)
class Split:
    """What a piece of text turned out to be.

    `rethink`: the answer text given so far (all of it) was reasoning: it moves, whole, to
    the reasoning (this happens at most once, at a closing tag with no opening one).
    """

    answer: str = ""
    reasoning: str = ""
    rethink: bool = False


def _held_back(text: str, tag: str) -> int:
    """How many characters at the end of `text` may be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """Splits a streamed text into reasoning and answer (see the module's docstring).

    States: "start" (nothing but whitespace yet: an opening tag may come), "maybe" (answer
    text with no tag so far: a closing tag would make it reasoning), "think" (inside
    `<think>`), "answer" (after `</think>`, or once reasoning came by other means).
    """

    def __init__(self) -> None:
        self.state = "start"
        self._pending = ""  # text held back: it may be the start of a tag
        self._lead = ""  # whitespace at the very start, before we know what it is
        self._after_close = False  # strip the whitespace that follows `</think>`

    def no_rethink(self) -> None:
        """Reasoning came apart from the text (a server's own field): the text is answer."""
        if self.state in ("start", "maybe"):
            self.state = "answer"

    def feed(self, piece: str) -> Split:
        text = self._pending + piece
        self._pending = ""
        answer: list[str] = []
        reasoning: list[str] = []
        rethink = False
        while text:
            if self.state == "start":
                stripped = text.lstrip()
                lead = text[: len(text) - len(stripped)]
                if not stripped:
                    self._lead += lead
                    return Split()
                if stripped.startswith(OPEN):
                    self.state, self._lead = "think", ""
                    text = stripped[len(OPEN) :]
                    continue
                if OPEN.startswith(stripped):
                    self._lead += lead
                    self._pending = stripped
                    break
                self.state = "maybe"
                text, self._lead = self._lead + text, ""
                continue
            if self.state in ("maybe", "think"):
                at = text.find(CLOSE)
                if at >= 0:
                    before, text = text[:at], text[at + len(CLOSE) :]
                    if self.state == "maybe":
                        rethink = True
                        answer = []
                    reasoning.append(before)
                    self.state, self._after_close = "answer", True
                    continue
                keep = _held_back(text, CLOSE)
                body, self._pending = text[: len(text) - keep], text[len(text) - keep :]
                (answer if self.state == "maybe" else reasoning).append(body)
                break
            # "answer"
            if self._after_close:
                stripped = text.lstrip()
                if not stripped:
                    break
                self._after_close = False
                text = stripped
            answer.append(text)
            break
        if rethink:
            # The closing tag ended what was given as answer: it is all reasoning now,
            # with what came in this piece before the tag.
            return Split(answer="".join(answer), reasoning="".join(reasoning), rethink=True)
        return Split(answer="".join(answer), reasoning="".join(reasoning))

    def flush(self) -> Split:
        """The end of the text: what was held back is what it looked like."""
        held, self._pending = self._pending, ""
        if self.state == "think":
            return Split(reasoning=held)
        if self.state == "start":
            return Split(answer=self._lead + held)
        if self._after_close:
            held = held.lstrip()
        return Split(answer=held)
