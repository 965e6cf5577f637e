"""Reads. Every query that takes a user only ever returns that user's rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .models import Conversation, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User


GROUPS = ("Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older")


def recency_group(updated: datetime, *, today: date) -> str:
    """The sidebar heading `updated` falls under (days in the site's TIME_ZONE)."""
    days = (today - timezone.localdate(updated)).days
    if days <= 0:
        return GROUPS[0]
    if days == 1:
        return GROUPS[1]
    if days <= 7:
        return GROUPS[2]
    if days <= 30:
        return GROUPS[3]
    return GROUPS[4]


@dataclass(frozen=True)
class ConversationPage:
    conversations: list[Conversation]
    older: str | None  # cursor of the next, older page; None at the end
    # The group the previous page ended in (from its cursor), so a heading is not repeated.
    previous_group: str | None = None
    today: date | None = None

    def entries(self) -> list[tuple[str | None, Conversation]]:
        """Each conversation with the heading to show before it (None: same group)."""
        today = self.today or timezone.localdate()
        out: list[tuple[str | None, Conversation]] = []
        last = self.previous_group
        for conversation in self.conversations:
            group = recency_group(conversation.updated, today=today)
            out.append((group if group != last else None, conversation))
            last = group
        return out


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


def conversation_list(
    *, user: User, older_than: str = "", now: datetime | None = None
) -> ConversationPage:
    """The sidebar: most recently active first, a page at a time (one indexed query).

    `older_than` is the `older` cursor of the previous page; an unreadable one starts
    from the top. Conversations are grouped by recency relative to `now` (default: now).
    """
    today = timezone.localdate(now or timezone.now())
    limit = settings.CHAT_SIDEBAR_LIMIT
    conversations = Conversation.objects.filter(owner=user).only("id", "title", "updated")
    after = _parse_cursor(older_than) if older_than else None
    previous_group = None
    if after is not None:
        updated, pk = after
        conversations = conversations.filter(Q(updated__lt=updated) | Q(updated=updated, pk__lt=pk))
        try:
            previous_group = recency_group(updated, today=today)
        except OverflowError:  # a forged cursor near year 9999, shifted to local time
            previous_group = None
    rows = list(conversations.order_by("-updated", "-id")[: limit + 1])
    older = _cursor(rows[limit - 1]) if len(rows) > limit else None
    return ConversationPage(rows[:limit], older, previous_group, today)


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


# --- Search ----------------------------------------------------------------------------

SEARCH_MAX_CHARS = 200
SEARCH_MAX_TERMS = 12
SEARCH_MAX_PAGE = 500


@dataclass(frozen=True)
class MessageHit:
    message_id: int
    conversation_id: int
    conversation_title: str
    role: str
    created: datetime
    snippet: SafeString

    @property
    def url(self) -> str:
        return f"{reverse('conversation', args=[self.conversation_id])}#m-{self.message_id}"


@dataclass(frozen=True)
class TitleHit:
    conversation_id: int
    title: SafeString
    updated: datetime

    @property
    def url(self) -> str:
        return reverse("conversation", args=[self.conversation_id])


@dataclass(frozen=True)
class SearchResults:
    query: str
    page: int
    conversations: list[TitleHit]
    messages: list[MessageHit]
    has_next: bool


def search_terms(query: str) -> list[str]:
    """The words of a query: whitespace-separated, each with at least one letter or digit."""
    words = query[:SEARCH_MAX_CHARS].split()
    return [w for w in words if re.search(r"\w", w)][:SEARCH_MAX_TERMS]


def fts5_query(query: str) -> str:
    """A user's query as FTS5 syntax: every word a quoted string (so `"`, `*`, AND, `-`,
    `:` mean nothing special), all required, the last one also as a prefix while typed."""
    terms = search_terms(query)
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    if quoted and not query[:SEARCH_MAX_CHARS].endswith((" ", "\t", "\n")):
        quoted[-1] += "*"
    return " ".join(quoted)


def highlight(text: str, terms: list[str], *, width: int = 180) -> SafeString:
    """An escaped extract of `text` around the first match, matches wrapped in <mark>."""
    words = [w for term in terms for w in re.findall(r"\w+", term)]
    pattern = (
        re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")\w*", re.IGNORECASE)
        if words
        else None
    )
    first = pattern.search(text) if pattern else None
    start = 0
    if first is not None and first.start() > width // 3:
        start = first.start() - width // 3
        space = text.find(" ", start, first.start())
        start = space + 1 if space != -1 else start
    end = min(len(text), start + width)
    piece = " ".join(text[start:end].split())
    parts: list[str] = ["…"] if start > 0 else []
    pos = 0
    for match in pattern.finditer(piece) if pattern else ():
        parts.append(escape(piece[pos : match.start()]))
        parts.append(format_html("<mark>{}</mark>", match.group()))
        pos = match.end()
    parts.append(escape(piece[pos:]))
    if end < len(text):
        parts.append("…")
    return mark_safe("".join(parts))  # noqa: S308 - every piece is escaped above


