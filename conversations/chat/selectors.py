"""Reads. Every query that takes a user only ever returns that user's rows."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from . import llm
from .models import Conversation, ImportJob, Message, Versions

if TYPE_CHECKING:
    from django.contrib.auth.models import User


GROUPS = ("Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older")


def local_day(value: datetime) -> date:
    """The day `value` falls on in the site's TIME_ZONE (for an aware `value`).

    Within a day of year 1 or 9999 (an imported file can hold such dates) local time would
    be off the calendar (OverflowError): the UTC day then, so no page ever fails on it.
    """
    try:
        return timezone.localdate(value)
    except OverflowError:
        return value.astimezone(UTC).date()


def recency_group(updated: datetime, *, today: date) -> str:
    """The sidebar heading `updated` falls under (days in the site's TIME_ZONE)."""
    days = (today - local_day(updated)).days
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
        previous_group = recency_group(updated, today=today)
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
    """Whether nothing follows `message`: it ends its branch."""
    return not Message.objects.filter(parent_id=message.pk).exists()


# --- The message tree ----------------------------------------------------------------
# A conversation's messages form a tree; the page shows one branch, root to
# `Conversation.current`. Trees are small (one conversation), so each is loaded in one
# query and walked in Python.


def _children(messages: list[Message]) -> dict[int | None, list[Message]]:
    """Each message's children, oldest first (`messages` come ordered by created, id)."""
    children: dict[int | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    return children


def _newest_leaf_under(message: Message, children: dict[int | None, list[Message]]) -> Message:
    """Descend from `message`, taking the most recently created child at each step."""
    seen = {message.pk}
    while children.get(message.pk):
        message = children[message.pk][-1]
        if message.pk in seen:  # a cycle (only hand-edited data could make one)
            break
        seen.add(message.pk)
    return message


def _shown_leaf(
    conversation: Conversation,
    messages: list[Message],
    children: dict[int | None, list[Message]],
) -> Message | None:
    by_id = {m.pk: m for m in messages}
    current = by_id.get(conversation.current_id) if conversation.current_id else None
    if current is not None:
        return _newest_leaf_under(current, children)
    leaves = [m for m in messages if m.pk not in children]
    return max(leaves, key=lambda m: (m.created, m.pk)) if leaves else None


def _path_to(leaf: Message | None, by_id: dict[int, Message]) -> list[Message]:
    """Root to `leaf`, following parents."""
    path: list[Message] = []
    seen: set[int] = set()
    node = leaf
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        path.append(node)
        node = by_id.get(node.parent_id) if node.parent_id is not None else None
    path.reverse()
    return path


def _versions(message: Message, siblings: list[Message]) -> Versions:
    same = [m.pk for m in siblings if m.role == message.role]
    index = same.index(message.pk)
    return Versions(
        index=index + 1,
        count=len(same),
        previous=same[index - 1] if index > 0 else None,
        next=same[index + 1] if index + 1 < len(same) else None,
    )


def thread(*, conversation: Conversation) -> list[Message]:
    """The branch shown: root to `conversation.current` (or to the newest leaf if unset).

    Each message gets `versions`: its place among its alternatives. One query.
    """
    messages = list(conversation.messages.all())
    children = _children(messages)
    path = _path_to(_shown_leaf(conversation, messages, children), {m.pk: m for m in messages})
    for message in path:
        message.versions = _versions(message, children[message.parent_id])
    return path


def shown_leaf_id(*, conversation: Conversation) -> int | None:
    """The last message of the branch shown (what a new question follows)."""
    messages = list(conversation.messages.only("id", "parent_id", "created"))
    leaf = _shown_leaf(conversation, messages, _children(messages))
    return leaf.pk if leaf is not None else None


def conversation_message(*, conversation: Conversation, message_id: str) -> Message | None:
    """The conversation's message with id `message_id` (a URL parameter), or None."""
    if not (message_id.isascii() and message_id.isdecimal() and len(message_id) <= 18):
        return None
    return conversation.messages.filter(pk=int(message_id)).first()


def is_shown(*, message: Message, conversation: Conversation) -> bool:
    """Whether `message` is on the branch the conversation page shows."""
    messages = list(conversation.messages.only("id", "parent_id", "created"))
    leaf = _shown_leaf(conversation, messages, _children(messages))
    return any(m.pk == message.pk for m in _path_to(leaf, {m.pk: m for m in messages}))


def newest_leaf_id(*, message: Message) -> int:
    """The most recent end of the branches under `message` (what showing it shows)."""
    messages = list(
        Message.objects.filter(conversation_id=message.conversation_id).only(
            "id", "parent_id", "created"
        )
    )
    by_id = {m.pk: m for m in messages}
    return _newest_leaf_under(by_id.get(message.pk, message), _children(messages)).pk


def message_versions(*, message: Message) -> Versions:
    """`message`'s place among its alternatives (for rendering it alone). One query."""
    siblings = list(
        Message.objects.filter(
            conversation_id=message.conversation_id,
            parent_id=message.parent_id,
            role=message.role,
        ).only("id", "role")
    )
    return _versions(message, siblings)


def in_flight_reply(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.IN_FLIGHT
    ).last()


TRUNCATED_NOTE = "[The start of this message was left out to fit the model's context window.]\n\n…"


@dataclass(frozen=True)
class ReplyContext:
    messages: list[dict[str, str]]
    omitted: int  # earlier messages left out to fit the model's context window


def model_context(*, reply: Message) -> list[dict[str, str]]:
    """What the model is sent for `reply` (see `reply_context`)."""
    return reply_context(reply=reply).messages


def reply_context(*, reply: Message) -> ReplyContext:
    """What the model is sent for `reply`: its system prompt, then the turns of its branch.

    Only the branch leading to `reply` (from the user message it answers up to the root):
    never another branch, never anything after it. Only user text and finished (complete
    or stopped) reply text is sent — never error text, never a failed attempt. The system
    prompt, model and reply length are those recorded on `reply`. If it all does not fit
    the model's context window, the oldest turns are left out (see `_fit`).
    """
    rows = Message.objects.filter(conversation_id=reply.conversation_id).only(
        "id", "parent_id", "role", "content", "status"
    )
    by_id = {m.pk: m for m in rows}
    start = by_id.get(reply.parent_id) if reply.parent_id is not None else None
    turns = [
        {"role": message.role, "content": message.content}
        for message in _path_to(start, by_id)
        if message.role == Message.Role.USER
        or (message.status in (Message.Status.COMPLETE, Message.Status.STOPPED) and message.content)
    ]
    system = []
    if reply.system_prompt.strip():
        system.append({"role": "system", "content": reply.system_prompt})
    model = reply.model or llm.default_model()
    return _fit(system, turns, model=model, max_tokens=reply.max_tokens)


def prompt_budget(*, model: str, max_tokens: int | None) -> int:
    """Tokens the context may take: the model's window less what the reply needs.

    The reply needs its maximum length, or without one a reserve (1024 tokens, less for
    small windows); never more than half the window, so a huge maximum still leaves room.
    """
    window = llm.model_option(model).context_window
    reserve = max_tokens or min(1024, window // 4)
    return window - min(reserve, window // 2)


def _fit(
    system: list[dict[str, str]],
    turns: list[dict[str, str]],
    *,
    model: str,
    max_tokens: int | None,
) -> ReplyContext:
    """Leave out the oldest whole turns (a question and its replies) until the rest fits.

    The system prompt and the newest message always stay; if even they do not fit, the
    newest message loses its start (with a note saying so) rather than the call failing.
    """
    budget = prompt_budget(model=model, max_tokens=max_tokens)

    def fits(messages: list[dict[str, str]]) -> bool:
        return llm.count_tokens(messages, model=model) <= budget

    if not turns or fits(system + turns):
        return ReplyContext(system + turns, 0)
    # Turns start at each user message; the last one (the question answered) always stays.
    starts = [i for i, turn in enumerate(turns) if turn["role"] == Message.Role.USER and i > 0]
    cuts = sorted({0, *starts, len(turns) - 1})
    # Fewest turns left out that fits: the count shrinks as more are left out (bisect).
    low, high = min(1, len(cuts) - 1), len(cuts) - 1
    while low < high:
        middle = (low + high) // 2
        if fits(system + turns[cuts[middle] :]):
            high = middle
        else:
            low = middle + 1
    kept = turns[cuts[low] :]
    if low < len(cuts) - 1 or fits(system + kept):
        return ReplyContext(system + kept, cuts[low])
    return ReplyContext(system + _truncated(system, kept[-1], fits), len(turns) - 1)


def _truncated(
    system: list[dict[str, str]], last: dict[str, str], fits: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """`last` with as much of its end as fits after the system prompt, behind a note."""
    text = last["content"]

    def shortened(keep: int) -> list[dict[str, str]]:
        return [{"role": last["role"], "content": TRUNCATED_NOTE + text[len(text) - keep :]}]

    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(system + shortened(middle)):
            low = middle
        else:
            high = middle - 1
    return shortened(low)


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
        # ?m= opens the branch holding the message: it may be a version not shown now.
        url = reverse("conversation", args=[self.conversation_id])
        return f"{url}?m={self.message_id}#m-{self.message_id}"

    @property
    def day(self) -> date:
        return local_day(self.created)


@dataclass(frozen=True)
class TitleHit:
    conversation_id: int
    title: SafeString
    updated: datetime

    @property
    def url(self) -> str:
        return reverse("conversation", args=[self.conversation_id])

    @property
    def day(self) -> date:
        return local_day(self.updated)


@dataclass(frozen=True)
class SearchResults:
    query: str
    page: int
    conversations: list[TitleHit]
    messages: list[MessageHit]
    has_next: bool


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def search_clean(query: str) -> str:
    """`query` without control characters (whitespace ones become spaces).

    A NUL ends FTS5's quoted string early ("unterminated string") and psycopg refuses it.
    """
    return _CONTROL.sub(lambda m: " " if m.group().isspace() else "", query)


def search_terms(query: str) -> list[str]:
    """The words of a query: whitespace-separated, each with at least one letter or digit."""
    words = search_clean(query)[:SEARCH_MAX_CHARS].split()
    return [w for w in words if re.search(r"\w", w)][:SEARCH_MAX_TERMS]


def fts5_query(query: str) -> str:
    """A user's query as FTS5 syntax: every word a quoted string (so `"`, `*`, AND, `-`,
    `:` mean nothing special), all required, the last one also as a prefix while typed."""
    terms = search_terms(query)
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    if quoted and not search_clean(query)[:SEARCH_MAX_CHARS].endswith((" ", "\t", "\n")):
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
    query = search_clean(query)
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

    raw = postgresql_tsquery(query)
    if not raw:
        return [], []
    ts_query = SearchQuery(raw, config="simple", search_type="raw")
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


def postgresql_tsquery(query: str) -> str:
    """A user's query as tsquery syntax ("" if it has no words), for `_search_postgresql`.

    Every word required, the last also as a prefix (as typed), like the FTS5 query. Only
    word characters reach tsquery syntax, each word quoted: nothing in a query is an
    operator.
    """
    words = [w for term in search_terms(query) for w in re.findall(r"\w+", term)]
    return " & ".join(f"'{w}'" for w in words) + ":*" if words else ""
