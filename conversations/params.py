"""Reading ids, pages and cursors from requests: the one rule for each."""

from __future__ import annotations

import re

# A database id: 1 to 18 ASCII digits, so it always fits a 64-bit integer (a longer one
# would reach the database, and SQLite raises OverflowError: a 500).
ID_PATTERN = "[0-9]{1,18}"
_ID = re.compile(rf"{ID_PATTERN}\Z", re.ASCII)


class IdConverter:
    """The `<id:...>` URL converter: ID_PATTERN, as an int."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


def parse_id(value: object) -> int | None:
    """An id from a query string or form field, or None if it is not one."""
    if not isinstance(value, str) or not _ID.match(value):
        return None
    return int(value)


def parse_ids(values: list[str]) -> list[int] | None:
    """Every value an id, or None if any is not one (a bad selection is refused whole)."""
    ids = [parse_id(value) for value in values]
    return None if any(i is None for i in ids) else [i for i in ids if i is not None]


def parse_page(value: object, *, maximum: int) -> int:
    """A page number from 1 to `maximum`; anything else is page 1."""
    number = parse_id(value)
    return min(number, maximum) if number else 1
