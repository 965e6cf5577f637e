"""TODO docstring."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class ImportFormatError(ValueError):
    """The data as a whole is not a chatsite export this version can read."""


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
