"""TODO docstring."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.conf import settings

from conversations.llm import registry as llm

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class ConversationSettings:
    """What a conversation's replies are generated with; None: the site's default."""

    model: str
    system_prompt: str
    temperature: float | None = None
    max_tokens: int | None = None


def conversation_defaults() -> ConversationSettings:
    """The settings of a new conversation, from the site's configuration."""
    return ConversationSettings(
        model=llm.default_model(), system_prompt=settings.CHAT_SYSTEM_PROMPT
    )
