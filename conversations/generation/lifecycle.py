"""Writes: sending and editing messages, generating, stopping and regenerating replies.

The rules that keep anything from being lost live here: the user's message is committed
before the model is called; the reply is written as it grows; however a reply ends, its
text so far and a status are saved and logged.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError, DataError, close_old_connections, connection, transaction
from django.utils import timezone

from . import chatlog, llm, selectors
from .models import Conversation, Message
from .runner import LiveReply, runner

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

INTERRUPTED_ERROR = (
    "The server stopped while this reply was being written. The text so far is kept."
)

# With no new token, a generation still records a sign of life this often, so that a
# slow model is never mistaken for a dead server.
HEARTBEAT_SECONDS = 10.0
FINISH_ATTEMPTS = 5


class ConversationBusy(Exception):
    """A reply is still being written in this conversation."""

    message = "A reply is still being written. Wait for it to finish, or press Stop."


def provisional_title(*, text: str, words: int = 8, chars: int = 60) -> str:
    """A conversation's first title: the first words of its first message."""
    first = " ".join(text.split()[:words])
    if len(first) > chars:
        first = first[: chars - 1].rstrip() + "…"
    elif len(text.split()) > words:
        first += "…"
    return first or "New chat"


def _lock_idle(conversation_id: int) -> Conversation:
    # Serialise sends to one conversation: two tabs can never start two replies.
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    # A reply orphaned by a dead server must not block the conversation for good.
    replies_interrupt_stale(conversation=conversation)
    if selectors.in_flight_reply(conversation=conversation) is not None:
        raise ConversationBusy()
    return conversation


def _pending_reply(*, conversation: Conversation, question_id: int | None) -> Message:
    """Create the reply that the runner will write, show it, and mark the conversation active.

    The reply records the settings it is generated with: the conversation's, or the site's
    defaults where the conversation has none.
    """
    now = timezone.now()
    temperature = conversation.temperature
    max_tokens = conversation.max_tokens
    if max_tokens is None:
        max_tokens = settings.CHAT_MAX_TOKENS or None
    model = conversation.model or llm.default_model()
    if max_tokens is None and llm.model_option(model).backend == "local":
        # A small local model can ramble until its window is full, holding the only slot:
        # without a limit of the user's, a local reply stops at LOCAL_MODEL_MAX_TOKENS.
        max_tokens = settings.LOCAL_MODEL_MAX_TOKENS or None
    reply = Message.objects.create(
        conversation=conversation,
        parent_id=question_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=model,
        system_prompt=conversation.system_prompt,
        temperature=settings.CHAT_TEMPERATURE if temperature is None else temperature,
        max_tokens=max_tokens,
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated=now, current=reply)
    conversation.updated = now
    conversation.current = reply
    transaction.on_commit(lambda: reply_start(reply=reply))
    return reply


@dataclass(frozen=True)
class ConversationSettings:
    """What a conversation's replies are generated with; None: the site's default."""

    model: str
    system_prompt: str
    temperature: float | None = None
    max_tokens: int | None = None


def conversation_defaults() -> ConversationSettings:
    """The settings of a new conversation, from the site's configuration."""
    return ConversationSettings(
        model=llm.default_model(), system_prompt=settings.CHAT_SYSTEM_PROMPT
    )


@transaction.atomic
def message_send(
    *,
    user: User,
    conversation: Conversation | None,
    content: str,
    options: ConversationSettings | None = None,
) -> tuple[Conversation, Message, Message]:
    """Save the user's message (creating the conversation if needed) and start the reply.

    The message follows the last message of the branch shown. A new conversation gets
    `options` (by default the site's). The message is committed and logged before the
    model is called. Raises `ConversationBusy` if a reply is still being written in this
    conversation.
    """
    if conversation is None:
        options = options or conversation_defaults()
        conversation = Conversation.objects.create(
            owner=user,
            title=provisional_title(text=content),
            model=options.model,
            system_prompt=options.system_prompt,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
        )
        leaf_id = None
    else:
        conversation = _lock_idle(conversation.pk)
        leaf_id = selectors.shown_leaf_id(conversation=conversation)
    question = Message.objects.create(
        conversation=conversation,
        parent_id=leaf_id,
        role=Message.Role.USER,
        content=content,
        status=Message.Status.COMPLETE,
    )
    transaction.on_commit(lambda: chatlog.log_message(question, username=user.get_username()))
    reply = _pending_reply(conversation=conversation, question_id=question.pk)
    return conversation, question, reply


