"""Odd and hostile input gets a clear answer, never a server error; defaults are safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings as django_settings
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient
from django.urls import reverse

from conversations.middleware import HtmxLoginRedirectMiddleware
from conversations.models import Message
from tests.support.factories import MessageFactory, ReplyFactory
from tests.support.helpers import HTMX, send

ROOT = Path(__file__).resolve().parents[2]
HUGE = "9" * 20  # beyond any 64-bit integer


@pytest.fixture
def reply(owner) -> Message:
    question = MessageFactory(conversation__owner=owner)
    return ReplyFactory(
        conversation=question.conversation, parent=question, content="Hello there, alice"
    )


# --- Absurd ids ---------------------------------------------------------------------


@pytest.mark.django_db
def test_it_answers_404_not_500_for_ids_too_big_for_the_database(owner_client, reply):
    c, m = reply.conversation_id, reply.pk
    urls = [
        ("get", f"/c/{HUGE}/"),
        ("post", f"/c/{HUGE}/send/"),
        ("get", f"/c/{HUGE}/m/{m}/stream/"),
        ("get", f"/c/{c}/m/{HUGE}/stream/"),
        ("post", f"/c/{HUGE}/m/{m}/stop/"),
        ("post", f"/c/{c}/m/{HUGE}/stop/"),
        ("post", f"/c/{HUGE}/m/{m}/retry/"),
        ("post", f"/c/{c}/m/{HUGE}/retry/"),
        ("get", f"/c/{'9' * 19}/"),  # 19 digits, still over the 64-bit maximum
    ]
    for method, url in urls:
        for headers in ({}, HTMX):
            response = getattr(owner_client, method)(url, **headers)
            assert response.status_code == 404, (method, url, headers)
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_it_still_serves_ids_up_to_eighteen_digits(owner_client, reply):
    url = reverse("conversation", args=[reply.conversation_id])
    assert url == f"/c/{reply.conversation_id}/"
    assert owner_client.get(f"/c/{'9' * 18}/").status_code == 404
    assert owner_client.get(url).status_code == 200


# --- Stream offsets -----------------------------------------------------------------


def _stream(owner, reply: Message, query: dict | None = None, **headers: str) -> tuple[int, str]:
    client = AsyncClient()
    client.force_login(owner)
    url = reverse("reply_stream", args=[reply.conversation_id, reply.pk])
    response = async_to_sync(client.get)(url, query, headers=headers)

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return response.status_code, async_to_sync(read)().decode()


# Transactional: the stream drops its database connection between polls, which would
# end a test's surrounding transaction.
stream_db = pytest.mark.django_db(transaction=True)


def _deltas(body: str) -> str:
    return "".join(
        line.removeprefix("data: ")
        for event in body.split("\n\n")
        if "event: delta" in event
        for line in event.splitlines()
        if line.startswith("data: ")
    )


@stream_db
@pytest.mark.parametrize("offset", ["²", "١٢", "-3", " 5", "5_0", "1" * 40, "1" * 5000])
def test_it_streams_from_the_start_when_the_offset_is_not_a_plain_number(owner, reply, offset):
    status, body = _stream(owner, reply, {"offset": offset})
    assert status == 200
    assert _deltas(body) == "Hello there, alice"
    assert "event: done" in body


@stream_db
@pytest.mark.parametrize("last_event_id", ["³", "¹²", "+7", "9" * 30])
def test_it_streams_from_the_start_when_last_event_id_is_not_a_plain_number(
    owner, reply, last_event_id
):
    status, body = _stream(owner, reply, **{"Last-Event-ID": last_event_id})
    assert status == 200
    assert _deltas(body) == "Hello there, alice"


@stream_db
def test_it_still_resumes_from_a_plain_offset(owner, reply):
    assert _deltas(_stream(owner, reply, {"offset": "6"})[1]) == "there, alice"
    assert _deltas(_stream(owner, reply, **{"Last-Event-ID": "13"})[1]) == "alice"
    # Past the end: nothing more to send, only the finished message.
    status, body = _stream(owner, reply, {"offset": "9" * 18})
    assert status == 200
    assert _deltas(body) == ""
    assert "event: done" in body


# --- Posts over the upload limit ----------------------------------------------------


def _too_big() -> str:
    return "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)


@pytest.mark.django_db
def test_it_answers_413_in_words_the_composer_shows_to_an_oversized_htmx_post(owner_client):
    response = send(owner_client, _too_big())
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    limit = django_settings.CHAT_MAX_MESSAGE_CHARS
    assert response.content.decode() == (
        f"That message is too long to send (the limit is {limit} characters)."
    )
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_it_answers_413_with_an_error_page_to_an_oversized_plain_post(owner_client):
    response = send(owner_client, _too_big(), htmx=False)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<html" in page
    assert "Message too long" in page
    assert f"the limit is {django_settings.CHAT_MAX_MESSAGE_CHARS} characters" in page
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_it_keeps_the_plain_bad_request_page_for_other_400s(owner_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    data = {f"field{i}": "x" for i in range(10)}
    for headers in ({}, HTMX):
        response = owner_client.post(reverse("send_new"), data, **headers)
        assert response.status_code == 400
        assert "Bad request" in response.content.decode()
    assert Message.objects.count() == 0


# --- Sign-up default ----------------------------------------------------------------


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


# --- Middleware under ASGI ----------------------------------------------------------


def test_it_runs_every_middleware_but_whitenoise_and_those_before_it_async_under_asgi():
    handler = ASGIHandler()
    handler.load_middleware(is_async=True)
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
    assert modes["HtmxLoginRedirectMiddleware"] is True
    # WhiteNoise 6 is sync only: it, and whatever comes before it, run in a thread.
    sync = {name for name, is_async in modes.items() if not is_async}
    assert sync == {"SecurityMiddleware", "WhiteNoiseMiddleware"}


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
