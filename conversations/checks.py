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


@checks.register(TAG)
def check_attachments(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Attachment limits that would refuse every image, or take any size of one."""
    problems: list[checks.CheckMessage] = []
    for name, least in (
        ("CHAT_ATTACHMENTS_PER_MESSAGE", 0),
        ("CHAT_ATTACHMENT_MAX_BYTES", 1),
        ("CHAT_IMAGE_MAX_PIXELS", 1),
        ("CHAT_IMAGE_MAX_SIDE", 64),
        ("CHAT_IMAGE_TOKENS", 0),
    ):
        value = getattr(settings, name)
        if not isinstance(value, int) or value < least:
            problems.append(
                checks.Error(
                    f"{name} is {value!r}.",
                    hint=f"Set {name} to a whole number of at least {least}.",
                    id="chatsite.E004",
                )
            )
    public = str(settings.MEDIA_ROOT).rstrip("/")
    if public and public == str(settings.STATIC_ROOT).rstrip("/"):
        problems.append(
            checks.Error(
                "MEDIA_ROOT is STATIC_ROOT: attachments would be served to anyone.",
                hint="Give MEDIA_ROOT a folder of its own, outside STATIC_ROOT.",
                id="chatsite.E005",
            )
        )
    return problems


@checks.register(TAG)
def check_document_limits(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    # The PDF/Word parser's child needs ~100 MB of address space to start (Python, pypdf,
    # lxml): less and every PDF would be refused as "too much memory".
    problems = []
    if settings.CHAT_DOCUMENT_MAX_MEMORY < 256 * 1024 * 1024:
        problems.append(("CHAT_DOCUMENT_MAX_MEMORY", "at least 268435456 (256 MiB)"))
    if settings.CHAT_DOCUMENT_MAX_SECONDS < 1:
        problems.append(("CHAT_DOCUMENT_MAX_SECONDS", "at least 1 (second)"))
    if not 0 < settings.CHAT_DOCUMENT_CONTEXT_SHARE <= 1:
        problems.append(("CHAT_DOCUMENT_CONTEXT_SHARE", "a share above 0 and at most 1"))
    for name in (
        "CHAT_DOCUMENT_MAX_BYTES",
        "CHAT_DOCUMENT_MAX_PAGES",
        "CHAT_DOCUMENT_MAX_CHARS",
        "CHAT_DOCUMENT_MAX_PARALLEL",
    ):
        if getattr(settings, name) < 1:
            problems.append((name, "at least 1"))
    return [
        checks.Error(
            f"{name} is {getattr(settings, name)!r}.",
            hint=f"Set {name} to {fix}.",
            id="chatsite.E021",
        )
        for name, fix in problems
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