def reply_start(*, reply: Message) -> LiveReply:
    """Start generating `reply` in the background; idempotent while it runs."""
    return runner.start(reply.pk, _generate)


class NotRetryable(Exception):
    message = "Only the latest reply can be retried or regenerated, and only once it has finished."


@transaction.atomic
def reply_regenerate(*, reply: Message) -> Message:
    """Answer the same user message again with a new reply, shown in place of `reply`.

    `reply` is kept as an alternative (a sibling). Only a finished reply that ends its
    branch can be regenerated (`NotRetryable` otherwise); `ConversationBusy` while a
    reply is being written.
    """
    conversation = _lock_idle(reply.conversation_id)
    reply.refresh_from_db()
    if not reply.is_regenerable or not selectors.message_is_last(message=reply):
        raise NotRetryable()
    return _pending_reply(conversation=conversation, question_id=reply.parent_id)


# Retrying a failed reply is regenerating it.
reply_retry = reply_regenerate


class NotEditable(Exception):
    message = "Only your own messages can be edited."


@transaction.atomic
def message_edit(*, user: User, message: Message, content: str) -> tuple[Message, Message]:
    """Send `content` in place of the user message `message`, and start its reply.

    The new message is an alternative to `message` (same parent); `message` and all that
    followed it are kept. Raises `NotEditable` for a reply, `ConversationBusy` while a
    reply is being written.
    """
    conversation = _lock_idle(message.conversation_id)
    if message.role != Message.Role.USER:
        raise NotEditable()
    question = Message.objects.create(
        conversation=conversation,
        parent_id=message.parent_id,
        role=Message.Role.USER,
        content=content,
        status=Message.Status.COMPLETE,
    )
    transaction.on_commit(lambda: chatlog.log_message(question, username=user.get_username()))
    reply = _pending_reply(conversation=conversation, question_id=question.pk)
    return question, reply


@transaction.atomic
def conversation_show(*, message: Message) -> Conversation:
    """Show the branch through `message`: its most recent continuation.

    Refused (`ConversationBusy`) while a reply is being written, which stays on screen
    with its Stop button.
    """
    conversation = _lock_idle(message.conversation_id)
    conversation.current_id = selectors.newest_leaf_id(message=message)
    conversation.save(update_fields=["current"])
    return conversation


def conversation_update_settings(
    *, conversation: Conversation, options: ConversationSettings
) -> Conversation:
    """Change what the conversation's next replies are generated with."""
    conversation.model = options.model
    conversation.system_prompt = options.system_prompt
    conversation.temperature = options.temperature
    conversation.max_tokens = options.max_tokens
    conversation.save(update_fields=["model", "system_prompt", "temperature", "max_tokens"])
    return conversation


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
        updated__lt=timezone.now() - timedelta(seconds=HEARTBEAT_SECONDS * 1.5),
    ).exists():
        # No sign of life for longer than a heartbeat: nobody is writing it any more.
        _end_orphan(reply, status=Message.Status.STOPPED, error="")
    elif Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
        stop_requested=True
    ):
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


