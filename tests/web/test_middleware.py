"""The middleware stack under ASGI: every middleware async, static files served without a
thread (from the finders, or hashed and compressed after collectstatic), and the HTMX login
redirect."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx2
import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.utils.module_loading import import_string

from conversations.models import Message
from conversations.web.middleware import HtmxLoginRedirectMiddleware
from tests.support.factories import MessageFactory, ReplyFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reply(owner) -> Message:
    question = MessageFactory(conversation__owner=owner)
    return ReplyFactory(
        conversation=question.conversation, parent=question, content="Hello there, alice"
    )


def _chain_modes(handler: ASGIHandler) -> dict[str, bool]:
    """Each middleware of the handler's chain, and whether it runs as a coroutine."""
    modes: dict[str, bool] = {}
    link = handler._middleware_chain
    while link is not None:
        if hasattr(link, "__wrapped__"):  # convert_exception_to_response
            link = link.__wrapped__
        elif hasattr(link, "func"):  # SyncToAsync
            link = link.func
        elif hasattr(link, "awaitable"):  # AsyncToSync
            link = link.awaitable
        elif hasattr(link, "get_response"):
            modes[type(link).__name__] = iscoroutinefunction(link)
            link = link.get_response
        else:
            break
    return modes


def test_every_middleware_is_async_capable():
    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "async_capable", False) is True, path


def test_it_runs_every_middleware_async_under_asgi(caplog):
    handler = ASGIHandler()
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        handler.load_middleware(is_async=True)
    # Django says so whenever it has to put a middleware in a thread (or back).
    adapted = [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()]
    assert not adapted, adapted
    modes = _chain_modes(handler)
    assert len(modes) == len(settings.MIDDLEWARE), modes
    assert modes["ServeStaticMiddleware"] is True
    assert all(modes.values()), modes


async def _asgi_get(path: str, headers: list[tuple[bytes, bytes]] | None = None):
    """One GET through the ASGI application, in this thread's event loop."""
    app = get_asgi_application()
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }

    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # no disconnect: Django stops listening once it answers
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_static_files_are_served_from_the_finders_without_a_thread():
    source = (ROOT / "static" / "chatsite" / "chat.js").read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, headers, body = asyncio.run(_asgi_get("/static/chatsite/chat.js"))
    assert status == 200
    assert body == source
    assert headers["content-type"].startswith("text/javascript")
    # A sync file iterator would be read in a thread, and Django would warn about it.
    assert not [w for w in caught if "synchronous iterators" in str(w.message)], caught


def _settings_in_a_process(env: dict[str, str], code: str, tmp_path: Path) -> str:
    """What `code` prints in a process of its own, with `env` alone for environment."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "SECRET_KEY": "a-long-enough-secret-key-for-the-settings-of-this-test-only",
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


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "true"}, "True"),
        ({"DEBUG": "false"}, "False"),
        ({"DEBUG": "false", "SERVESTATIC_USE_FINDERS": "true"}, "True"),
        # An older .env still says WHITENOISE_USE_FINDERS: it is read when the new name is not.
        ({"DEBUG": "false", "WHITENOISE_USE_FINDERS": "true"}, "True"),
        ({"DEBUG": "true", "WHITENOISE_USE_FINDERS": "false"}, "False"),
        (
            {
                "DEBUG": "false",
                "WHITENOISE_USE_FINDERS": "true",
                "SERVESTATIC_USE_FINDERS": "false",
            },
            "False",
        ),
    ],
)
def test_serving_from_the_finders_follows_debug_and_both_names_of_the_setting(
    env, expected, tmp_path
):
    code = "import chatsite.settings as s; print(s.SERVESTATIC_USE_FINDERS)"
    assert _settings_in_a_process(env, code, tmp_path) == expected


PRODUCTION_STATIC = """
import asyncio
import django
from django.core.management import call_command
django.setup()
call_command("collectstatic", interactive=False, verbosity=0)
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from tests.web.test_middleware import _asgi_get
url = staticfiles_storage.url("chatsite/chat.js")
status, headers, body = asyncio.run(_asgi_get(url, [(b"accept-encoding", b"gzip")]))
print(settings.STORAGES["staticfiles"]["BACKEND"])
print(url)
print(status, headers.get("content-encoding"), headers.get("cache-control"))
"""


def test_production_serves_hashed_compressed_files_after_collectstatic(tmp_path):
    """DEBUG off: collectstatic writes hashed, compressed copies; they are served so."""
    (tmp_path / "prod_settings.py").write_text(
        f"from chatsite.settings import *  # noqa\nSTATIC_ROOT = {str(tmp_path / 'static')!r}\n"
    )
    env = {
        "DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "prod_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    out = _settings_in_a_process(env, PRODUCTION_STATIC, tmp_path).splitlines()
    assert out[0] == "servestatic.storage.CompressedManifestStaticFilesStorage"
    assert re.fullmatch(r"/static/chatsite/chat\.[0-9a-f]{12}\.js", out[1]), out
    status, encoding, cache = out[2].split(" ", 2)
    assert (status, encoding) == ("200", "gzip"), out
    assert "immutable" in cache, out
    assert (tmp_path / "static" / out[1].removeprefix("/static/")).exists()
    assert (tmp_path / "static" / (out[1].removeprefix("/static/") + ".gz")).exists()


@pytest.mark.django_db(transaction=True)
def test_it_sends_an_expired_htmx_session_to_the_login_page_over_asgi(asgi_server, reply):
    with httpx2.Client(
        base_url=asgi_server.url, cookies={"sessionid": "expired"}, timeout=10
    ) as http:
        http.get("/accounts/login/")
        token = http.cookies["csrftoken"]
        response = http.post(
            f"/c/{reply.conversation_id}/send/",
            data={"content": "hi"},
            headers={"HX-Request": "true", "X-CSRFToken": token, "Referer": asgi_server.url},
        )
        assert response.status_code == 200
        assert response.headers["HX-Redirect"].startswith("/accounts/login/?next=")
        # Without htmx the ordinary redirect is left alone.
        response = http.get(f"/c/{reply.conversation_id}/")
        assert response.status_code == 302
        assert "HX-Redirect" not in response.headers
    assert Message.objects.count() == 2


def test_it_is_a_coroutine_only_when_what_follows_is_one():
    async def async_view(request):
        raise NotImplementedError

    def sync_view(request):
        raise NotImplementedError

    assert iscoroutinefunction(HtmxLoginRedirectMiddleware(async_view))
    assert not iscoroutinefunction(HtmxLoginRedirectMiddleware(sync_view))
