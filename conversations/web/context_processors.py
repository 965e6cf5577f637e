"""What every page's template gets: whether a model can answer, the default model, sign-up,
password reset,
and the stream's event names.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from conversations.generation import events
from conversations.llm import registry as llm


def chat(request: HttpRequest) -> dict[str, Any]:
    return {
        "llm_configured": llm.is_configured(),
        "default_model": llm.default_model(),
        "signup_enabled": settings.SIGNUP_ENABLED,
        "password_reset_enabled": settings.PASSWORD_RESET_ENABLED,
        # The stream's event names, for sse-swap attributes and chat.js (one definition).
        "sse": events.names(),
    }
