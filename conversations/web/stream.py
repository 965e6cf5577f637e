"""A reply's server-sent events: what it wrote so far, then live until it ends.

Events (see `generation.events`): `phase` before the first text, `delta` with each new
piece of text (its id is the text's length, for `Last-Event-ID`), throttled `render`
with the Markdown so far as sanitized HTML, and `done` with the finished message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.utils.html import escape

from conversations.chat import selectors
from conversations.generation.events import StreamEvent, phase_text
from conversations.generation.watch import ReplyWatch
from conversations.models import Message
from conversations.params import parse_id
from conversations.rendering import render_markdown, render_markdown_uncached
from conversations.web.chat import render_message

if TYPE_CHECKING:
    from django.contrib.auth.models import User

KEEPALIVE_SECONDS = 15.0
# A streaming reply is re-rendered as Markdown at most this often.
RENDER_SECONDS = 0.15


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _render_every(length: int) -> float:
    # Each render resends the whole reply: a long one re-renders less often, so the bytes
    # sent grow about linearly with its length, not with its square.
    return RENDER_SECONDS + length / 40_000


async def _render_partial(text: str) -> str:
    # Not render_markdown(): its cache is for whole replies, and a page is CPU work best kept
    # off the event loop.
    return await sync_to_async(render_markdown_uncached, thread_sensitive=False)(text)


async def _reply_events(message: Message, offset: int) -> AsyncIterator[str]:
    """`delta` events (escaped text from `offset`, id = length so far) for resuming clients,
    `render` events (the whole text so far as sanitized HTML, at most every RENDER_SECONDS
    and once more before the end) for the page, then `done` with the final article."""
    yield "retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    watch = ReplyWatch(message)
    text, rendered, rendered_at, phase = message.content, "", -RENDER_SECONDS, ("", 0)
    update = await watch.next(0)
    while True:
        if update is not None:
            if (update.phase, update.ahead) != phase and not update.done:
                phase = (update.phase, update.ahead)
                yield _sse(StreamEvent.PHASE, escape(phase_text(update.phase, update.ahead)))
            if len(update.text) > offset:
                yield _sse(StreamEvent.DELTA, escape(update.text[offset:]), len(update.text))
                offset = len(update.text)
            text = update.text
            if update.done:
                break
        wait = KEEPALIVE_SECONDS
        if text != rendered:
            due = rendered_at + _render_every(len(text)) - loop.time()
            if due <= 0:
                yield _sse(StreamEvent.RENDER, await _render_partial(text))
                rendered, rendered_at = text, loop.time()
            else:
                wait = due  # render what is held back even if nothing more comes
        update = await watch.next(wait)
        if update is None and wait == KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
    # The whole reply through the cached renderer: `done` renders the same text right after.
    yield _sse(StreamEvent.RENDER, await sync_to_async(render_markdown)(text))
    yield _sse(StreamEvent.DONE, await sync_to_async(render_message)(message.pk))


async def reply_stream(request: HttpRequest, conversation_id: int, message_id: int) -> Any:
    """The reply as it grows: `delta` (escaped text) and `render` (HTML) events, then `done`.

    Watching is all this does: closing it never stops the reply.
    """
    # Logged in: LoginRequiredMiddleware saw to it.
    user = cast("User", await request.auser())
    message = await selectors.message_find(
        user=user, conversation_id=conversation_id, message_id=message_id
    )
    if message is None:
        raise Http404("No such reply.")
    # Anything but an id-like number (1-18 ASCII digits) means "from the start".
    offset = parse_id(request.headers.get("Last-Event-ID") or request.GET.get("offset")) or 0
    response = StreamingHttpResponse(
        _reply_events(message, offset), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
