"""Reading the fields of a chatsite export's entries: text, numbers, times, ids and a
reply's sources, each refused with a reason (`Invalid`) that names the field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conversations.text import strip_nul
from conversations.transfer.saving import EARLIEST, LATEST


class Invalid(Exception):
    """One conversation entry cannot be imported; the message says why."""


def timestamp(value: Any, what: str) -> datetime:
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise Invalid(f"{what} is not a date and time: {value!r}")
    try:
        # Exports always carry an offset; a hand-made file without one is taken as UTC.
        parsed = parsed.astimezone(UTC) if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    except OverflowError:
        parsed = None
    if parsed is None or not EARLIEST <= parsed < LATEST:
        raise Invalid(f"{what} is out of range (1970 to 9000): {value!r}")
    return parsed


def optional_timestamp(raw: dict[str, Any], key: str, what: str) -> datetime | None:
    # Exports made before reasoning was kept have none: that is no error.
    value = raw.get(key)
    return None if value is None else timestamp(value, f"{what}: {key}")


MAX_SOURCES = 50


def sources(raw: dict[str, Any], what: str) -> list[dict[str, str]]:
    """The documents a reply was given, as its footer names them: [{"name", "passages"}].

    Only names and labels come in (the attachments they pointed at have new ids here).
    """
    found = raw.get("sources")
    if found is None:
        return []
    if not isinstance(found, list) or len(found) > MAX_SOURCES:
        raise Invalid(f"{what}: sources is not a list of at most {MAX_SOURCES} documents")
    kept = []
    for source in found:
        if not isinstance(source, dict):
            raise Invalid(f"{what}: a source is not an object")
        name, passages = text(source, "name", what)[:255], text(source, "passages", what)[:200]
        if name:
            kept.append({"name": name, "passages": passages})
    return kept


def text(raw: dict[str, Any], key: str, what: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{what}: {key} is not text")
    return strip_nul(value)


def number(raw: dict[str, Any], key: str, what: str, kind: type[Any]) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{what}: {key} is not a number")
    if kind is int and (not float(value).is_integer()):
        raise Invalid(f"{what}: {key} is not a whole number")
    if not math.isfinite(value):
        raise Invalid(f"{what}: {key} is not a finite number")
    return kind(value)


def is_id(value: Any) -> bool:
    """Whether `value` can be a message id of an export (an int or a str)."""
    return isinstance(value, int | str) and not isinstance(value, bool)
