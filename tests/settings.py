"""Test settings: chatsite's own settings, fed a safe environment first.

Values are forced (not defaulted) so that a developer's `.env` — with a real API key,
say — can never reach the tests. The model server is whatever the `fake_openai`
fixture starts on 127.0.0.1; until then requests go to a closed loopback port.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_tmp = Path(tempfile.gettempdir()) / f"chatsite-tests-{os.getpid()}"
_tmp.mkdir(parents=True, exist_ok=True)

os.environ.update(
    {
        "SECRET_KEY": "tests-only-secret-key-that-is-long-and-not-insecure-prefixed",
        "DEBUG": "false",
        "OPENAI_API_KEY": "sk-test-key-never-sent-anywhere-but-loopback",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_MODEL": "fake-model",
        "OPENAI_MODELS": "",
        "LLM_BACKEND": "auto",
        "LOCAL_MODEL_PATH": "",
        "CHAT_TEMPERATURE": "",
        "CHAT_MAX_TOKENS": "0",
        "CHAT_CONTEXT_WINDOWS": "",
        "CHAT_CONTEXT_WINDOW": "8192",
        "OPENAI_TIMEOUT": "5",
        "OPENAI_MAX_RETRIES": "0",
        "CHAT_SYSTEM_PROMPT": "You are a test assistant.",
        "CHAT_SAVE_INTERVAL": "0.05",
        # No sweep behind a test's back: tests that need one call it (or start their own).
        "CHAT_SWEEP_INTERVAL": "3600",
        # Off unless a test turns it on: a title request would take a scripted fake reply.
        "CHAT_AUTO_TITLE": "false",
        "CHAT_TITLE_TIMEOUT": "3",
        "SIGNUP_ENABLED": "true",
        "WHITENOISE_USE_FINDERS": "true",
    }
)
os.environ.setdefault("CHAT_LOG_FILE", str(_tmp / "chat.log"))
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_tmp / 'db.sqlite3'}")

from chatsite.settings import *  # noqa: E402, F403
from chatsite.settings import DATABASES  # noqa: E402

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
STATIC_ROOT = _tmp / "static"
STATIC_ROOT.mkdir(exist_ok=True)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not shared-cache memory: the generation thread and the test thread each
    # hold a connection, and in-memory shared cache locks whole tables between them.
    DATABASES["default"]["TEST"] = {"NAME": str(_tmp / "test.sqlite3")}
