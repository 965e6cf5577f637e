"""Each user's limits on generations, on Django's user page: their own (an inline) and
the ones in effect with what is used of them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from conversations.chat import limits
from conversations.models import UserLimits


class UserLimitsInline(admin.StackedInline[UserLimits, Any]):
    """The user's own limits; blank fields are the site's defaults."""

    model = UserLimits
    can_delete = True
    max_num = 1
    verbose_name = "limits on generations (blank: the site's default, 0: no limit)"
    verbose_name_plural = verbose_name
    fields = ["concurrent_replies", "messages_per_minute", "tokens_per_day"]


def _limit(value: int) -> str:
    return f"{value:,}" if value else "no limit"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserWithLimitsAdmin(UserAdmin):  # type: ignore[type-arg]
    """Django's user admin, with the user's limits on generations: their own, editable
    (an inline), and the ones in effect with what is used of them (read-only)."""

    inlines = [UserLimitsInline]
    readonly_fields = ["limits_in_effect"]
    list_display = ["username", "email", "is_staff", "is_active", "limits_summary"]
    list_select_related = ["generation_limits"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append(("Limits on generations", {"fields": ["limits_in_effect"]}))
        return fieldsets

    @admin.display(description="limits in effect")
    def limits_in_effect(self, user: Any) -> SafeString:
        effective = limits.limits_for(user_id=user.pk)
        usage = limits.usage_of(user_id=user.pk)
        rows = [
            ("Replies at once", effective.concurrent_replies, usage.replies_in_flight),
            ("Messages per minute", effective.messages_per_minute, usage.messages_last_minute),
            ("Tokens per day", effective.tokens_per_day, usage.tokens_today),
        ]
        body = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, _limit(limit), f"{used:,}") for name, limit, used in rows),
        )
        return format_html(
            "<table><thead><tr><th></th><th>limit</th><th>used now</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="limits (at once / per minute / per day)")
    def limits_summary(self, user: Any) -> str:
        own = getattr(user, "generation_limits", None)  # selected with the user: no query
        effective = limits.effective(own)
        return " / ".join(
            _limit(value)
            for value in (
                effective.concurrent_replies,
                effective.messages_per_minute,
                effective.tokens_per_day,
            )
        )
