"""Full-text search over a user's own titles and messages (SQLite FTS5, PostgreSQL GIN).

Every word is required and the last also matches as a prefix; user input is always
quoted, so no operator syntax leaks. Snippets are escaped, matches wrapped in <mark>.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from conversations.history.sidebar import local_day
from conversations.models import Conversation, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User

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
