"""A document's text as passages of a few hundred tokens (AttachmentChunk rows).

Passages end at paragraph breaks where they can, else at sentence ends, else at a space;
a new page always starts a new passage, so each knows the page it comes from.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from itertools import pairwise

from django.db import transaction

from conversations.models import Attachment, AttachmentChunk

# ~300 tokens of English at about 4 characters a token; never more than ~500.
TARGET_CHARS = 1200
MAX_CHARS = 2000

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def passages(text: str, page_starts: list[int]) -> Iterator[tuple[int, int]]:
    """(start, end) offsets in `text` of its passages, in order, none empty."""
    bounds = sorted({0, *(s for s in page_starts if 0 < s < len(text)), len(text)})
    for page_start, page_end in pairwise(bounds):
        yield from _pack(_units(text, page_start, page_end))


def _units(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Paragraphs of text[start:end], those over MAX_CHARS split at sentences or spaces."""
    position = start
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        yield from _small(text, position, match.start())
        position = match.end()
    yield from _small(text, position, end)


def _small(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return
    if end - start <= MAX_CHARS:
        yield start, end
        return
    # Sentences as units: `_pack` joins them again up to the target.
    position = start
    for match in _SENTENCE_END.finditer(text, start, end):
        yield from _hard(text, position, match.start())
        position = match.end()
    yield from _hard(text, position, end)


def _hard(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Pieces of at most MAX_CHARS, cut at the last space before the limit where there is one."""
    while end - start > MAX_CHARS:
        cut = text.rfind(" ", start + TARGET_CHARS, start + MAX_CHARS)
        cut = cut if cut != -1 else start + MAX_CHARS
        yield start, cut
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        yield start, end


def _pack(units: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Neighbouring units joined while the passage stays within TARGET_CHARS."""
    current: tuple[int, int] | None = None
    for start, end in units:
        if current is None:
            current = (start, end)
        elif end - current[0] <= TARGET_CHARS:
            current = (current[0], end)
        else:
            yield current
            current = (start, end)
    if current is not None:
        yield current


def page_of(offset: int, page_starts: list[int]) -> int | None:
    """The 1-based page holding `offset`, None without pages."""
    if not page_starts:
        return None
    return max(1, bisect_right(page_starts, offset))


@transaction.atomic
def save_passages(
    attachment: Attachment, text: str, *, pages: int | None, page_starts: list[int]
) -> None:
    """Write `text`'s passages as `attachment`'s AttachmentChunk rows (replacing any).

    Also records the text and page count on the attachment when it does not have them yet,
    so retrieval and the whole-text path read the same text.
    """
    if attachment.text != text or attachment.pages != pages:
        Attachment.objects.filter(pk=attachment.pk).update(text=text, pages=pages)
        attachment.text, attachment.pages = text, pages
    AttachmentChunk.objects.filter(attachment=attachment).delete()
    rows = [
        AttachmentChunk(
            attachment=attachment,
            index=index,
            page_from=page_of(start, page_starts),
            page_to=page_of(end - 1, page_starts),
            text=text[start:end],
        )
        for index, (start, end) in enumerate(passages(text, page_starts))
    ]
    AttachmentChunk.objects.bulk_create(rows, batch_size=500)
