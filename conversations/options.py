"""The per-conversation settings value object: model, system prompt, temperature and
maximum reply length (None: the site's default).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConversationSettings:
    """What a conversation's replies are generated with; None: the site's default."""

    model: str
    system_prompt: str
    temperature: float | None = None
    max_tokens: int | None = None
