"""Reads. Every query that takes a user only ever returns that user's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q
from django.shortcuts import get_object_or_404

from .models import Conversation, ImportJob, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class ConversationPage:
    conversations: list[Conversation]
    older: str | None  # cursor of the next, older page; None at the end


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _cursor(conversation: Conversation) -> str:
    # Whole microseconds, not float seconds: a rounded timestamp would skip or repeat rows.
    return f"{(conversation.updated - _EPOCH) // _MICROSECOND}-{conversation.pk}"


def _parse_cursor(cursor: str) -> tuple[datetime, int] | None:
    stamp, _, pk = cursor.partition("-")
    if not (stamp.isascii() and stamp.isdecimal() and pk.isascii() and pk.isdecimal()):
        return None
    if len(stamp) > 18 or len(pk) > 18:
        return None
    try:
        return _EPOCH + int(stamp) * _MICROSECOND, int(pk)
    except OverflowError:
        return None


def conversation_list(*, user: User, older_than: str = "") -> ConversationPage:
    """The sidebar: most recently active first, a page at a time (one indexed query).

    `older_than` is the `older` cursor of the previous page; an unreadable one starts
    from the top.
    """
    limit = settings.CHAT_SIDEBAR_LIMIT
    conversations = Conversation.objects.filter(owner=user).only("id", "title", "updated")
    after = _parse_cursor(older_than) if older_than else None
    if after is not None:
        updated, pk = after
        conversations = conversations.filter(Q(updated__lt=updated) | Q(updated=updated, pk__lt=pk))
    rows = list(conversations.order_by("-updated", "-id")[: limit + 1])
    older = _cursor(rows[limit - 1]) if len(rows) > limit else None
    return ConversationPage(rows[:limit], older)


def conversation_get(*, user: User, conversation_id: int) -> Conversation:
    """The user's conversation, or 404 — also for other users' ids."""
    return get_object_or_404(Conversation, pk=conversation_id, owner=user)


def message_get(*, user: User, conversation_id: int, message_id: int) -> Message:
    return get_object_or_404(
        Message.objects.select_related("conversation"),
        pk=message_id,
        conversation_id=conversation_id,
        conversation__owner=user,
    )


async def message_find(*, user: User, conversation_id: int, message_id: int) -> Message | None:
    """The user's message, or None — also for other users' ids (async, for the stream)."""
    return (
        await Message.objects.filter(
            pk=message_id, conversation_id=conversation_id, conversation__owner=user
        )
        .select_related("conversation")
        .afirst()
    )


def message_is_last(*, message: Message) -> bool:
    return not Message.objects.filter(
        conversation_id=message.conversation_id, pk__gt=message.pk
    ).exists()


def thread(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.all())


def in_flight_reply(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.IN_FLIGHT
    ).last()


def model_context(*, reply: Message) -> list[dict[str, str]]:
    """What the model is sent for `reply`: the system prompt, then the earlier turns.

    Only user text and finished (complete or stopped) reply text is sent — never error
    text, never a failed attempt, never anything after the message being answered.
    """
    conversation = reply.conversation
    turns = conversation.messages.filter(pk__lt=reply.pk)
    if reply.parent_id is not None:
        turns = turns.filter(pk__lte=reply.parent_id)
    context: list[dict[str, str]] = []
    if conversation.system_prompt.strip():
        context.append({"role": "system", "content": conversation.system_prompt})
    for message in turns.only("role", "content", "status"):
        if message.role == Message.Role.USER or (
            message.status in (Message.Status.COMPLETE, Message.Status.STOPPED) and message.content
        ):
            context.append({"role": message.role, "content": message.content})
    return context


def readme_section(heading: str) -> str:
    """One `## heading` section of the README (the text up to the next `## `)."""
    readme = Path(settings.BASE_DIR) / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return ""
    start = text.find(f"\n## {heading}\n")
    if start == -1:
        return ""
    body = text[start + len(heading) + 5 :]
    end = body.find("\n## ")
    return (body if end == -1 else body[:end]).strip()


# --- Imports ---------------------------------------------------------------------------


def import_job_get(*, user: User, job_id: int) -> ImportJob:
    """The user's import job, or 404 — also for other users' ids."""
    return get_object_or_404(ImportJob, pk=job_id, owner=user)


def import_jobs_recent(*, user: User, limit: int = 10) -> list[ImportJob]:
    return list(ImportJob.objects.filter(owner=user).defer("report")[:limit])
