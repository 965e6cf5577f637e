"""The sidebar: a user's conversations, most recently active first, a keyset-paged
page at a time, grouped by day (Today, Yesterday, …) in TIME_ZONE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from conversations.models import Conversation
from conversations.params import parse_id

if TYPE_CHECKING:
    from django.contrib.auth.models import User

GROUPS = ("Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older")


def local_day(value: datetime, zone: tzinfo | None = None) -> date:
    """The day `value` falls on in the site's TIME_ZONE (for an aware `value`); `zone`,
    that time zone, when the caller has it at hand (a list of many dates).

    Within a day of year 1 or 9999 (an imported file can hold such dates) local time would
    be off the calendar (OverflowError): the UTC day then, so no page ever fails on it.
    """
    try:
        return value.astimezone(zone or timezone.get_current_timezone()).date()
    except OverflowError:
        return value.astimezone(UTC).date()


def recency_group(updated: datetime, *, today: date, zone: tzinfo | None = None) -> str:
    """The sidebar heading `updated` falls under (days in the site's TIME_ZONE)."""
    days = (today - local_day(updated, zone)).days
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
        zone = timezone.get_current_timezone()
        for conversation in self.conversations:
            group = recency_group(conversation.updated, today=today, zone=zone)
            out.append((group if group != last else None, conversation))
            last = group
        return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_MICROSECOND = timedelta(microseconds=1)


def _cursor(conversation: Conversation) -> str:
    # Whole microseconds, not float seconds: a rounded timestamp would skip or repeat rows.
    return f"{(conversation.updated - _EPOCH) // _MICROSECOND}-{conversation.pk}"


def _parse_cursor(cursor: str) -> tuple[datetime, int] | None:
    raw_stamp, _, raw_pk = cursor.partition("-")
    stamp, pk = parse_id(raw_stamp), parse_id(raw_pk)
    if stamp is None or pk is None:
        return None
    try:
        return _EPOCH + stamp * _MICROSECOND, pk
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


@dataclass(frozen=True)
class SidebarMove:
    """What a message sent in `conversation` changes in the sidebar a page shows.

    The page shows the first page of the sidebar as it was before the send (plus what
    earlier sends of the same page moved); `conversation` now goes to its top. Only what
    changed is sent: the entry, the old one to remove, and the entries whose heading
    changed with the move (the first of a group gains it, the one that no longer is
    loses it).
    """

    conversation: Conversation
    heading: str
    was_shown: bool  # its entry was in the sidebar before (elsewhere than at the top)
    was_first: bool  # it already was the top entry
    empty_before: bool  # no other entry: the whole (one-entry) list is sent
    changed: list[tuple[str | None, Conversation]]  # other entries, with their new heading

    def page(self) -> ConversationPage:
        """The sidebar of one entry (for a list that had no other)."""
        return ConversationPage([self.conversation], None)


def conversation_moved(
    *, user: User, conversation: Conversation, was: datetime | None, now: datetime | None = None
) -> SidebarMove:
    """How the sidebar changes now that `conversation` (last active at `was`, None if new)
    has been active: one query, the other entries of the sidebar's first page."""
    today = timezone.localdate(now or timezone.now())
    limit = settings.CHAT_SIDEBAR_LIMIT
    # Tuples, not rows: a send reads the whole first page, and builds only what changed.
    # A new conversation only pushes the others down: of them, only the top entry's
    # heading can change. One that moved needs the page around its old place.
    others = list(
        Conversation.objects.filter(owner=user)
        .exclude(pk=conversation.pk)
        .order_by("-updated", "-id")
        .values_list("id", "updated", "title")[: limit if was is not None else 1]
    )
    titles = {pk: title for pk, _, title in others}
    # The order before: the others with the conversation at its old place, the first page.
    before: list[tuple[int, datetime]] = [(pk, updated) for pk, updated, _ in others]
    if was is not None:
        before.append((conversation.pk, was))
    before.sort(key=lambda entry: (entry[1], entry[0]), reverse=True)
    before = before[:limit]
    was_shown = any(pk == conversation.pk for pk, _ in before)
    old_headings = _headings(before, today=today)
    # After: the conversation on top, the rest as they were (the page keeps them all).
    rest = [(pk, updated) for pk, updated in before if pk != conversation.pk]
    new_headings = _headings([(conversation.pk, conversation.updated), *rest], today=today)
    changed = [
        (new_headings[pk], Conversation(pk=pk, owner=user, title=titles[pk], updated=updated))
        for pk, updated in rest
        if new_headings[pk] != old_headings[pk]
    ]
    return SidebarMove(
        conversation=conversation,
        heading=recency_group(conversation.updated, today=today),
        was_shown=was_shown and before[0][0] != conversation.pk,
        was_first=was_shown and before[0][0] == conversation.pk,
        empty_before=not rest,
        changed=changed,
    )


def _headings(entries: list[tuple[int, datetime]], *, today: date) -> dict[int, str | None]:
    """Each entry's heading in a list in this order (None: it continues the group above)."""
    out: dict[int, str | None] = {}
    last = None
    # Looked up once: the current time zone is a context-local read, slow per entry.
    zone = timezone.get_current_timezone()
    for pk, updated in entries:
        group = recency_group(updated, today=today, zone=zone)
        out[pk] = group if group != last else None
        last = group
    return out
