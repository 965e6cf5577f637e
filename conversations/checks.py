"""System checks: settings that cannot be right stop the start with a clear message."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    if settings.LLM_BACKEND not in ("auto", "local", "openai"):
        errors.append(
            Error(
                f"LLM_BACKEND is {settings.LLM_BACKEND!r}.",
                hint="Set LLM_BACKEND to auto, local or openai.",
                id="chatsite.E001",
            )
        )
    return errors