def replies_interrupt_stale(*, conversation: Conversation) -> int:
    """Mark replies whose generator died (no progress for CHAT_STALE_AFTER) as interrupted."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = conversation.messages.filter(status__in=Message.IN_FLIGHT, updated__lt=cutoff)
    return sum(
        _end_orphan(message, status=Message.Status.INTERRUPTED, error=INTERRUPTED_ERROR)
        for message in stale
        if runner.get(message.pk) is None
    )


# --- Generation (runs on the runner's loop; database work on its DB thread) ----------


@dataclass
class _Progress:
    text: str = ""
    status: str = Message.Status.PENDING
    model: str = ""
    ttft_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    saved: tuple[int, str] = (0, Message.Status.PENDING)
    saved_at: float = field(default_factory=time.monotonic)


def _on_db_thread(fn: Callable[P, T]) -> Callable[P, T]:
    """For work on the runner's DB thread: after a database error, drop the connection.

    Nothing else on that thread would ever close a broken connection (a database restart,
    an idle timeout), and every later call would fail the same way.
    """

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connection.close()
            raise

    return call


@_on_db_thread
def _load(message_id: int) -> tuple[Message, list[dict[str, str]]]:
    close_old_connections()
    reply = Message.objects.select_related("conversation__owner").get(pk=message_id)
    context = selectors.reply_context(reply=reply)
    if context.omitted != reply.omitted:
        # Shown with the reply: what the model did not see.
        Message.objects.filter(pk=reply.pk, status__in=Message.IN_FLIGHT).update(
            omitted=context.omitted
        )
        reply.omitted = context.omitted
    return reply, context.messages


@_on_db_thread
def _save_progress(message_id: int, progress: _Progress, *, write: bool) -> bool:
    """Write the growing reply (or only look, if nothing changed).

    False if it must stop: Stop was pressed in another process, or the reply was ended
    elsewhere meanwhile.
    """
    live_row = Message.objects.filter(
        pk=message_id, status__in=Message.IN_FLIGHT, stop_requested=False
    )
    if not write:
        return live_row.exists()
    return bool(
        live_row.update(
            content=progress.text,
            status=progress.status,
            ttft_ms=progress.ttft_ms,
            updated=timezone.now(),
        )
    )


def _finish(message_id: int, progress: _Progress, status: str, error: str, total_ms: int) -> None:
    try:
        _record_end(message_id, progress, status, error, total_ms)
    finally:
        # The DB thread serves every generation: hold no connection between them.
        connection.close()


def _record_end(
    message_id: int, progress: _Progress, status: str, error: str, total_ms: int
) -> None:
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update()
            .select_related("conversation__owner")
            .get(pk=message_id)
        )
        already_ended = reply.status in Message.FINISHED
        if not already_ended:
            reply.status = status
            reply.error = error.replace("\x00", "")
        reply.stop_requested = False
        grew = len(progress.text) > len(reply.content)
        if grew:
            reply.content = progress.text
        reply.model = (progress.model or reply.model).replace("\x00", "")
        reply.prompt_tokens = progress.prompt_tokens
        reply.completion_tokens = progress.completion_tokens
        reply.ttft_ms = progress.ttft_ms
        reply.total_ms = total_ms
        reply.save()
    # Whoever ended it elsewhere (a stale sweep, an unanswered Stop) logged it already,
    # but with the text it had then: a longer one is logged again, so the log keeps it.
    if not already_ended or grew:
        chatlog.log_message(reply, username=reply.conversation.owner.get_username())


async def _generate(live: LiveReply) -> None:
    message_id = live.message_id
    started = time.monotonic()
    progress = _Progress()
    status, error = Message.Status.ERROR, ""
    reply: Message | None = None
    try:
        loaded, context = await runner.db(_load, message_id)
        reply = loaded
        progress.model = loaded.model
        if loaded.status not in Message.IN_FLIGHT:
            live.update(text=loaded.content, status=loaded.status, done=True)
            return
        if live.stop_requested:
            raise asyncio.CancelledError
        me = cast("asyncio.Task[None]", asyncio.current_task())

        async def save_periodically() -> None:
            tick = time.monotonic()
            while True:
                tick = max(tick + settings.CHAT_SAVE_INTERVAL, time.monotonic())
                await asyncio.sleep(tick - time.monotonic())
                state = (len(progress.text), progress.status)
                write = state != progress.saved or (
                    time.monotonic() - progress.saved_at > HEARTBEAT_SECONDS
                )
                try:
                    go_on = await runner.db(_save_progress, message_id, progress, write=write)
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
                    live.update(phase=chunk.phase, ahead=chunk.ahead)
                if chunk.prompt_tokens is not None:
                    progress.prompt_tokens = chunk.prompt_tokens
                    progress.completion_tokens = chunk.completion_tokens
                if chunk.text:
                    if progress.ttft_ms is None:
                        progress.ttft_ms = round((time.monotonic() - started) * 1000)
                        progress.status = Message.Status.STREAMING
                    progress.text += chunk.text
                    live.update(text=progress.text, status=progress.status)
            status = Message.Status.COMPLETE
        finally:
            saver.cancel()
    except asyncio.CancelledError:
        status = Message.Status.STOPPED
    except llm.LLMError as exc:
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
                reply.status = Message.Status.INTERRUPTED
                chatlog.log_message(reply, username=reply.conversation.owner.get_username())
        if status == Message.Status.COMPLETE and reply is not None:
            _title_schedule(conversation_id=reply.conversation_id, reply_id=message_id)
    finally:
        live.update(text=progress.text, status=status, done=True)


async def _uncancellable(awaitable: Awaitable[T]) -> T:
    """Await to the end however often the task is cancelled meanwhile (Stop pressed twice)."""
    future = asyncio.ensure_future(awaitable)
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
    return future.result()


def reply_refresh(*, message_id: int) -> Message:
    """The reply as the database has it now, ended as interrupted if its generator died."""
    message = Message.objects.select_related("conversation__owner").get(pk=message_id)
    if message.is_in_flight:
        replies_interrupt_stale(conversation=message.conversation)
        message.refresh_from_db()
    # A watcher may follow a reply for minutes: it holds no database connection meanwhile.
    close_old_connections()
    return message


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
        changed = Message.objects.filter(pk=message_id, status__in=Message.IN_FLIGHT).update(
            content=live.snapshot().text,
            status=Message.Status.INTERRUPTED,
            error=INTERRUPTED_ERROR,
            updated=timezone.now(),
        )
        if changed:
            count += 1
            reply = Message.objects.select_related("conversation__owner").get(pk=message_id)
            chatlog.log_message(reply, username=reply.conversation.owner.get_username())
    return count


def _interrupt_live_at_exit() -> None:
    try:
        replies_interrupt_live()
    except Exception:  # the database may already be gone; the stale sweep covers that
        logger.exception("Could not record interrupted replies at exit")


atexit.register(_interrupt_live_at_exit)


def reply_wait(*, reply: Message, timeout: float) -> None:
    """Block until `reply` has ended (for the no-JavaScript flow)."""
    live = runner.get(reply.pk)
    if live is not None:
        live.wait_done(timeout)


# --- History: rename, delete, automatic titles -----------------------------------------

TITLE_MAX_CHARS = 60
TITLE_INSTRUCTION = (
    "Write a short title (at most 6 words) for the conversation below. Answer with the "
    "title only: no quotes, no full stop, no explanation."
)
# Futures of the automatic titles this process is generating, by conversation id.
_titles_pending: dict[int, Future[None]] = {}


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Give the conversation the user's title; automatic titles never replace it after this."""
    Conversation.objects.filter(pk=conversation.pk).update(title=title, title_set_by_user=True)
    conversation.title, conversation.title_set_by_user = title, True
    return conversation


