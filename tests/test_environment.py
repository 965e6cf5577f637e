"""The tests run in an environment of their own: nothing from a developer's `.env` gets in.

chatsite/settings.py reads `.env` with django-environ's `read_env`, which only sets variables
not already set. tests/settings.py sets every variable chatsite/settings.py reads before
that, so no `.env` value can reach the tests. These tests check both halves, and write
nothing to the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import environ
from django.conf import settings as django_settings

from tests import settings as test_settings

ROOT = Path(__file__).resolve().parent.parent
CHATSITE_SETTINGS = (ROOT / "chatsite" / "settings.py").read_text()


def names_read_by_chatsite() -> set[str]:
    """Every NAME of an env("NAME") or env.<type>("NAME") call in chatsite/settings.py."""
    return set(re.findall(r'\benv(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', CHATSITE_SETTINGS))


def test_every_variable_chatsite_reads_is_set_by_the_test_settings():
    read = names_read_by_chatsite()
    assert len(read) >= 40, read  # the parse found the calls
    set_here = test_settings.PINNED.keys() | test_settings.DEFAULTED.keys()
    assert read <= set_here, f"not set in tests/settings.py: {sorted(read - set_here)}"
    assert not test_settings.PINNED.keys() & test_settings.DEFAULTED.keys()


def test_pinned_values_are_what_the_process_has_and_defaulted_ones_are_set():
    for name, value in test_settings.PINNED.items():
        assert os.environ[name] == value, name
    for name in test_settings.DEFAULTED:
        assert name in os.environ, name


def test_only_the_variables_meant_to_be_may_come_from_the_real_environment():
    assert set(test_settings.DEFAULTED) == {
        "DATABASE_URL",
        "CHAT_LOG_FILE",
        "CHAT_LOG_MAX_BYTES",
        "CHAT_LOG_BACKUP_COUNT",
        "LOCAL_MODEL_CONTEXT",
        "LOCAL_MODEL_THREADS",
        "LOCAL_MODEL_CONCURRENCY",
        # CI runs the suite on PostgreSQL with Redis; the processes a test starts share
        # the run's key prefix.
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
    }
    # The real set-up's self-test result (in .venv) is the one seen.
    assert test_settings.PINNED["LOCAL_MODEL_SELFTEST_FILE"] == ""
    assert django_settings.LOCAL_MODEL_SELFTEST_FILE == ""


def test_chatsite_reads_dotenv_without_overriding_the_environment():
    calls = re.findall(r"environ\.Env\.read_env\((.*)\)", CHATSITE_SETTINGS)
    assert calls == ['BASE_DIR / ".env"'], calls
    assert "overwrite" not in CHATSITE_SETTINGS


def _dotenv_with_every_variable(path: Path) -> Path:
    names = sorted(names_read_by_chatsite())
    path.write_text("".join(f"{name}=from-dotenv-{name.lower()}\n" for name in names))
    return path


def test_read_env_keeps_every_value_already_set(tmp_path):
    dotenv = _dotenv_with_every_variable(tmp_path / ".env")
    before = dict(os.environ)
    try:
        environ.Env.read_env(dotenv)
        after = dict(os.environ)
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        os.environ.update(before)
    assert after == before


def test_a_dotenv_with_every_variable_reaches_nothing_through_the_test_settings(tmp_path):
    """The real import chain (tests.settings, then chatsite.settings) in a new process, with
    chatsite's `read_env` pointed at a `.env` that sets every variable chatsite reads."""
    dotenv = _dotenv_with_every_variable(tmp_path / ".env")
    names = sorted(names_read_by_chatsite())
    code = (
        "import json, os, environ;"
        "real = environ.Env.read_env.__func__;"
        f"environ.Env.read_env = classmethod(lambda cls, *a, **k: real(cls, {str(dotenv)!r}));"
        "import django; django.setup();"
        "from django.conf import settings;"
        f"names = {names!r};"
        "print(json.dumps({'env': {n: os.environ.get(n) for n in names},"
        " 'key': settings.OPENAI_API_KEY, 'url': settings.OPENAI_BASE_URL}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["env"] == {name: os.environ[name] for name in names}
    assert not [v for v in seen["env"].values() if v.startswith("from-dotenv")]
    assert seen["key"] == test_settings.PINNED["OPENAI_API_KEY"]
    assert seen["url"] == test_settings.PINNED["OPENAI_BASE_URL"]
