"""Writes: sending and editing messages, generating, stopping and regenerating replies.

The rules that keep anything from being lost live here: the user's message is committed
before the model is called; the reply is written as it grows; however a reply ends, its
text so far and a status are saved and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import DataError, close_old_connections, transaction
from django.utils import timezone

from conversations import chatlog
from conversations.generation import context as gen_context
from conversations.generation import journal
from conversations.generation.runner import LiveReply, on_db_thread, release_connection, runner
from conversations.llm import registry as llm
from conversations.llm.base import Chunk, LLMError
from conversations.models import Conversation, Message
from conversations.text import strip_nul

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

INTERRUPTED_ERROR = (
    "The server stopped while this reply was being written. The text so far is kept."
)

FINISH_ATTEMPTS = 5


def heartbeat_seconds() -> float:
    """How often a generation renews its lease (its row's `updated`), token or not.

    A reply is generated under a lease of CHAT_STALE_AFTER seconds: renewed four times
    within it, so that a slow model is never mistaken for a dead process, while a process
    that died leaves its replies interrupted within seconds.
    """
    return min(max(float(settings.CHAT_STALE_AFTER) / 4, 0.5), 10.0)


def reply_start(*, reply: Message) -> LiveReply:
    """Start generating `reply` in the background; idempotent while it runs."""
    start_sweeping()
    current = journal.current()
    if isinstance(current, journal.RedisJournal):
        runner.keep("redis-stop", lambda: current.listen_for_stops(runner.cancel))
    else:
        # Before the reply is shown: whoever watches it finds its journal.
        current.open(reply.pk)
    return runner.start(reply.pk, _generate)


# Retrying a failed reply is regenerating it.


def reply_stop(*, reply: Message, wait: float = 5.0) -> Message:
    """Stop a reply: close the request to the model and keep the partial text as `stopped`.

    If another process generates it, that process is asked through the database and
    stops at its next tick; if none answers within `wait`, the reply is ended here.
    """
    live = runner.get(reply.pk)
    if live is not None:
        runner.cancel(reply.pk)
        live.wait_done(wait)
    elif Message.objects.filter(
        pk=reply.pk,
        status__in=Message.IN_FLIGHT,
        updated__lt=timezone.now() - timedelta(seconds=heartbeat_seconds() * 1.5),
    ).exists():
        # No sign of life for longer than a heartbeat: nobody is writing it any more.
        _end_orphan(reply, status=Message.Status.STOPPED, error="")
    elif Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
        stop_requested=True
    ):
        # At once through Redis; the flag is for when Redis is not there or not heard.
        current = journal.current()
        if isinstance(current, journal.RedisJournal):
            current.publish_stop(reply.pk)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reply.refresh_from_db(fields=["status"])
            if not reply.is_in_flight:
                break
            time.sleep(0.1)
        else:
            _end_orphan(reply, status=Message.Status.STOPPED, error="")
    reply.refresh_from_db()
    return reply


def _end_orphan(reply: Message, *, status: str, error: str) -> bool:
    """End a reply that no generator is writing any more, and log it (once)."""
    changed = Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
        status=status, error=error, updated=timezone.now()
    )
    if changed:
        ended = Message.objects.select_related("conversation__owner").get(pk=reply.pk)
        # Inside a transaction that may yet roll back (a refused send): log once it holds.
        transaction.on_commit(
            lambda: chatlog.log_message(ended, username=ended.conversation.owner.get_username())
        )
    return bool(changed)


def is_orphan(message: Message) -> bool:
    """In flight, but with no progress for CHAT_STALE_AFTER and not generated here: its
    generator died (a crashed or restarted server)."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER)
    return message.is_in_flight and message.updated < cutoff and runner.get(message.pk) is None


def as_seen(message: Message) -> Message:
    """`message` as people should see it: an orphaned reply shows as interrupted.

    Only in memory — reads never write; `replies_interrupt_stale` records it, on a schedule
    (`start_sweeping`) and before any change to the conversation.
    """
    if is_orphan(message):
        message.status, message.error = Message.Status.INTERRUPTED, INTERRUPTED_ERROR
    return message


def replies_interrupt_stale(*, conversation: Conversation | None = None) -> int:
    """Record orphaned replies (see `is_orphan`) as interrupted, of one conversation or all."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = Message.objects.filter(status__in=Message.IN_FLIGHT, updated__lt=cutoff)
    if conversation is not None:
        stale = stale.filter(conversation=conversation)
    return sum(
        _end_orphan(message, status=Message.Status.INTERRUPTED, error=INTERRUPTED_ERROR)
        for message in stale.select_related("conversation__owner")
        if runner.get(message.pk) is None
    )


SWEEP = "stale-replies"


def start_sweeping() -> None:
    """Record orphaned replies as interrupted every CHAT_SWEEP_INTERVAL seconds (once)."""
    runner.every(settings.CHAT_SWEEP_INTERVAL, _sweep, name=SWEEP)


@on_db_thread
def _sweep() -> None:
    try:
        replies_interrupt_stale()
    finally:
        release_connection()


# --- Generation (runs on the runner's loop; database work on its DB thread) ----------


@dataclass
class Progress:
    text: str = ""
    status: str = Message.Status.PENDING
    model: str = ""
    ttft_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = ""
    reasoning: str = ""
    reasoning_started: datetime | None = None
    reasoning_ended: datetime | None = None
    reasoning_tokens: int | None = None
    # When the first text came: thinking recognised only at its "</think>" began then.
    first_text_at: datetime | None = None
    saved: tuple[int, int, str] = (0, 0, Message.Status.PENDING)
    saved_at: float = field(default_factory=time.monotonic)

    def state(self) -> tuple[int, int, str]:
        return (len(self.text), len(self.reasoning), self.status)

    def take_reasoning(self, chunk: Chunk, writer: journal.JournalWriter) -> None:
        """Add a chunk's reasoning (see `Chunk.rethink`), timed; the answer's start ends it."""
        if chunk.rethink:
            # What was shown as the answer was reasoning: it moves, whole.
            writer.rethink(self.text)
            self.reasoning, self.text = self.reasoning + self.text, ""
            self.reasoning_started = self.reasoning_started or self.first_text_at
        if chunk.reasoning or chunk.rethink:
            self.reasoning += chunk.reasoning
            self.reasoning_started = self.reasoning_started or timezone.now()
            self.reasoning_ended = None
            writer.reasoning(chunk.reasoning)
        if chunk.text and self.reasoning and self.reasoning_ended is None:
            self.reasoning_ended = timezone.now()
            writer.thought(self.reasoning_ended - (self.reasoning_started or self.reasoning_ended))


@on_db_thread
def _load(message_id: int) -> tuple[Message, list[dict[str, str]]]:
    reply = Message.objects.select_related("conversation__owner").get(pk=message_id)
    context = gen_context.reply_context(reply=reply)
    if context.omitted != reply.omitted:
        # Shown with the reply: what the model did not see.
        Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
            omitted=context.omitted
        )
        reply.omitted = context.omitted
    if context.sources != reply.sources:
        # Named in the reply's footer: the documents and passages the model was given.
        Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
            sources=context.sources
        )
        reply.sources = context.sources
    return reply, context.messages


@on_db_thread
def save_progress(message_id: int, progress: Progress, *, write: bool) -> bool:
    """Write the growing reply (or only look, if nothing changed).

    False if it must stop: Stop was pressed in another process, or the reply was ended
    elsewhere meanwhile.
    """
    live_row = Message.objects.filter(
        pk=message_id, status__in=Message.IN_FLIGHT, stop_requested=False
    )
    if not write:
        return live_row.exists()
    if progress.state() == progress.saved:
        # Only the lease: the text is unchanged, so it is not indexed again.
        return bool(live_row.update(updated=timezone.now()))
    return bool(
        live_row.update(
            content=progress.text,
            reasoning=progress.reasoning,
            reasoning_started=progress.reasoning_started,
            reasoning_ended=progress.reasoning_ended,
            status=progress.status,
            ttft_ms=progress.ttft_ms,
            updated=timezone.now(),
        )
    )


def _finish(message_id: int, progress: Progress, status: str, error: str, total_ms: int) -> None:
    try:
        record_end(message_id, progress, status, error, total_ms)
    finally:
        release_connection()


def record_end(message_id: int, progress: Progress, status: str, error: str, total_ms: int) -> None:
    """Save how the reply ended — text, status, usage, timings — and log it, once.

    Public as a seam: the tests make it fail to prove that a reply survives its database.
    """
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update()
            .select_related("conversation__owner")
            .get(pk=message_id)
        )
        already_ended = reply.status in Message.FINISHED
        if not already_ended:
            reply.status = status
            reply.error = strip_nul(error)
        reply.stop_requested = False
        grew = len(progress.text) + len(progress.reasoning) > len(reply.content) + len(
            reply.reasoning
        )
        if grew:
            reply.content = progress.text
            reply.reasoning = progress.reasoning
        if progress.reasoning:
            reply.reasoning_started = progress.reasoning_started
            # Thinking that never reached an answer (stopped, failed) ended with the reply.
            reply.reasoning_ended = progress.reasoning_ended or timezone.now()
        reply.reasoning_tokens = progress.reasoning_tokens
        reply.model = strip_nul(progress.model or reply.model)
        reply.prompt_tokens = progress.prompt_tokens
        reply.completion_tokens = progress.completion_tokens
        reply.ttft_ms = progress.ttft_ms
        reply.total_ms = total_ms
        reply.finish_reason = strip_nul(progress.finish_reason)[:32]
        reply.save()
    # Whoever ended it elsewhere (a stale sweep, an unanswered Stop) logged it already,
    # but with the text it had then: a longer one is logged again, so the log keeps it.
    if not already_ended or grew:
        chatlog.log_message(reply, username=reply.conversation.owner.get_username())


# Called with (conversation id, reply id) when a reply has ended complete (see on_complete).
_on_complete: list[Callable[[int, int], None]] = []


def on_complete(hook: Callable[[int, int], None]) -> None:
    """Call `hook(conversation_id, reply_id)` whenever a reply ends complete.

    Work that follows a reply (its conversation's automatic title) registers here, so
    the lifecycle need not know it.
    """
    if hook not in _on_complete:
        _on_complete.append(hook)


async def _generate(live: LiveReply) -> None:
    message_id = live.message_id
    started = time.monotonic()
    progress = Progress()
    status, error = Message.Status.ERROR, ""
    reply: Message | None = None
    writer = journal.JournalWriter(journal.current(), message_id)
    try:
        loaded, context = await runner.db(_load, message_id)
        reply = loaded
        progress.model = loaded.model
        if loaded.status not in Message.IN_FLIGHT:
            live.update(text=loaded.content, status=loaded.status, done=True)
            await _end_journal(writer, message_id, loaded.status)
            return
        if live.stop_requested:
            raise asyncio.CancelledError
        me = cast("asyncio.Task[None]", asyncio.current_task())

        async def save_periodically() -> None:
            tick = time.monotonic()
            while True:
                tick = max(tick + settings.CHAT_SAVE_INTERVAL, time.monotonic())
                await asyncio.sleep(tick - time.monotonic())
                state = progress.state()
                write = state != progress.saved or (
                    time.monotonic() - progress.saved_at > heartbeat_seconds()
                )
                try:
                    go_on = await runner.db(save_progress, message_id, progress, write=write)
                except Exception:
                    # A passing database error must not end the saving for good.
                    logger.exception("Saving reply %s failed; will try again", message_id)
                    continue
                if write:
                    progress.saved, progress.saved_at = state, time.monotonic()
                if not go_on:
                    me.cancel()
                    return

        saver = asyncio.create_task(save_periodically())
        try:
            async for chunk in llm.stream_chat(
                messages=context,
                model=loaded.model,
                temperature=loaded.temperature,
                max_tokens=loaded.max_tokens,
            ):
                if chunk.model:
                    progress.model = chunk.model
                if chunk.phase:
                    writer.phase(chunk.phase, chunk.ahead)
                if chunk.finish_reason:
                    progress.finish_reason = chunk.finish_reason
                if chunk.prompt_tokens is not None:
                    progress.prompt_tokens = chunk.prompt_tokens
                    progress.completion_tokens = chunk.completion_tokens
                    progress.reasoning_tokens = chunk.reasoning_tokens
                if chunk.reasoning or chunk.rethink or (chunk.text and progress.reasoning):
                    if progress.ttft_ms is None:
                        progress.ttft_ms = round((time.monotonic() - started) * 1000)
                        progress.status = Message.Status.STREAMING
                    progress.take_reasoning(chunk, writer)
                    # All of it, for an exit that comes before the next save.
                    live.update(
                        text=progress.text, status=progress.status, reasoning=progress.reasoning
                    )
                if chunk.text:
                    if progress.ttft_ms is None:
                        progress.ttft_ms = round((time.monotonic() - started) * 1000)
                        progress.status = Message.Status.STREAMING
                    progress.first_text_at = progress.first_text_at or timezone.now()
                    progress.text += chunk.text
                    live.update(text=progress.text, status=progress.status)
                    writer.text(chunk.text)
            status = Message.Status.COMPLETE
        finally:
            saver.cancel()
    except asyncio.CancelledError:
        status = Message.Status.STOPPED
    except LLMError as exc:
        error = exc.user_message
    except Exception:
        logger.exception("Generating reply %s failed", message_id)
        error = "Something went wrong while writing this reply. The text so far is kept."
    total_ms = round((time.monotonic() - started) * 1000)
    try:
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                await _uncancellable(
                    runner.db(_finish, message_id, progress, status, error, total_ms)
                )
                break
            except (Message.DoesNotExist, DataError):
                # Deleted meanwhile (in the admin), or refused for its content: no retry helps.
                logger.exception("Recording the end of reply %s failed", message_id)
                break
            except Exception:
                logger.exception("Recording the end of reply %s failed", message_id)
                if attempt < FINISH_ATTEMPTS:
                    await _uncancellable(asyncio.sleep(0.2 * 2**attempt))
        else:
            # The database is gone: the log file at least keeps what was written. Its row,
            # still in flight, will be swept as interrupted: the log says so already.
            if reply is not None:
                reply.content, reply.error = progress.text, INTERRUPTED_ERROR
                reply.reasoning = progress.reasoning
                reply.status = Message.Status.INTERRUPTED
                chatlog.log_message(reply, username=reply.conversation.owner.get_username())
        if status == Message.Status.COMPLETE and reply is not None:
            for hook in _on_complete:
                hook(reply.conversation_id, message_id)
    finally:
        live.update(text=progress.text, status=status, done=True)
        await _end_journal(writer, message_id, status)


async def _end_journal(writer: journal.JournalWriter, message_id: int, status: str) -> None:
    """The journal's last entry, once the database has the end: watchers then show it."""
    await _uncancellable(writer.end(status))
    journal.memory.close(message_id)


async def _uncancellable(awaitable: Awaitable[T]) -> T:
    """Await to the end however often the task is cancelled meanwhile (Stop pressed twice)."""
    future = asyncio.ensure_future(awaitable)
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
    return future.result()


def reply_read(*, message_id: int) -> Message:
    """The reply as the database has it now, as people should see it (`as_seen`)."""
    message = Message.objects.get(pk=message_id)
    # A watcher may follow a reply for minutes: it holds no database connection meanwhile.
    close_old_connections()
    return as_seen(message)


def replies_interrupt_live() -> int:
    """Record the replies this process is still generating as interrupted, text kept.

    Runs when the process exits cleanly (a restart, a deploy), so that such replies say
    at once what happened instead of after CHAT_STALE_AFTER.
    """
    count = 0
    for message_id in runner.active():
        live = runner.get(message_id)
        if live is None:
            continue
        snapshot = live.snapshot()
        kept = {"reasoning": snapshot.reasoning} if snapshot.reasoning else {}
        changed = Message.objects.filter(pk=message_id, status__in=Message.IN_FLIGHT).update(
            content=snapshot.text,
            **kept,
            status=Message.Status.INTERRUPTED,
            error=INTERRUPTED_ERROR,
            updated=timezone.now(),
        )
        if changed:
            count += 1
            reply = Message.objects.select_related("conversation__owner").get(pk=message_id)
            chatlog.log_message(reply, username=reply.conversation.owner.get_username())
    return count


def interrupt_live_at_exit() -> None:
    try:
        replies_interrupt_live()
    except Exception:  # the database may already be gone; the stale sweep covers that
        logger.exception("Could not record interrupted replies at exit")


async def reply_ended(*, reply_id: int, timeout: float) -> None:
    """Return once reply `reply_id` has ended here, or after `timeout` (the no-JavaScript
    flow). It holds no thread meanwhile: a request's thread serves others' requests too."""
    live = runner.get(reply_id)
    if live is not None:
        await live.ended(timeout)
