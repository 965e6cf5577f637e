"""Test settings: chatsite's own settings, fed a safe environment first.

Every variable chatsite/settings.py reads is pinned here (tests/test_environment.py checks
that none is missing), and pinned values are forced, not defaulted, so that a developer's
`.env` — with a real API key, say — can never reach the tests: django-environ's
`read_env`, which chatsite/settings.py calls, only sets variables not already set.
The model server is whatever the `fake_openai` fixture starts on 127.0.0.1; until then
requests go to a closed loopback port.

The few in DEFAULTED may come from the real environment (DATABASE_URL, say, or what a
test gives a process it starts); a `.env` cannot set them either, as they are set here
before chatsite's settings read it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

_tmp = Path(tempfile.gettempdir()) / f"chatsite-tests-{os.getpid()}"
_tmp.mkdir(parents=True, exist_ok=True)

# What the tests expect; mostly chatsite's defaults, spelled out.
PINNED = {
    "SECRET_KEY": "tests-only-secret-key-that-is-long-and-not-insecure-prefixed",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CSRF_TRUSTED_ORIGINS": "",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
    "SECURE_HSTS_PRELOAD": "false",
    "SECURE_PROXY_SSL_HEADER": "",
    "SIGNUP_ENABLED": "true",
    # Off: tests log in with client.login(), which gives the throttle no request. The
    # throttle's own tests turn it on (tests/web/test_login_throttle.py).
    "LOGIN_THROTTLE": "false",
    "LOGIN_FAILURE_LIMIT": "5",
    "LOGIN_COOLOFF_MINUTES": "15",
    "LOGIN_PROXY_COUNT": "0",
    # No mail: the password-reset pages are off unless a test turns them on.
    "EMAIL_HOST": "",
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    "EMAIL_PORT": "587",
    "EMAIL_HOST_USER": "",
    "EMAIL_HOST_PASSWORD": "",
    "EMAIL_USE_TLS": "true",
    "DEFAULT_FROM_EMAIL": "webmaster@localhost",
    "TIME_ZONE": "UTC",
    "SERVESTATIC_USE_FINDERS": "true",
    # Its name before ServeStatic, read only when SERVESTATIC_USE_FINDERS is not set.
    "WHITENOISE_USE_FINDERS": "true",
    # The model: the fake server (see above), never a real one.
    "OPENAI_API_KEY": "sk-test-key-never-sent-anywhere-but-loopback",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "OPENAI_MODEL": "fake-model",
    "OPENAI_MODELS": "",
    "CHAT_SEND_REASONING_BACK": "false",
    "OPENAI_TIMEOUT": "5",
    "OPENAI_MAX_RETRIES": "0",
    "LLM_BACKEND": "auto",
    # The local model: the bundled one, as set-up installed it. The self-test file stays
    # the default (in .venv), so that a real set-up's self-test result is seen.
    "LOCAL_MODEL_PATH": "",
    "LOCAL_MODEL_MAX_TOKENS": "1024",
    "LOCAL_MODEL_KEEP_ALIVE": "10",
    "LOCAL_MODEL_RUN_DIR": "",
    "LOCAL_MODEL_SELFTEST_FILE": "",
    # Generation defaults.
    "CHAT_TEMPERATURE": "",
    "CHAT_MAX_TOKENS": "0",
    "CHAT_CONTEXT_WINDOWS": "",
    "CHAT_CONTEXT_WINDOW": "8192",
    # Chat behaviour.
    "CHAT_MAX_MESSAGE_CHARS": "20000",
    # Attachments: the default here, set to this run's temporary folder below.
    "MEDIA_ROOT": "",
    "ATTACHMENTS_STORAGE_BACKEND": "django.core.files.storage.FileSystemStorage",
    "ATTACHMENTS_STORAGE_OPTIONS": "{}",
    "CHAT_ATTACHMENTS_PER_MESSAGE": "8",
    "CHAT_ATTACHMENT_MAX_BYTES": str(20 * 1024 * 1024),
    "CHAT_IMAGE_MAX_PIXELS": "40000000",
    "CHAT_IMAGE_MAX_SIDE": "2048",
    "CHAT_VISION_MODELS": "gpt-4o*,fake-vision*",
    "CHAT_IMAGE_TOKENS": "0",
    # No limits on generations unless a test sets them (tests/chat/test_limits.py).
    "CHAT_MAX_CONCURRENT_REPLIES": "0",
    "CHAT_MAX_MESSAGES_PER_MINUTE": "0",
    "CHAT_MAX_TOKENS_PER_DAY": "0",
    "CHAT_SYSTEM_PROMPT": "You are a test assistant.",
    "CHAT_SAVE_INTERVAL": "0.05",
    "CHAT_STALE_AFTER": "90",
    # No sweep behind a test's back: tests that need one call it (or start their own).
    "CHAT_SWEEP_INTERVAL": "3600",
    "CHAT_NOJS_WAIT": "120",
    "CHAT_SIDEBAR_LIMIT": "100",
    "CHAT_THREAD_PAGE": "200",
    # Off unless a test turns it on: a title request would take a scripted fake reply.
    "CHAT_AUTO_TITLE": "false",
    "CHAT_TITLE_TIMEOUT": "3",
    "CHAT_SEARCH_PAGE_SIZE": "20",
    "CHAT_IMPORT_MAX_BYTES": str(1024 * 1024 * 1024),
    "CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES": str(4 * 1024 * 1024 * 1024),
    "CHAT_IMPORT_MAX_COMPRESSION_RATIO": "200",
    "CHAT_IMPORT_MAX_CONVERSATION_BYTES": str(32 * 1024 * 1024),
    "CHAT_IMPORT_MAX_MESSAGE_BYTES": str(16 * 1024 * 1024),
    "CHAT_IMPORT_MAX_STRING_BYTES": str(8 * 1024 * 1024),
    # The default: a folder of this checkout's own. Tests of the start-up sweep give
    # themselves a folder each (settings.CHAT_IMPORT_TEMP_DIR = tmp_path).
    "CHAT_IMPORT_TEMP_DIR": "",
    # Documents: the defaults (tests of the limits set their own).
    "CHAT_DOCUMENT_MAX_BYTES": str(20 * 1024 * 1024),
    "CHAT_DOCUMENT_MAX_PAGES": "2000",
    "CHAT_DOCUMENT_MAX_CHARS": "5000000",
    "CHAT_DOCUMENT_MAX_SECONDS": "30",
    "CHAT_DOCUMENT_MAX_MEMORY": str(768 * 1024 * 1024),
    "CHAT_DOCUMENT_MAX_UNPACKED_BYTES": str(200 * 1024 * 1024),
    "CHAT_DOCUMENT_MAX_PARALLEL": "2",
    "CHAT_DOCUMENT_RETRIEVAL": "true",
    "CHAT_DOCUMENT_CONTEXT_SHARE": "0.6",
    # Beside the chat log (in this run's temporary folder).
    "CHAT_ERROR_LOG_FILE": "",
}
# These may come from the real environment, never from a .env: CI runs the suite a second
# time on PostgreSQL, and tests start processes of their own with a log file, its rotation
# or the local model's size and threads changed.
DEFAULTED = {
    "DATABASE_URL": f"sqlite:///{_tmp / 'db.sqlite3'}",
    # Empty: the in-process journal. CI runs the suite on PostgreSQL with Redis.
    "REDIS_URL": "",
    # A run's own keys (the processes it starts inherit it): reply ids repeat across runs.
    "REDIS_KEY_PREFIX": f"chatsite-test-{uuid.uuid4().hex[:12]}",
    "CHAT_LOG_FILE": str(_tmp / "chat.log"),
    "CHAT_LOG_MAX_BYTES": str(20 * 1024 * 1024),
    "CHAT_LOG_BACKUP_COUNT": "10",
    "LOCAL_MODEL_CONTEXT": "4096",
    "LOCAL_MODEL_THREADS": "0",
    "LOCAL_MODEL_CONCURRENCY": "1",
}

os.environ.update(PINNED)
for _name, _value in DEFAULTED.items():
    os.environ.setdefault(_name, _value)

from chatsite.settings import *  # noqa: E402, F403
from chatsite.settings import DATABASES  # noqa: E402

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
STATIC_ROOT = _tmp / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = _tmp / "media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] in ("django.db.backends.sqlite3", "chatsite.sqlite"):
    # A file, not shared-cache memory: the generation thread and the test thread each
    # hold a connection, and in-memory shared cache locks whole tables between them.
    DATABASES["default"]["TEST"] = {"NAME": str(_tmp / "test.sqlite3")}
