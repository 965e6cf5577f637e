"""Per-user limits on generations: replies at once, replies asked for per minute, tokens
per day. The site's defaults are settings (0: no limit); a user's `UserLimits` row, set in
the admin, overrides them field by field.

`admit` is called inside the transaction that would start a reply, before anything is
saved. It locks the user's row, so that two requests of one user at the same instant count
one after the other and cannot both pass a limit. Over the per-minute limit nothing is
saved (`TooManyPerMinute`): that is what bounds the lines a user can write to the chat log.
Over the others the user's message is still saved, and `admit` returns the words of the
reply that is ended as an error instead of calling the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import Message, UserLimits

WINDOW = timedelta(seconds=60)


class TooManyPerMinute(Exception):
    """Too many replies asked for in the last minute: nothing is saved, try again later."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Effective limits of one user; 0: no limit."""

    concurrent_replies: int
    messages_per_minute: int
    tokens_per_day: int


@dataclass(frozen=True)
class Usage:
    """What a user is using now of each limit."""

    replies_in_flight: int
    messages_last_minute: int
    tokens_today: int


def site_limits() -> Limits:
    return Limits(
        concurrent_replies=settings.CHAT_MAX_CONCURRENT_REPLIES,
        messages_per_minute=settings.CHAT_MAX_MESSAGES_PER_MINUTE,
        tokens_per_day=settings.CHAT_MAX_TOKENS_PER_DAY,
    )


def limits_for(*, user_id: int) -> Limits:
    """The user's limits: their own where set in the admin, the site's elsewhere."""
    return effective(UserLimits.objects.filter(user_id=user_id).first())


def effective(own: UserLimits | None) -> Limits:
    """The limits in effect for a user whose own are `own` (None: none set)."""
    site = site_limits()
    if own is None:
        return site
    return Limits(
        concurrent_replies=_own_or(own.concurrent_replies, site.concurrent_replies),
        messages_per_minute=_own_or(own.messages_per_minute, site.messages_per_minute),
        tokens_per_day=_own_or(own.tokens_per_day, site.tokens_per_day),
    )


def _own_or(own: int | None, site: int) -> int:
    return site if own is None else own


def day_start(now: datetime) -> datetime:
    """Midnight of `now`'s day in TIME_ZONE: when the day's tokens started counting."""
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def next_reset(now: datetime) -> datetime:
    return timezone.localtime(day_start(now) + timedelta(days=1))


def usage_of(*, user_id: int, now: datetime | None = None) -> Usage:
    now = now or timezone.now()
    replies = Message.objects.filter(
        conversation__owner_id=user_id, role=Message.Role.ASSISTANT
    ).order_by()
    # Every send, edit or retry creates one reply, refused or not: counting replies counts
    # them all, retries included.
    tokens = replies.filter(created__gte=day_start(now)).aggregate(
        total=Coalesce(Sum("prompt_tokens"), 0) + Coalesce(Sum("completion_tokens"), 0)
    )["total"]
    return Usage(
        replies_in_flight=replies.filter(status__in=Message.IN_FLIGHT).count(),
        messages_last_minute=replies.filter(created__gt=now - WINDOW).count(),
        tokens_today=int(tokens or 0),
    )


def _retry_in(*, user_id: int, limit: int, now: datetime) -> int:
    """Seconds until one of the replies counted in the last minute leaves the window."""
    recent = list(
        Message.objects.filter(
            conversation__owner_id=user_id,
            role=Message.Role.ASSISTANT,
            created__gt=now - WINDOW,
        )
        .order_by("-created")
        .values_list("created", flat=True)[:limit]
    )
    if not recent:
        return 1
    leaves = recent[-1] + WINDOW - now
    return max(1, int(leaves.total_seconds() + 0.999))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _plural_replies(n: int) -> str:
    return f"{n:,} " + ("reply" if n == 1 else "replies")


def admit(*, user_id: int) -> str | None:
    """Check the user's limits before a reply is started; call inside a transaction.

    Raises `TooManyPerMinute` over the per-minute limit (nothing may be saved). Returns the
    error of the reply to record instead of generating one over the other limits, or None
    when the reply may be generated.
    """
    # The user's row is the lock: one user's starts are counted one after the other.
    get_user_model().objects.select_for_update().filter(pk=user_id).first()
    limits = limits_for(user_id=user_id)
    if not (limits.concurrent_replies or limits.messages_per_minute or limits.tokens_per_day):
        return None
    now = timezone.now()
    usage = usage_of(user_id=user_id, now=now)
    if limits.messages_per_minute and usage.messages_last_minute >= limits.messages_per_minute:
        wait = _retry_in(user_id=user_id, limit=limits.messages_per_minute, now=now)
        raise TooManyPerMinute(
            f"You have reached your limit of {_plural(limits.messages_per_minute, 'message')} "
            f"per minute. Try again in {_plural(wait, 'second')}; your text is kept here."
        )
    if limits.concurrent_replies and usage.replies_in_flight >= limits.concurrent_replies:
        return (
            f"You have reached your limit of {_plural_replies(limits.concurrent_replies)} "
            "at once. Your message is saved: press Retry once a reply has finished."
        )
    if limits.tokens_per_day and usage.tokens_today >= limits.tokens_per_day:
        reset = next_reset(now)
        return (
            f"You have reached your limit of {_plural(limits.tokens_per_day, 'token')} today "
            f"(resets at {reset:%H:%M} {reset.tzname()} on {reset:%Y-%m-%d}). "
            "Your message is saved: press Retry then."
        )
    return None
