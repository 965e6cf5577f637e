"""Settings that cannot be right stop the start with a system check, under any server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, *code.split()]
        if code.endswith(".py check")
        else [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_server_started_without_manage_py_refuses_a_missing_secret_key(tmp_path):
    result = _run("import chatsite.asgi", {"DEBUG": "false", "SECRET_KEY": ""}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    ok = _run("import chatsite.asgi", {"DEBUG": "false", "SECRET_KEY": "k" * 50}, tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_an_unknown_backend_and_a_too_short_stale_time_are_refused_with_the_fix(tmp_path):
    key = {"DEBUG": "false", "SECRET_KEY": "k" * 50}
    result = _run("manage.py check", {**key, "LLM_BACKEND": "ollama"}, tmp_path)
    assert result.returncode != 0
    assert "chatsite.E002" in result.stderr and "auto, local or openai" in result.stderr
    result = _run("manage.py check", {**key, "CHAT_STALE_AFTER": "3"}, tmp_path)
    assert result.returncode != 0
    assert "chatsite.E003" in result.stderr and "at least 4" in result.stderr
    result = _run("import chatsite.wsgi", {**key, "CHAT_STALE_AFTER": "3"}, tmp_path)
    assert result.returncode != 0 and "CHAT_STALE_AFTER" in result.stderr
