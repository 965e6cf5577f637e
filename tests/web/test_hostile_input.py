"""Odd and hostile input gets a clear answer, never a server error: absurd ids, stream
offsets that are not plain numbers, posts over the upload limit."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import AsyncClient
from django.urls import reverse

from conversations.models import Message
from tests.support.factories import MessageFactory, ReplyFactory
from tests.support.helpers import HTMX, send

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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "no-such-charset"])
@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/"])
def test_a_form_in_another_charset_than_utf8_is_a_400_not_a_500(asgi_server, charset, path):
    """Over real HTTP, with a valid CSRF cookie and token, even without a session."""
    import httpx2

    with httpx2.Client(base_url=asgi_server.url, timeout=10) as http:
        http.get("/accounts/login/")
        token = http.cookies["csrftoken"]
        response = http.post(
            path,
            content=b"username=a&password=b",
            headers={
                "Content-Type": f"application/x-www-form-urlencoded; charset={charset}",
                "X-CSRFToken": token,
                "Referer": asgi_server.url + "/",
            },
        )
    assert "Traceback" not in response.text
    if charset == "no-such-charset":  # Django reads it as UTF-8: the form answers as usual
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert "Bad request" in response.text
