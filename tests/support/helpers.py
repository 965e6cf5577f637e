from __future__ import annotations

import time

from django.test import Client
from django.urls import reverse

from conversations.chatlog import parse_line
from conversations.generation.runner import runner
from conversations.models import Conversation, Message

HTMX = {"HTTP_HX_REQUEST": "true"}


def send(
    client: Client, content: str, conversation: Conversation | None = None, *, htmx: bool = True
):
    url = reverse("send", args=[conversation.pk]) if conversation else reverse("send_new")
    return client.post(url, {"content": content}, **(HTMX if htmx else {}))


def finished(reply: Message, timeout: float = 10) -> Message:
    """Wait for the background generation of `reply` to end, and reload it."""
    live = runner.get(reply.pk)
    if live is not None:
        assert live.wait_done(timeout), "the reply did not finish in time"
    assert runner.wait_idle(timeout)
    reply.refresh_from_db()
    return reply


def last_reply() -> Message:
    return Message.objects.filter(role=Message.Role.ASSISTANT).latest("id")


def log_events(path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [parse_line(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_for_text(reply: Message, timeout: float = 30) -> str:
    """Wait until the generation of `reply` has produced some text, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = runner.get(reply.pk)
        if live is not None and live.snapshot().text:
            return live.snapshot().text
        time.sleep(0.01)
    raise AssertionError("the model produced no text")
