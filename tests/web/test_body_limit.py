"""A request body larger than its URL takes is refused (413) before Django reads it, whether
it declares its length or streams it in chunks; bodies within the limit go through."""

from __future__ import annotations

import socket
import time

import pytest

from conversations.models import Conversation, ImportJob
from conversations.web.bodylimit import FORM_MARGIN, body_limit


def _raw(server, head: str, chunks: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send `head` then `chunks` on one connection; everything the server answered."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: what it said is read below
            if pause:
                time.sleep(pause)
        sock.settimeout(10)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
        return answer


def _login_cookie(owner_client) -> str:
    return f"sessionid={owner_client.cookies['sessionid'].value}"


def test_each_kind_of_url_has_its_limit(settings):
    settings.CHAT_IMPORT_MAX_BYTES = 10_000_000
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    settings.CHAT_ATTACHMENT_MAX_BYTES = 3_000_000
    settings.CHAT_DOCUMENT_MAX_BYTES = 1_000_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    assert body_limit("/import/") == 10_000_000 + FORM_MARGIN
    assert body_limit("/admin/conversations/conversation/import/") == 10_000_000 + FORM_MARGIN
    assert body_limit("/send/") == 6_000_000 + FORM_MARGIN
    assert body_limit("/c/12/send/") == 6_000_000 + FORM_MARGIN
    assert body_limit("/c/12/rename/") == 100_000 + FORM_MARGIN
    assert body_limit("/no/such/page/") == 100_000 + FORM_MARGIN


@pytest.mark.django_db(transaction=True)
def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
    asgi_server, owner_client, settings
):
    settings.CHAT_IMPORT_MAX_BYTES = 1000
    head = (
        "POST /import/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {_login_cookie(owner_client)}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 50000000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw(asgi_server, head, [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"too large" in answer and b"Nothing was saved" in answer
    assert time.monotonic() - started < 5  # not waiting for 50 GB that never come
    assert not ImportJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_that_grows_past_the_limit_is_cut_off_with_413(
    asgi_server, owner_client, owner, settings
):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 1
    settings.CHAT_ATTACHMENT_MAX_BYTES = 10_000
    settings.CHAT_DOCUMENT_MAX_BYTES = 10_000
    head = (
        "POST /send/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {_login_cookie(owner_client)}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"a" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = _raw(asgi_server, head, [chunk] * 200)  # 13 MB, past the 1 MB + 10 KB limit
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert not Conversation.objects.filter(owner=owner).exists()


@pytest.mark.django_db(transaction=True)
def test_a_body_within_the_limit_reaches_the_view(asgi_server, owner_client, settings):
    body = b"content=hello"
    head = (
        "POST /c/999999/rename/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {_login_cookie(owner_client)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    answer = _raw(asgi_server, head, [body])
    # The view ran: CSRF refuses the bare POST (403), not the size guard.
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_a_site_served_under_a_prefix_keeps_each_urls_limit(settings):
    import asyncio

    from conversations.web.bodylimit import limit_request_bodies

    settings.CHAT_IMPORT_MAX_BYTES = 10_000_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    reached: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])

    async def nothing():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/chat/import/",
        "root_path": "/chat",
        "headers": [(b"content-length", b"5000000")],
    }
    asyncio.run(limit_request_bodies(app)(scope, nothing, send))
    assert reached == ["/chat/import/"] and sent == []  # an import's limit, not a form's
    asyncio.run(limit_request_bodies(app)({**scope, "path": "/chat/c/1/rename/"}, nothing, send))
    assert sent[0]["status"] == 413