def search(*, user: User, query: str, page: int = 1) -> SearchResults:
    """The user's conversations whose title matches and messages whose text matches.

    Full-text indexes answer it (FTS5 on SQLite, GIN on PostgreSQL), newest first, a page
    at a time; only ever the user's own rows.
    """
    page = max(1, min(page, SEARCH_MAX_PAGE))
    terms = search_terms(query)
    if not terms:
        return SearchResults(query, page, [], [], False)
    size = settings.CHAT_SEARCH_PAGE_SIZE
    offset = (page - 1) * size
    if connection.vendor == "postgresql":
        titles, messages = _search_postgresql(user, query, offset, size + 1)
    else:
        titles, messages = _search_sqlite(user, query, offset, size + 1)
    return SearchResults(
        query=query,
        page=page,
        conversations=[
            TitleHit(c.pk, highlight(c.title, terms, width=200), c.updated) for c in titles[:size]
        ],
        messages=[
            MessageHit(
                m.pk,
                m.conversation_id,
                m.conversation_title if hasattr(m, "conversation_title") else m.conversation.title,
                m.role,
                m.created,
                highlight(m.content, terms),
            )
            for m in messages[:size]
        ],
        has_next=len(titles) > size or len(messages) > size,
    )


def _search_sqlite(
    user: User, query: str, offset: int, limit: int
) -> tuple[list[Conversation], list[Message]]:
    match = fts5_query(query)
    titles = list(
        Conversation.objects.raw(
            "SELECT c.id, c.title, c.updated FROM conversations_conversation_fts"
            " JOIN conversations_conversation c ON c.id = conversations_conversation_fts.rowid"
            " WHERE conversations_conversation_fts MATCH %s AND c.owner_id = %s"
            " ORDER BY c.updated DESC, c.id DESC LIMIT %s OFFSET %s",
            [match, user.pk, limit, offset],
        )
    )
    # Newest first, in the index's own rowid order: SQLite stops after one page of the
    # user's matches instead of sorting them all.
    messages = list(
        Message.objects.raw(
            "SELECT m.id, m.conversation_id, m.role, m.content, m.created,"
            " c.title AS conversation_title FROM conversations_message_fts"
            " JOIN conversations_message m ON m.id = conversations_message_fts.rowid"
            " JOIN conversations_conversation c ON c.id = m.conversation_id"
            " WHERE conversations_message_fts MATCH %s AND c.owner_id = %s"
            " ORDER BY conversations_message_fts.rowid DESC LIMIT %s OFFSET %s",
            [match, user.pk, limit, offset],
        )
    )
    return titles, messages


def _search_postgresql(
    user: User, query: str, offset: int, limit: int
) -> tuple[list[Conversation], list[Message]]:
    from django.contrib.postgres.search import SearchQuery, SearchVector

    ts_query = SearchQuery(query[:SEARCH_MAX_CHARS], config="simple", search_type="websearch")
    titles: list[Conversation] = list(
        Conversation.objects.annotate(_fts=SearchVector("title", config="simple"))
        .filter(owner=user, _fts=ts_query)
        .only("id", "title", "updated")
        .order_by("-updated", "-id")[offset : offset + limit]
    )
    messages: list[Message] = list(
        Message.objects.annotate(_fts=SearchVector("content", config="simple"))
        .filter(conversation__owner=user, _fts=ts_query)
        .select_related("conversation")
        .only("id", "conversation_id", "role", "content", "created", "conversation__title")
        .order_by("-id")[offset : offset + limit]
    )
    return titles, messages