def conversation_delete(*, user: User, conversation: Conversation) -> int:
    """Delete the conversation with all its messages, and log it; returns the message count.

    A reply still being written is stopped first, so that nothing writes to deleted rows.
    """
    for reply in conversation.messages.filter(status__in=Message.IN_FLIGHT):
        reply_stop(reply=reply)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        count = locked.messages.count()
        title = locked.title
        # The tree's SET_NULL links (parent, current) would otherwise be updated row by row.
        Conversation.objects.filter(pk=locked.pk).update(current=None)
        locked.messages.update(parent=None)
        locked.delete()
        transaction.on_commit(
            lambda: chatlog.log_deleted(
                username=user.get_username(),
                conversation_id=conversation.pk,
                title=title,
                message_count=count,
            )
        )
    return count


def clean_title(text: str) -> str:
    """A model's answer made into a title: one line, no quotes or "Title:", at most 60 chars."""
    lines = [line.strip() for line in text.replace("\x00", "").splitlines() if line.strip()]
    title = lines[0] if lines else ""
    title = re.sub(r"^[*_#\s]*title\s*[*_]*\s*[:\-–]", "", title, flags=re.IGNORECASE)
    title = title.strip(" \t*_`\"'“”‘’«»").rstrip(".").strip(" \t*_`\"'“”‘’«»")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return title


