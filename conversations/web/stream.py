"""A reply's server-sent events: what it wrote so far, then live until it ends.

Events (see `generation.events`): `phase` before the first text; `delta` with each new
piece of text, escaped, for clients that follow the text (not the page, which asks for
none with `deltas=0`); `block` with Markdown blocks as they are finished, as sanitized
HTML, each rendered once (the page appends it); `tail` with the open block as sanitized
HTML, throttled (the page replaces the open block with it); `done` with the finished
message. Every text event's id is the reply's length after it, so a client resumes from
`Last-Event-ID`. What an event costs depends on its piece and on the open block, never
on the length of the reply.

A reasoning model's thinking streams the same way, as `think-delta`, `think-block` and
`think-tail`; `thought` says when the answer began, `reset` that the answer so far was
thinking. Ids are then the answer's length and the thinking's, "12.40".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.utils.html import escape

from conversations.chat import selectors
from conversations.generation.events import StreamEvent, phase_text, thought_text
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


def _sse(event: str, data: str, event_id: int | str | None = None) -> str:
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


class _Lane:
    """One text the page shows as it grows, the answer or the thinking: its blocks, the
    open one, and what the client holds until the text reaches it (it may be ahead of the
    database after a reconnect)."""

    def __init__(self, offset: int, delta: str, block: str, tail: str) -> None:
        self.offset, self.delta, self.block, self.tail = offset, delta, block, tail
        self.held = ""
        self.splitter: BlockSplitter | None = None
        self.rendered_at, self.tail_due = -RENDER_SECONDS, False

    def reset(self, text: str) -> None:
        self.offset, self.held, self.splitter = 0, text, None
        self.rendered_at, self.tail_due = -RENDER_SECONDS, False

    async def due_tail(self, now: float, at: str, *, force: bool = False) -> tuple[str, float]:
        """(the tail's event if due now, else "", and seconds until it is due, or inf)."""
        if self.splitter is None or not self.tail_due:
            return "", float("inf")
        due = self.rendered_at + _render_every(len(self.splitter.open)) - now
        if due > 0 and not force:
            return "", due
        self.rendered_at, self.tail_due = now, False
        return _sse(self.tail, await _render(self.splitter.open), at), float("inf")

    async def take(self, piece: str, at: str, deltas: bool, done: bool) -> AsyncIterator[str]:
        if self.splitter is None:
            self.held += piece
            if len(self.held) < self.offset and not done:
                return
            cut = min(self.offset, len(self.held))
            self.splitter, piece = BlockSplitter(self.held[:cut]), self.held[cut:]
            self.held = ""
        if piece:
            if deltas:
                yield _sse(self.delta, escape(piece), at)
            finished = self.splitter.feed(piece)
            if finished:
                # Its own line: the page's text keeps the blocks apart (copying, reading).
                yield _sse(self.block, await _render(finished) + "\n", at)
                # The open block shown is now part of that block: replace it at once.
                self.rendered_at = -RENDER_SECONDS
            self.tail_due = True


def _event_id(at: int, reasoning_at: int) -> str:
    # The answer's length, and the thinking's after a dot when there is any.
    return f"{at}.{reasoning_at}" if reasoning_at else str(at)


def parse_offsets(value: str | None) -> tuple[int, int]:
    """(answer, thinking) lengths a client holds, from its Last-Event-ID ("12" or "12.40")."""
    answer, _, thinking = (value or "").partition(".")
    return parse_id(answer) or 0, parse_id(thinking) or 0


async def _reply_events(
    message: Message, offset: int, deltas: bool, reasoning_offset: int = 0
) -> AsyncIterator[str]:
    """The events of `message` for a client that has its first `offset` characters (and
    `reasoning_offset` of its thinking)."""
    yield "retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    watch = ReplyWatch(message)
    answer = _Lane(offset, StreamEvent.DELTA, StreamEvent.BLOCK, StreamEvent.TAIL)
    thinking = _Lane(
        reasoning_offset, StreamEvent.THINK_DELTA, StreamEvent.THINK_BLOCK, StreamEvent.THINK_TAIL
    )
    phase = ("", 0)
    at, reasoning_at = 0, 0
    while True:
        wait = KEEPALIVE_SECONDS
        for lane in (thinking, answer):
            event, due = await lane.due_tail(loop.time(), _event_id(at, reasoning_at))
            if event:
                yield event
            wait = min(wait, due)  # render what is held back even if nothing more comes
        update = await watch.next(wait)
        if update is None:
            if wait == KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
            continue
        if (update.phase, update.ahead) != phase and not update.done:
            phase = (update.phase, update.ahead)
            yield _sse(StreamEvent.PHASE, escape(phase_text(update.phase, update.ahead)))
        at = update.at
        if update.reasoning or update.rethink or update.reasoning_at:
            reasoning_at = update.reasoning_at
        event_id = _event_id(at, reasoning_at)
        if update.rethink:
            yield _sse(StreamEvent.RESET, "reset", event_id)  # an empty one is never dispatched
            answer.reset("")
            thinking.reset("")
        if update.reasoning or thinking.splitter is None:
            async for event in thinking.take(update.reasoning, event_id, deltas, update.done):
                yield event
        if update.thought_ms is not None:
            # The thinking is whole before its block folds.
            event, _ = await thinking.due_tail(loop.time(), event_id, force=True)
            if event:
                yield event
            yield _sse(StreamEvent.THOUGHT, escape(thought_text(update.thought_ms)), event_id)
        async for event in answer.take(update.text, event_id, deltas, update.done):
            yield event
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
    last = request.headers.get("Last-Event-ID")
    if last:
        offset, reasoning_offset = parse_offsets(last)
    else:
        offset = parse_id(request.GET.get("offset")) or 0
        reasoning_offset = parse_id(request.GET.get("roffset")) or 0
    deltas = request.GET.get("deltas") != "0"
    response = StreamingHttpResponse(
        _reply_events(message, offset, deltas, reasoning_offset),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
