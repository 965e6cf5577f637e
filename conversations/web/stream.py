"""A reply's server-sent events: what it wrote so far, then live until it ends.

Events (see `generation.events`): `phase` before the first text; `delta` with each new
piece of text, escaped, for clients that follow the text (not the page, which asks for
none with `deltas=0`); `block` with Markdown blocks as they are finished, as sanitized
HTML, each rendered once (the page appends it); `tail` with the open block as sanitized
HTML, throttled (the page replaces the open block with it); `done` with the finished
message. Every text event's id is the reply's length after it, so a client resumes from
`Last-Event-ID`. What an event costs depends on its piece and on the open block, never
on the length of the reply.
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
from conversations.rendering import BlockSplitter, render_markdown_uncached
from conversations.web.chat import render_message

if TYPE_CHECKING:
    from django.contrib.auth.models import User

KEEPALIVE_SECONDS = 15.0
# The open block is re-rendered at most this often (and at once for the first text).
RENDER_SECONDS = 0.15
# Text longer than this is rendered in a thread, not on the event loop that serves every
# stream (a short paragraph costs less than the hop to a thread).
INLINE_RENDER_CHARS = 4_000


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _render_every(length: int) -> float:
    # A long open block (a big code fence) is re-rendered less often, so that the bytes
    # sent grow about linearly with its length, not with its square.
    return RENDER_SECONDS + length / 40_000


async def _render(text: str) -> str:
    if len(text) <= INLINE_RENDER_CHARS:
        return render_markdown_uncached(text)
    return await sync_to_async(render_markdown_uncached, thread_sensitive=False)(text)


async def _reply_events(message: Message, offset: int, deltas: bool) -> AsyncIterator[str]:
    """The events of `message` for a client that has its first `offset` characters."""
    yield "retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    watch = ReplyWatch(message)
    # What the client holds, until the text reaches `offset` (it may be ahead of the
    # database after a reconnect): then the split of that text, as the page made it.
    held, splitter, phase = "", None, ("", 0)
    at, rendered_at, tail_due = 0, -RENDER_SECONDS, False
    while True:
        wait = KEEPALIVE_SECONDS
        if splitter is not None and tail_due:
            due = rendered_at + _render_every(len(splitter.open)) - loop.time()
            if due <= 0:
                yield _sse(StreamEvent.TAIL, await _render(splitter.open), at)
                rendered_at, tail_due = loop.time(), False
            else:
                wait = due  # render what is held back even if nothing more comes
        update = await watch.next(wait)
        if update is None:
            if wait == KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
            continue
        if (update.phase, update.ahead) != phase and not update.done:
            phase = (update.phase, update.ahead)
            yield _sse(StreamEvent.PHASE, escape(phase_text(update.phase, update.ahead)))
        piece, at = update.text, update.at
        if splitter is None:
            held += piece
            if len(held) < offset and not update.done:
                continue
            cut = min(offset, len(held))
            splitter, piece = BlockSplitter(held[:cut]), held[cut:]
            held = ""
        if piece:
            if deltas:
                yield _sse(StreamEvent.DELTA, escape(piece), at)
            finished = splitter.feed(piece)
            if finished:
                # Its own line: the page's text keeps the blocks apart (copying, reading).
                yield _sse(StreamEvent.BLOCK, await _render(finished) + "\n", at)
                # The open block shown is now part of that block: replace it at once.
                rendered_at = -RENDER_SECONDS
            tail_due = True
        if update.done:
            break
    yield _sse(StreamEvent.DONE, await sync_to_async(render_message)(message.pk))


async def reply_stream(request: HttpRequest, conversation_id: int, message_id: int) -> Any:
    """The reply as it grows (see the module's docstring), then `done`.

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
    deltas = request.GET.get("deltas") != "0"
    response = StreamingHttpResponse(
        _reply_events(message, offset, deltas), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
