"""A cap on request bodies, applied before Django reads them.

Under ASGI, Django reads a request's whole body (spooled to a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware or view runs, so without a proxy in
front a client could fill the disk with one endless POST. This wrapper answers 413 as
soon as a body declares, or turns out to carry, more than its URL can take: an import,
a message with its attachments, or any other form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.urls import Resolver404, resolve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: Django's handler and uvicorn type the same callables differently.
ASGIApp = Callable[..., Awaitable[None]]

# Room for the form's other fields and the multipart framing around the files.
FORM_MARGIN = 1024 * 1024
UPLOADS = {"import", "conversations_conversation_import"}
SENDS = {"send", "send_new"}


def body_limit(path: str) -> int:
    """The largest body a POST to `path` may carry (bytes)."""
    try:
        name = resolve(path).url_name or ""
    except Resolver404:
        name = ""
    if name in UPLOADS:
        return int(settings.CHAT_IMPORT_MAX_BYTES) + FORM_MARGIN
    if name in SENDS:
        largest = max(settings.CHAT_ATTACHMENT_MAX_BYTES, settings.CHAT_DOCUMENT_MAX_BYTES)
        return int(settings.CHAT_ATTACHMENTS_PER_MESSAGE * largest) + FORM_MARGIN
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + FORM_MARGIN


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    megabytes = max(1, limit // (1024 * 1024))
    body = (
        f"This upload is too large: this page takes at most {megabytes} MB. Nothing was saved."
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def limit_request_bodies(app: ASGIApp) -> ASGIApp:
    """`app`, with bodies over `body_limit` refused (413) before Django reads them."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            # Served under a prefix (uvicorn --root-path): the URLconf knows the rest.
            path = path[len(root) :] or "/"
        limit = body_limit(path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        received, refused, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading and answers nothing: the 413 is sent below.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await app(scope, counting_receive, tracking_send)
        if refused and not started:
            await _too_large(send, limit)

    return guarded
