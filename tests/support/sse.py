"""A client for a reply's server-sent events, as the page reads them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
from django.urls import reverse

from conversations.models import Message


def http_client(asgi_server, django_client, timeout: float = 10) -> httpx2.Client:
    """An HTTP client for the live server, logged in as `django_client` is."""
    return httpx2.Client(
        base_url=asgi_server.url,
        cookies={"sessionid": django_client.cookies["sessionid"].value},
        timeout=timeout,
    )


def read_stream(
    asgi_server, django_client, reply: Message, timeout: float = 10
) -> list[tuple[str, str, float]]:
    """Follow a reply's event stream to its end, as the page does: every event received."""
    with http_client(asgi_server, django_client, timeout) as http:
        with http.stream("GET", stream_url(reply)) as response:
            assert response.status_code == 200
            return list(events(response))


def events(response: httpx2.Response) -> Iterator[tuple[str, str, float]]:
    """Parse an SSE response as it arrives: (event, data, arrival time)."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data), time.monotonic()
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])


def stream_url(reply: Message, offset: int = 0) -> str:
    return reverse("reply_stream", args=[reply.conversation_id, reply.pk]) + f"?offset={offset}"
