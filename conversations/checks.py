"""System checks: settings that cannot be right stop the start, with what to do instead.

They run with every management command that checks (runserver, migrate, check) and, for
servers started without manage.py (uvicorn, gunicorn), when chatsite/asgi.py or wsgi.py
loads the app: `refuse_to_start_if_misconfigured`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

TAG = "chatsite"
PLACEHOLDER_KEYS = {"", "change-me"}


@checks.register(TAG)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    key = settings.SECRET_KEY
    if settings.DEBUG or (key not in PLACEHOLDER_KEYS and not key.startswith("django-insecure")):
        return []
    return [
        checks.Error(
            "SECRET_KEY is not set. With DEBUG off, chatsite refuses to start without a real "
            "secret key.",
            hint="Set SECRET_KEY in the environment or in .env, e.g. the output of: "
            'python -c "import secrets; print(secrets.token_urlsafe(50))"',
            id="chatsite.E001",
        )
    ]


@checks.register(TAG)
def check_backend(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.LLM_BACKEND in ("auto", "local", "openai"):
        return []
    return [
        checks.Error(
            f"LLM_BACKEND is {settings.LLM_BACKEND!r}.",
            hint="Set LLM_BACKEND to auto, local or openai.",
            id="chatsite.E002",
        )
    ]


@checks.register(TAG)
def check_stale_after(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    # A live generation renews its lease every CHAT_STALE_AFTER / 4 seconds, but not more
    # often than every 0.5 s: below 4 s a busy database could let a live reply expire.
    if settings.CHAT_STALE_AFTER >= 4:
        return []
    return [
        checks.Error(
            f"CHAT_STALE_AFTER is {settings.CHAT_STALE_AFTER:g} seconds.",
            hint="Set CHAT_STALE_AFTER to at least 4 (seconds).",
            id="chatsite.E003",
        )
    ]


def refuse_to_start_if_misconfigured() -> None:
    """Raise ImproperlyConfigured, listing every problem, if a check above fails."""
    errors = [e for e in checks.run_checks(tags=[TAG]) if e.is_serious()]
    if errors:
        raise ImproperlyConfigured("\n".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))


@checks.register(TAG)
def check_send_reasoning_back(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    # Set in a settings file rather than the environment, "false" would be taken as true.
    value = getattr(settings, "CHAT_SEND_REASONING_BACK", False)
    if isinstance(value, bool):
        return []
    return [
        checks.Error(
            f"CHAT_SEND_REASONING_BACK is {value!r}, not True or False.",
            hint="Set CHAT_SEND_REASONING_BACK to true or false (in .env: "
            "CHAT_SEND_REASONING_BACK=true).",
            id="chatsite.E004",
        )
    ]
