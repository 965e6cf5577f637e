"""Managing history: renaming, deleting, automatic titles and the sidebar's recency groups."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from conversations.chat import titles
from conversations.generation.runner import runner
from conversations.history import sidebar
from conversations.models import Conversation, Message
from conversations.web.chat import render_message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send

# --- Rename -------------------------------------------------------------------------------


def _rename(client, conversation, title, *, htmx=True):
    url = reverse("rename", args=[conversation.pk])
    return client.post(url, {"title": title}, **(HTMX if htmx else {}))


@pytest.mark.django_db
def test_it_renames_a_conversation_and_tells_the_page(owner_client, owner):
    conversation = ConversationFactory(owner=owner, title="First words of the…")
    response = _rename(owner_client, conversation, "  Trip to Lisbon  ")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="conversation-header"' in html
    assert "Trip to Lisbon" in html
    event = json.loads(response["HX-Trigger"])["chatsite:title"]
    assert event == {"id": conversation.pk, "title": "Trip to Lisbon"}
    conversation.refresh_from_db()
    assert conversation.title == "Trip to Lisbon"
    assert conversation.title_set_by_user


@pytest.mark.django_db
def test_it_renames_without_javascript_and_redirects_back(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    response = _rename(owner_client, conversation, "Plain form", htmx=False)
    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "<title>Plain form · chatsite</title>" in page
    assert '<h1 id="conversation-title" class="conv-title">Plain form</h1>' in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "error"),
    [
        ("", "Give the conversation a title."),
        ("   ", "Give the conversation a title."),
        ("x" * 201, "the limit is 200 characters and it has 201"),
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_it_refuses_an_empty_or_too_long_title_with_an_inline_error(
    owner_client, owner, title, error, htmx
):
    conversation = ConversationFactory(owner=owner, title="Keep me")
    response = _rename(owner_client, conversation, title, htmx=htmx)
    assert response.status_code == 422
    html = response.content.decode()
    assert error in html
    assert 'role="alert"' in html
    assert '<details class="conv-rename" open>' in html
    if not htmx:
        assert 'id="composer"' in html  # the whole page, form open with its error
    conversation.refresh_from_db()
    assert conversation.title == "Keep me"
    assert not conversation.title_set_by_user


@pytest.mark.django_db
def test_it_accepts_a_title_of_exactly_200_characters(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    assert _rename(owner_client, conversation, "y" * 200).status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "y" * 200


@pytest.mark.django_db
def test_a_stranger_cannot_rename_my_conversation(stranger_client, owner):
    conversation = ConversationFactory(owner=owner, title="Mine")
    assert _rename(stranger_client, conversation, "Yours now").status_code == 404
    assert _rename(stranger_client, conversation, "Yours now", htmx=False).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


@pytest.mark.django_db
def test_rename_only_accepts_post(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    assert owner_client.get(reverse("rename", args=[conversation.pk])).status_code == 405


# --- Delete -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_asks_for_confirmation_on_a_page_that_works_without_javascript(owner_client, owner):
    question = MessageFactory(conversation__owner=owner, conversation__title="Tax <b>notes</b>")
    ReplyFactory(conversation=question.conversation, parent=question)
    url = reverse("delete", args=[question.conversation_id])
    response = owner_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete “Tax &lt;b&gt;notes&lt;/b&gt;”?" in html
    assert "its 2 messages" in html
    assert f'<form method="post" action="{url}">' in html
    assert Conversation.objects.filter(pk=question.conversation_id).exists()
    # The conversation page links to it, and htmx asks before posting.
    page = owner_client.get(question.conversation.get_absolute_url()).content.decode()
    assert f'href="{url}" hx-post="{url}" hx-confirm="Delete' in page


@pytest.fixture
def log_path() -> Path:
    return Path(django_settings.CHAT_LOG_FILE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
def test_deleting_removes_the_conversation_and_its_messages_and_logs_it(
    owner_client, owner, log_path, htmx
):
    keep = MessageFactory(conversation__owner=owner)
    question = MessageFactory(conversation__owner=owner, conversation__title="Old plans")
    ReplyFactory(conversation=question.conversation, parent=question)
    MessageFactory(conversation=question.conversation)
    conversation_id = question.conversation_id
    before = len(log_events(log_path))

    url = reverse("delete", args=[conversation_id])
    response = owner_client.post(url, **(HTMX if htmx else {}))

    if htmx:
        assert response["HX-Redirect"] == reverse("chat")
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse("chat")
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    assert not Message.objects.filter(conversation_id=conversation_id).exists()
    assert Message.objects.filter(pk=keep.pk).exists()
    events = [e for e in log_events(log_path)[before:] if e["event"] == "deleted"]
    assert len(events) == 1
    assert events[0]["user"] == "alice"
    assert events[0]["conversation"] == conversation_id
    assert events[0]["title"] == "Old plans"
    assert events[0]["messages"] == 3
    assert owner_client.get(reverse("conversation", args=[conversation_id])).status_code == 404


@pytest.mark.django_db
def test_a_stranger_cannot_see_or_delete_my_conversation(stranger_client, owner):
    question = MessageFactory(conversation__owner=owner)
    url = reverse("delete", args=[question.conversation_id])
    assert stranger_client.get(url).status_code == 404
    assert stranger_client.post(url).status_code == 404
    assert stranger_client.post(url, **HTMX).status_code == 404
    assert Message.objects.filter(pk=question.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_stops_a_reply_still_being_written_first(owner_client, fake_openai, log_path):
    fake_openai.script(Reply(tokens=["word "] * 200, delay=0.05))
    send(owner_client, "Write a long essay")
    reply = last_reply()
    fake_openai.wait_for_requests(1)
    live = runner.get(reply.pk)
    assert live is not None
    before = len(log_events(log_path))

    response = owner_client.post(reverse("delete", args=[reply.conversation_id]), **HTMX)

    assert response["HX-Redirect"] == "/"
    assert live.snapshot().done
    assert runner.wait_idle(5)
    assert not Message.objects.exists()
    assert not Conversation.objects.exists()
    events = log_events(log_path)[before:]
    assert [e["event"] for e in events] == ["reply", "deleted"]
    assert events[0]["status"] == "stopped"
    assert fake_openai.disconnected.wait(5)  # the request to the model was closed


# --- Automatic titles ---------------------------------------------------------------------


@pytest.fixture
def auto_titles(settings):
    settings.CHAT_AUTO_TITLE = True
    settings.CHAT_TITLE_TIMEOUT = 2


def _first_exchange(client, fake_openai, *replies: Reply) -> Conversation:
    fake_openai.script(Reply(tokens=["Paris", " is the capital."]), *replies)
    send(client, "What is the capital of France, and why?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert runner.wait_idle(10)
    conversation = reply.conversation
    conversation.refresh_from_db()
    return conversation


@pytest.mark.django_db(transaction=True)
def test_it_titles_a_conversation_after_its_first_exchange(owner_client, fake_openai, auto_titles):
    conversation = _first_exchange(
        owner_client, fake_openai, Reply(tokens=['Title: "French', " capital", '."\n', "More"])
    )
    assert conversation.title == "French capital"
    assert not conversation.title_set_by_user
    # A small, bounded request: the instruction and the question, asked plainly (a
    # transcript made small local models comment on the answer instead).
    request = fake_openai.requests[1]
    assert request["max_tokens"] == 20
    assert request["temperature"] == pytest.approx(0.2)
    assert request["messages"][0]["role"] == "system"
    assert "What is the capital of France" in request["messages"][1]["content"]
    assert request["messages"][1]["content"].startswith("Write a title of 3 to 6 words")
    assert "Paris is the capital." not in request["messages"][1]["content"]
    # The page shows it.
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "<title>French capital · chatsite</title>" in page
    assert f'data-conversation="{conversation.pk}" aria-current="page">French capital</a>' in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "title_reply",
    [
        Reply(status=500),
        Reply(status=429),
        Reply(tokens=["Too", " late"], first_delay=4),  # past CHAT_TITLE_TIMEOUT
        Reply(tokens=["  ", "\n", '""']),  # nothing usable
    ],
    ids=["server-error", "rate-limited", "timeout", "empty"],
)
def test_a_failed_title_request_leaves_the_first_words_silently(
    owner_client, fake_openai, auto_titles, title_reply
):
    conversation = _first_exchange(owner_client, fake_openai, title_reply)
    assert len(fake_openai.requests) == 2
    assert conversation.title == "What is the capital of France, and why?"
    assert not conversation.title_set_by_user
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.COMPLETE
    assert reply.error == ""
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert 'role="alert"' not in page.replace('id="composer-error" role="alert"></p>', "")


@pytest.mark.django_db(transaction=True)
def test_it_never_overwrites_a_title_the_user_set_even_while_the_title_is_asked_for(
    owner_client, fake_openai, auto_titles
):
    fake_openai.script(
        Reply(tokens=["An answer."]), Reply(tokens=["Automatic", " title"], first_delay=1.0)
    )
    send(owner_client, "A question")
    reply = last_reply()
    live = runner.get(reply.pk)
    assert live is not None and live.wait_done(10)
    fake_openai.wait_for_requests(2)  # the title request is in flight now
    assert _rename(owner_client, reply.conversation, "Mine").status_code == 200
    assert runner.wait_idle(10)
    conversation = Conversation.objects.get(pk=reply.conversation_id)
    assert conversation.title == "Mine"
    assert conversation.title_set_by_user


@pytest.mark.django_db(transaction=True)
def test_a_renamed_conversation_is_not_sent_for_a_title(
    owner_client, owner, fake_openai, auto_titles
):
    conversation = ConversationFactory(owner=owner, title="Chosen", title_set_by_user=True)
    fake_openai.script(Reply(tokens=["Fine."]))
    send(owner_client, "Hello", conversation)
    finished(last_reply())
    assert len(fake_openai.requests) == 1
    conversation.refresh_from_db()
    assert conversation.title == "Chosen"


@pytest.mark.django_db(transaction=True)
def test_later_turns_do_not_ask_for_a_title_again(owner_client, fake_openai, auto_titles):
    conversation = _first_exchange(owner_client, fake_openai, Reply(tokens=["Capitals"]))
    assert conversation.title == "Capitals"
    fake_openai.script(Reply(tokens=["Second answer."]), Reply(tokens=["Other title"]))
    send(owner_client, "And Spain?", conversation)
    finished(last_reply())
    assert runner.wait_idle(10)
    assert len(fake_openai.requests) == 3
    conversation.refresh_from_db()
    assert conversation.title == "Capitals"


@pytest.mark.django_db(transaction=True)
def test_the_finished_first_reply_asks_the_page_to_fetch_the_new_title(
    owner_client, fake_openai, auto_titles
):
    conversation = _first_exchange(owner_client, fake_openai, Reply(tokens=["Capitals"]))
    first = conversation.messages.get(role=Message.Role.ASSISTANT)
    title_url = reverse("conversation_title", args=[conversation.pk])
    # The `done` event carries the reply's final HTML: for the first reply it fetches the title.
    assert f'hx-get="{title_url}" hx-trigger="load"' in render_message(first.pk)
    response = owner_client.get(title_url, **HTMX)
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {
        "chatsite:title": {"id": conversation.pk, "title": "Capitals"}
    }
    # Later replies do not.
    fake_openai.script(Reply(tokens=["More."]))
    send(owner_client, "More?", conversation)
    second = finished(last_reply())
    assert "title-poll" not in render_message(second.pk)


@pytest.mark.django_db
def test_a_stranger_cannot_read_my_title(stranger_client, owner):
    conversation = ConversationFactory(owner=owner)
    url = reverse("conversation_title", args=[conversation.pk])
    assert stranger_client.get(url, **HTMX).status_code == 404


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Trip to Lisbon", "Trip to Lisbon"),
        ('"Trip to Lisbon."', "Trip to Lisbon"),
        ("Title: Trip to Lisbon\nHere is why…", "Trip to Lisbon"),
        ("**Title:** “Trip”", "Trip"),
        ("\n\n  spaced   out  \n", "spaced out"),
        ("x" * 80, "x" * 59 + "…"),
        ("", ""),
    ],
)
def test_a_model_answer_is_cleaned_into_a_title(answer, title):
    assert titles.clean_title(answer) == title


# --- Sidebar: recency groups and pages -----------------------------------------------------

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
