"""Whether sign-up is open by default, under chatsite's own settings in a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _signup_in_new_process(tmp_path: Path, *, page: bool = True, **env: str) -> str:
    """SIGNUP_ENABLED, and GET /accounts/signup/'s status, under chatsite's own settings."""
    code = (
        # A developer's .env must not decide what the default is.
        "import environ; environ.Env.read_env = classmethod(lambda cls, *a, **k: None);"
        "import django; django.setup();"
        "from django.conf import settings; from django.test import Client;"
        "print(settings.SIGNUP_ENABLED, end=' ');"
        + ("print(Client().get('/accounts/signup/').status_code)" if page else "print()")
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "SIGNUP_ENABLED"}
        and not k.startswith(("OPENAI_", "CHAT_", "DATABASE_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "SECRET_KEY": "x" * 50,
            "ALLOWED_HOSTS": "testserver",
            "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_it_keeps_sign_up_closed_by_default_with_debug_off(tmp_path):
    assert _signup_in_new_process(tmp_path, DEBUG="false") == "False 404"


def test_it_opens_sign_up_by_default_with_debug_on_or_when_asked(tmp_path):
    assert _signup_in_new_process(tmp_path, DEBUG="true") == "True 200"
    # (No page here: with DEBUG off it needs collectstatic's manifest.)
    assert _signup_in_new_process(tmp_path, page=False, DEBUG="false", SIGNUP_ENABLED="true") == (
        "True"
    )
