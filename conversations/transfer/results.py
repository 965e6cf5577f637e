"""What an import did, shared by every importer: counts, skipped entries, refusals."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conversations.text import strip_nul

# What a report keeps of a skipped entry's title, and of a reason (which may quote a value).
TITLE_LIMIT = 200
REASON_LIMIT = 1000
_SURROGATE = re.compile("[\ud800-\udfff]")


class ImportFormatError(ValueError):
    """The file as a whole is not an export this version can read; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A conversation entry that was not imported."""

    entry: int  # 1-based position in the export's "conversations" list
    title: str
    source_id: Any
    messages: int
    reason: str
    # True when it was skipped because it is already there, False when it was unusable.
    duplicate: bool


def report_text(text: str, limit: int) -> str:
    """`text` safe to store and show in a report: no NUL, no lone surrogate, `limit` long.

    A file's JSON can hold both (as \\u0000 and \\ud800); a NUL cannot be stored by
    PostgreSQL and a lone surrogate cannot be encoded as UTF-8, so either would break the
    job page. Surrogates become U+FFFD; a longer text is cut, with an ellipsis.
    """
    text = _SURROGATE.sub("\ufffd", strip_nul(text[: limit + 1]))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def skipped(position: int, raw: Any, reason: str, *, duplicate: bool = False) -> Skipped:
    """A `Skipped` for the entry `raw` (of either format), with what can be read of it.

    The id is ChatGPT's `conversation_id` or either format's `id`; the message count is
    the length of chatsite's `messages` list or of ChatGPT's `mapping` of nodes.
    """
    info = raw if isinstance(raw, dict) else {}
    title = info.get("title")
    messages = info.get("messages")
    if not isinstance(messages, list):
        messages = info.get("mapping")
    return Skipped(
        entry=position,
        title=report_text(title, TITLE_LIMIT) if isinstance(title, str) else "",
        source_id=info.get("conversation_id") or info.get("id"),
        messages=len(messages) if isinstance(messages, list | dict) else 0,
        reason=report_text(reason, REASON_LIMIT),
        duplicate=duplicate,
    )


@dataclass
class ImportResult:
    """What an import did: counts, and every skipped entry with the reason."""

    conversations_imported: int = 0
    messages_imported: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def conversations_skipped(self) -> int:
        return len(self.skipped)

    @property
    def messages_skipped(self) -> int:
        return sum(s.messages for s in self.skipped)

    @property
    def duplicates(self) -> list[Skipped]:
        return [s for s in self.skipped if s.duplicate]

    @property
    def errors(self) -> list[Skipped]:
        return [s for s in self.skipped if not s.duplicate]

    def report(self) -> list[str]:
        """The result as lines of text for people."""
        lines = [
            f"Imported {self.conversations_imported} conversation(s) with "
            f"{self.messages_imported} message(s).",
            f"Skipped {self.conversations_skipped} conversation(s) with "
            f"{self.messages_skipped} message(s): {len(self.duplicates)} already present, "
            f"{len(self.errors)} invalid.",
        ]
        for s in self.skipped:
            label = f"entry {s.entry}"
            if s.source_id is not None:
                label += f" (id {s.source_id})"
            if s.title:
                label += f" {s.title!r}"
            kind = "already present" if s.duplicate else "invalid"
            lines.append(f"  {label}: {kind}: {s.reason}")
        return lines
