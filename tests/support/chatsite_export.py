"""Builders of chatsite JSON exports for the import tests."""

from __future__ import annotations

from conversations.transfer import export


def entry(title: str, **changes) -> dict:
    """A minimal valid chatsite export entry with two messages."""
    raw = {
        "id": 1,
        "owner": "alice",
        "title": title,
        "model": "fake-model",
        "system_prompt": "",
        "created": "2024-01-01T00:00:00+00:00",
        "messages": [
            {
                "id": 1,
                "parent_id": None,
                "role": "user",
                "content": "Q",
                "created": "2024-01-01T00:00:01+00:00",
            },
            {
                "id": 2,
                "parent_id": 1,
                "role": "assistant",
                "content": "A",
                "created": "2024-01-01T00:00:02+00:00",
            },
        ],
    }
    raw.update(changes)
    return raw


def document(*entries: dict) -> dict:
    return {"format": export.FORMAT, "version": export.VERSION, "conversations": list(entries)}