@_on_db_thread
def _title_prompt(reply_id: int) -> tuple[int, str, list[dict[str, str]]] | None:
    """What to ask for a title after `reply`, or None if this conversation gets none.

    Only after the first complete reply of a conversation whose title the user never set.
    """
    try:
        reply = Message.objects.select_related("conversation").get(pk=reply_id)
        conversation = reply.conversation
        if conversation.title_set_by_user or reply.status != Message.Status.COMPLETE:
            return None
        if (
            conversation.messages.filter(
                role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE, pk__lt=reply.pk
            )
            .exclude(pk=reply.pk)
            .exists()
        ):
            return None
        question = (
            conversation.messages.filter(role=Message.Role.USER, pk__lt=reply.pk)
            .only("content")
            .first()
        )
        if question is None:
            return None
        # The question alone, asked plainly: small local models answer a transcript with
        # a comment on it ("Your answer is already…"), and the question says what it is about.
        ask = f"Write a title of 3 to 6 words for this request:\n\n{question.content[:1500]}"
        messages = [
            {"role": "system", "content": TITLE_INSTRUCTION},
            {"role": "user", "content": ask},
        ]
        return conversation.pk, reply.model or conversation.model, messages
    finally:
        connection.close()


@_on_db_thread
def _title_save(conversation_id: int, title: str) -> bool:
    try:
        # Conditional: a rename that lands while the model was asked wins.
        return bool(
            Conversation.objects.filter(pk=conversation_id, title_set_by_user=False).update(
                title=title
            )
        )
    finally:
        connection.close()


async def _title_generate(conversation_id: int, model: str, messages: list[dict[str, str]]) -> None:
    text = ""
    try:
        async with asyncio.timeout(settings.CHAT_TITLE_TIMEOUT):
            async for chunk in llm.stream_chat(
                messages=messages, model=model, temperature=0.2, max_tokens=20
            ):
                text += chunk.text
    except (llm.LLMError, TimeoutError) as exc:
        logger.warning("No automatic title for conversation %s: %s", conversation_id, exc)
        return
    title = clean_title(text)
    if not title:
        logger.info("No automatic title for conversation %s: empty answer", conversation_id)
        return
    saved = await runner.db(_title_save, conversation_id, title)
    logger.info(
        "Automatic title for conversation %s: %r%s",
        conversation_id,
        title,
        "" if saved else " (not used: renamed meanwhile, or deleted)",
    )


async def _title_task(reply_id: int) -> None:
    prompt = await runner.db(_title_prompt, reply_id)
    if prompt is not None:
        await _title_generate(*prompt)


def _title_schedule(*, conversation_id: int, reply_id: int) -> None:
    """After a complete reply: if it is the conversation's first, ask the model for a title.

    Runs beside the reply, never delaying it; the page asks for the title afterwards.
    """
    if not settings.CHAT_AUTO_TITLE:
        return
    future = runner.spawn(lambda: _title_task(reply_id))
    _titles_pending[conversation_id] = future

    def forget(done: Future[None]) -> None:
        if _titles_pending.get(conversation_id) is done:
            del _titles_pending[conversation_id]

    future.add_done_callback(forget)


def conversation_title_wait(*, conversation: Conversation, timeout: float) -> Conversation:
    """The conversation once an automatic title being generated here has been settled."""
    future = _titles_pending.get(conversation.pk)
    if future is not None:
        with contextlib.suppress(Exception):
            future.result(timeout)
    conversation.refresh_from_db(fields=["title", "title_set_by_user"])
    return conversation


def title_may_change(*, message: Message) -> bool:
    """Whether the page should ask for the conversation's title once `message` is done."""
    return (
        settings.CHAT_AUTO_TITLE
        and message.role == Message.Role.ASSISTANT
        and message.status == Message.Status.COMPLETE
        and not message.conversation.title_set_by_user
        and not Message.objects.filter(
            conversation_id=message.conversation_id,
            role=Message.Role.ASSISTANT,
            status=Message.Status.COMPLETE,
            pk__lt=message.pk,
        ).exists()
    )
