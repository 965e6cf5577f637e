"""The sidebar: conversations grouped by recency, page after page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from conversations.history import sidebar
from conversations.models import Conversation
from tests.support.factories import ConversationFactory
from tests.support.helpers import HTMX

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_the_sidebar_groups_conversations_by_recency(owner, settings):
    settings.TIME_ZONE = "UTC"
    ages = {
        "just now": timedelta(minutes=5),
        "this morning": timedelta(hours=11),
        "yesterday": timedelta(days=1),
        "three days ago": timedelta(days=3),
        "last week": timedelta(days=7),
        "two weeks ago": timedelta(days=14),
        "last month": timedelta(days=30),
        "long ago": timedelta(days=400),
    }
    for title, age in ages.items():
        c = ConversationFactory(owner=owner, title=title)
        Conversation.objects.filter(pk=c.pk).update(updated=NOW - age)
    page = sidebar.conversation_list(user=owner, now=NOW)
    entries = [(heading, c.title) for heading, c in page.entries()]
    assert entries == [
        ("Today", "just now"),
        (None, "this morning"),
        ("Yesterday", "yesterday"),
        ("Previous 7 days", "three days ago"),
        (None, "last week"),
        ("Previous 30 days", "two weeks ago"),
        (None, "last month"),
        ("Older", "long ago"),
    ]


@pytest.mark.django_db
def test_the_groups_follow_the_sites_time_zone(owner, settings):
    settings.TIME_ZONE = "America/New_York"  # UTC-4 in March 2026 (daylight time)
    c = ConversationFactory(owner=owner)
    # 02:00 UTC on the 15th is 22:00 on the 14th in New York, where it is now 08:00 on the 15th.
    Conversation.objects.filter(pk=c.pk).update(updated=datetime(2026, 3, 15, 2, 0, tzinfo=UTC))
    assert sidebar.conversation_list(user=owner, now=NOW).entries()[0][0] == "Yesterday"
    settings.TIME_ZONE = "UTC"
    assert sidebar.conversation_list(user=owner, now=NOW).entries()[0][0] == "Today"


def _headings(html: str) -> list[str]:
    return re.findall(r'<h2 class="sidebar-group">([^<]+)</h2>', html)


@pytest.mark.django_db
def test_a_heading_is_not_repeated_when_the_next_page_continues_its_group(
    owner_client, owner, settings, monkeypatch
):
    settings.TIME_ZONE = "UTC"
    settings.CHAT_SIDEBAR_LIMIT = 2
    for age in (
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(hours=3),
        timedelta(days=90),
        timedelta(days=91),
    ):
        c = ConversationFactory(owner=owner)
        Conversation.objects.filter(pk=c.pk).update(updated=NOW - age)
    monkeypatch.setattr(timezone, "now", lambda: NOW)

    first = owner_client.get("/").content.decode()
    assert _headings(first) == ["Today"]
    assert first.count("data-conversation=") == 2
    url = re.search(r'class="older"><a href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = owner_client.get(url, **HTMX).content.decode()
    # The third conversation continues "Today": no second "Today"; then "Older" starts.
    assert _headings(second) == ["Older"]
    assert second.index("data-conversation=") < second.index("sidebar-group")
    url = re.search(r'class="older"><a href="([^"]+)"', second).group(1).replace("&amp;", "&")
    third = owner_client.get(url, **HTMX).content.decode()
    assert _headings(third) == []
    assert third.count("data-conversation=") == 1


@pytest.mark.django_db
def test_ten_thousand_conversations_give_one_fast_page(
    owner_client, owner, django_assert_max_num_queries
):
    Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"Chat {i}") for i in range(10_000)
    )
    with django_assert_max_num_queries(3):
        response = owner_client.get("/")
    html = response.content.decode()
    assert html.count("data-conversation=") == django_settings.CHAT_SIDEBAR_LIMIT
    assert 'class="older"' in html
    url = re.search(r'class="older"><a href="([^"]+)"', html).group(1).replace("&amp;", "&")
    with django_assert_max_num_queries(3):
        more = owner_client.get(url, **HTMX).content.decode()
    assert more.count("data-conversation=") == django_settings.CHAT_SIDEBAR_LIMIT


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "updated", "group"),
    [
        ("Asia/Tokyo", datetime(9999, 12, 31, 23, 0, tzinfo=UTC), "Today"),
        ("America/New_York", datetime(1, 1, 1, 1, 0, tzinfo=UTC), "Older"),
    ],
)
def test_a_date_at_the_ends_of_the_calendar_never_breaks_the_sidebar(
    owner, owner_client, settings, zone, updated, group
):
    settings.TIME_ZONE = zone  # local time of these dates would be past year 9999 / before 1
    c = ConversationFactory(owner=owner, title="Out of range")
    Conversation.objects.filter(pk=c.pk).update(updated=updated)
    assert sidebar.recency_group(updated, today=NOW.date()) == group
    assert sidebar.conversation_list(user=owner, now=NOW).entries()[0][0] == group
    for url in ("/", c.get_absolute_url()):
        response = owner_client.get(url)
        assert response.status_code == 200
        assert f'<h2 class="sidebar-group">{group}</h2>' in response.content.decode()
