"""The README's production recipe passes `manage.py check --deploy` with no issue at all."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_production_environment() -> dict[str, str]:
    """The variables the `export` of README's "Running in production" recipe sets."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running in production", 1)[1]
    recipe = section.split("```sh", 1)[1].split("```", 1)[0]
    export = re.search(r"^export (.*?)(?<!\\)$", recipe, re.M | re.S)
    assert export, recipe
    words = shlex.split(export.group(1).replace("\\\n", " "))
    return dict(word.split("=", 1) for word in words)


def _deploy_check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of the test process's environment (its pinned variables) gets in: only what
    # the recipe sets, and where to write.
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_readme_production_recipe_passes_the_deploy_check_without_warnings(tmp_path):
    env = readme_production_environment()
    assert env["SECRET_KEY"] == "..." and env["DATABASE_URL"].startswith("postgres://")
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    # The check connects to no database; SQLite keeps any chance of it off a real server.
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    result = _deploy_check(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_hsts_ssl_redirect_and_the_proxy_header_come_from_the_environment(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SECURE_PROXY_SSL_HEADER,"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    )
    base = {"DEBUG": "false", "SECRET_KEY": "k" * 50}
    env = {
        **base,
        "SECURE_HSTS_SECONDS": "3600",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    }

    def settings_with(env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={
                "PATH": os.environ.get("PATH", ""),
                "DJANGO_SETTINGS_MODULE": "chatsite.settings",
                "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert settings_with(env) == "3600 True ('HTTP_X_FORWARDED_PROTO', 'https') True True"
    # Secure cookies are the default of a server, not of your own machine.
    assert settings_with(base).endswith("True True")
    assert settings_with({**base, "DEBUG": "true"}).endswith("False False")
