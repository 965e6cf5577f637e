"""Small text rules used everywhere, each written once."""

from __future__ import annotations


def strip_nul(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL cannot store in text columns.

    Models, providers and imported files can all produce them.
    """
    return text.replace("\x00", "")


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())
