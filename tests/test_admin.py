"""The admin: what staff see of conversations and messages, and the export actions."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Message, UserLimits
from conversations.transfer import export as transfer_export
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory, UserFactory

CHANGELIST = "admin:conversations_conversation_changelist"
MESSAGES = "admin:conversations_message_changelist"
FILENAME = re.compile(r'^attachment; filename="chatsite-conversations-\d{8}-\d{6}\.(json|csv|md)"$')

# Generous but fixed: what matters is that the number does not grow with the data.
MAX_PAGE_QUERIES = 12


def make_conversation(owner, *, pairs: int = 2, **kwargs) -> Conversation:
    conversation = ConversationFactory(owner=owner, **kwargs)
    for _ in range(pairs):
        question = MessageFactory(conversation=conversation)
        ReplyFactory(conversation=conversation, parent=question)
    return conversation


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def export(client: Client, fmt: str, conversations) -> StreamingHttpResponse:
    return client.post(
        reverse(CHANGELIST),
        {"action": f"export_{fmt}", "_selected_action": [c.pk for c in conversations]},
    )


def body(response: StreamingHttpResponse) -> str:
    return b"".join(response.streaming_content).decode()


def results(response) -> list:
    return list(response.context["cl"].result_list)


@pytest.fixture
def thread(owner):
    """One conversation of alice's holding every kind of message the app makes."""
    conversation = ConversationFactory(
        owner=owner, title="Soup recipes", model="gpt-test", system_prompt="Be brief."
    )
    question = MessageFactory(conversation=conversation, content="How do I make soup?\nQuickly.")
    answer = ReplyFactory(
        conversation=conversation,
        parent=question,
        content='Boil water, "add" things,\nthen wait.',
        model="gpt-test",
    )
    retry = ReplyFactory(
        conversation=conversation,
        parent=question,
        content="Half an answer",
        status=Message.Status.ERROR,
        error="Upstream said 503",
        model="gpt-test",
        prompt_tokens=None,
        completion_tokens=None,
        ttft_ms=None,
        total_ms=None,
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated=at(2024, 3, 5, 14, 30))
    conversation.refresh_from_db()
    return conversation, [question, answer, retry]


# --- Conversations ------------------------------------------------------------------


def test_it_lists_owner_title_model_message_count_and_last_activity(staff_client, thread):
    make_conversation(UserFactory(username="bob"), pairs=0, title="Empty one")

    response = staff_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    html = response.content.decode()
    row = {c.title: c for c in results(response)}
    assert row["Soup recipes"].message_count == 3
    assert row["Empty one"].message_count == 0
    assert '<td class="field-message_count">3</td>' in html
    assert '<td class="field-owner_name">alice</td>' in html
    assert '<td class="field-model">gpt-test</td>' in html
    assert "March 5, 2024, 2:30 p.m." in html


def test_it_lists_conversations_in_constant_queries_as_data_grows(
    staff_client, owner, django_assert_max_num_queries
):
    def load() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(reverse(CHANGELIST)).status_code == 200
        return len(queries)

    for _ in range(3):
        make_conversation(owner, pairs=2)
    few = load()
    for i in range(27):
        make_conversation(UserFactory(), pairs=3, model=f"model-{i % 4}")
    many = load()

    assert few == many
    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        staff_client.get(reverse(CHANGELIST))


def test_search_finds_by_title_and_by_message_text_without_duplicates(staff_client, owner):
    by_title = make_conversation(owner, title="Quokka facts")
    by_text = make_conversation(owner, pairs=0, title="Animals")
    for _ in range(3):
        MessageFactory(conversation=by_text, content="Tell me about the QUOKKA please")
    make_conversation(owner, title="Unrelated")

    response = staff_client.get(reverse(CHANGELIST), {"q": "quokka"})

    found = [c.pk for c in results(response)]
    assert sorted(found) == sorted([by_title.pk, by_text.pk])
    assert response.context["cl"].result_count == 2
    assert {c.pk: c.message_count for c in results(response)}[by_text.pk] == 3


def test_search_count_query_needs_no_grouping(staff_client, owner):
    conversation = make_conversation(owner, pairs=3)
    MessageFactory(conversation=conversation, content="needle")

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(reverse(CHANGELIST), {"q": "needle"})

    assert response.context["cl"].result_count == 1
    counts = [q["sql"] for q in queries if q["sql"].startswith("SELECT COUNT(*)")]
    assert counts
    for sql in counts:
        assert "GROUP BY" not in sql
        assert "conversations_message" not in sql or "EXISTS" in sql


def test_it_filters_by_owner_and_by_model(staff_client, owner, stranger):
    mine = make_conversation(owner, model="llama")
    theirs = make_conversation(stranger, model="gpt")

    by_owner = staff_client.get(reverse(CHANGELIST), {"owner__id__exact": owner.pk})
    by_model = staff_client.get(reverse(CHANGELIST), {"model": "gpt"})

    assert [c.pk for c in results(by_owner)] == [mine.pk]
    assert [c.pk for c in results(by_model)] == [theirs.pk]


def test_change_page_shows_the_messages_in_order_and_read_only(staff_client, thread):
    conversation, messages = thread
    long_text = "A long reply.\n" + "word " * 200
    ReplyFactory(conversation=conversation, parent=messages[0], content=long_text)

    response = staff_client.get(
        reverse("admin:conversations_conversation_change", args=[conversation.pk])
    )

    html = response.content.decode()
    assert response.status_code == 200
    positions = [html.index(m.content.split("\n")[0].replace('"', "&quot;")) for m in messages]
    assert positions == sorted(positions)
    assert "Upstream said 503" in html
    assert "<details>" in html
    assert long_text.replace("\n", "") in html.replace("\n", "")
    # Nothing to edit, add or delete in the inline.
    assert 'name="messages-0-content"' not in html
    assert "messages-0-DELETE" not in html
    assert "messages-__prefix__" not in html
    assert 'name="messages-MAX_NUM_FORMS" value="0"' in html
    assert reverse("admin:conversations_message_change", args=[messages[0].pk]) in html
    assert "View on site" not in html  # the chat page would be a 404 for staff


def test_change_page_queries_do_not_grow_with_messages(staff_client, owner):
    small = make_conversation(owner, pairs=1)
    big = make_conversation(owner, pairs=20)

    def load(conversation) -> int:
        url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        return len(queries)

    assert load(small) == load(big) <= MAX_PAGE_QUERIES


# --- Messages -----------------------------------------------------------------------


def test_message_admin_lists_messages_with_their_conversation_and_owner(
    staff_client, thread, django_assert_max_num_queries
):
    for _ in range(10):
        make_conversation(UserFactory(), pairs=2)

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = staff_client.get(reverse(MESSAGES))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Soup recipes" in html
    assert '<td class="field-owner_name">alice</td>' in html
    assert "How do I make soup? Quickly." in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "boil water"}, [1]),
        ({"q": "soup recipes"}, [0, 1, 2]),
        ({"q": "alice"}, [0, 1, 2]),
        ({"q": "soup recipes", "role__exact": "user"}, [0]),
        ({"status__exact": "error"}, [2]),
        ({"model": "gpt-test"}, [1, 2]),
    ],
)
def test_message_admin_searches_and_filters(staff_client, thread, stranger, params, expected):
    _, messages = thread
    make_conversation(stranger, pairs=2, model="other")

    response = staff_client.get(reverse(MESSAGES), params)

    assert sorted(m.pk for m in results(response)) == [messages[i].pk for i in expected]


def test_message_admin_is_read_only(staff_client, thread):
    _, messages = thread
    url = reverse("admin:conversations_message_change", args=[messages[1].pk])

    page = staff_client.get(url)
    post = staff_client.post(url, {"content": "rewritten"})

    assert page.status_code == 200
    assert "Boil water" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert post.status_code == 403
    assert staff_client.get(reverse("admin:conversations_message_add")).status_code == 403
    messages[1].refresh_from_db()
    assert messages[1].content.startswith("Boil water")


# --- Who may ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["client", "owner_client"])
def test_non_staff_are_sent_to_the_admin_login_and_cannot_export(request, who, thread):
    client = request.getfixturevalue(who)
    conversation, _ = thread
    login = reverse("admin:login")

    for url in [
        reverse(CHANGELIST),
        reverse(MESSAGES),
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(login), url

    for fmt in ["json", "csv", "markdown"]:
        response = export(client, fmt, [conversation])
        assert not response.streaming
        assert response.status_code == 302
        assert response["Location"].startswith(login)


def test_staff_without_permission_on_conversations_cannot_export(thread):
    conversation, _ = thread
    clerk = UserFactory(username="clerk", is_staff=True)
    client = Client()
    client.force_login(clerk)

    assert client.get(reverse(CHANGELIST)).status_code == 403
    response = export(client, "json", [conversation])
    assert response.status_code == 403
    assert not response.streaming


# --- Exports ------------------------------------------------------------------------


def test_json_export_has_every_field_and_streams(staff_client, thread, stranger):
    conversation, messages = thread
    other = make_conversation(stranger, pairs=1)

    response = export(staff_client, "json", [conversation, other])

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"]).group(1) == "json"
    data = json.loads(body(response))
    assert data["format"] == "chatsite-export"
    assert data["version"] == 1
    assert datetime.fromisoformat(data["exported_at"])
    exported = {c["id"]: c for c in data["conversations"]}
    assert set(exported) == {conversation.pk, other.pk}
    soup = exported[conversation.pk]
    assert soup == {
        "id": conversation.pk,
        "owner": "alice",
        "title": "Soup recipes",
        "model": "gpt-test",
        "system_prompt": "Be brief.",
        "title_set_by_user": False,
        "temperature": None,
        "max_tokens": None,
        "external_id": "",
        "current": None,
        "created": conversation.created.isoformat(),
        "updated": "2024-03-05T14:30:00+00:00",
        "messages": soup["messages"],
    }
    assert [m["id"] for m in soup["messages"]] == [m.pk for m in messages]
    question, answer, retry = messages
    assert soup["messages"][2] == {
        "id": retry.pk,
        "parent_id": question.pk,
        "role": "assistant",
        "status": "error",
        "content": "Half an answer",
        "error": "Upstream said 503",
        "model": "gpt-test",
        "system_prompt": "",
        "temperature": None,
        "max_tokens": None,
        "omitted": 0,
        "external_id": "",
        "prompt_tokens": None,
        "completion_tokens": None,
        "ttft_ms": None,
        "total_ms": None,
        "reasoning": "",
        "reasoning_started": None,
        "reasoning_ended": None,
        "reasoning_tokens": None,
        "sources": [],
        "created": retry.created.isoformat(),
        "updated": retry.updated.isoformat(),
    }
    assert soup["messages"][1]["prompt_tokens"] == 12
    assert soup["messages"][1]["total_ms"] == 120
    assert soup["messages"][1]["content"] == answer.content


def test_csv_export_has_one_row_per_message_with_multiline_text_intact(staff_client, thread):
    conversation, messages = thread
    other = make_conversation(UserFactory(username="bob"), pairs=2)

    response = export(staff_client, "csv", [conversation, other])

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"]).group(1) == "csv"
    rows = list(csv.DictReader(io.StringIO(body(response), newline="")))
    assert len(rows) == 3 + 4
    assert list(rows[0]) == transfer_export.CSV_COLUMNS
    soup = [r for r in rows if r["conversation_id"] == str(conversation.pk)]
    assert [r["message_id"] for r in soup] == [str(m.pk) for m in messages]
    question, answer, retry = soup
    assert question["content"] == "How do I make soup?\nQuickly."
    assert answer["content"] == 'Boil water, "add" things,\nthen wait.'
    assert answer["parent_id"] == str(messages[0].pk)
    assert question["parent_id"] == ""
    assert answer["owner"] == "alice"
    assert answer["conversation_title"] == "Soup recipes"
    assert (answer["prompt_tokens"], answer["completion_tokens"]) == ("12", "5")
    assert (answer["ttft_ms"], answer["total_ms"]) == ("40", "120")
    assert retry["status"] == "error"
    assert retry["error"] == "Upstream said 503"
    assert datetime.fromisoformat(retry["created"]) == messages[2].created


def test_markdown_export_is_a_readable_transcript(staff_client, thread):
    conversation, _ = thread
    other = make_conversation(UserFactory(username="bob"), pairs=1, title="Second chat")

    response = export(staff_client, "markdown", [conversation, other])

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"]).group(1) == "md"
    text = body(response)
    assert "# Soup recipes\n" in text
    assert "# Second chat\n" in text
    assert "Owner: alice" in text
    assert "Last activity: 2024-03-05 14:30 UTC" in text
    assert "**System prompt:** Be brief." in text
    assert "## You\n\nHow do I make soup?\nQuickly.\n" in text
    assert "## Assistant\n\n`gpt-test` · 12 prompt + 5 completion tokens" in text
    assert 'Boil water, "add" things,\nthen wait.' in text
    # The shown branch ends in the retry; the first answer is listed as the other version.
    assert "## Assistant (error; version 2 of 2)" in text
    assert "**Error:** Upstream said 503" in text
    assert "### Reply 1 of 2 to “How do I make soup? Quickly.”\n\n#### Assistant\n" in text
    soup = text.index("# Soup recipes")
    assert (
        soup
        < text.index("## You", soup)
        < text.index("## Assistant (error", soup)
        < text.index("## Other versions", soup)
        < text.index("Boil water", soup)
    )


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_export_queries_grow_per_batch_not_per_conversation(
    staff_client, owner, monkeypatch, fmt, django_assert_max_num_queries
):
    monkeypatch.setattr(transfer_export, "BATCH_SIZE", 10)
    conversations = [make_conversation(owner, pairs=2) for _ in range(45)]

    with django_assert_max_num_queries(MAX_PAGE_QUERIES):
        response = export(staff_client, fmt, conversations)
    with CaptureQueriesContext(connection) as queries:
        text = body(response)

    # One query walks the conversations, then per batch of 10 one fetches their messages
    # and one their attachments.
    assert len(queries) == 1 + 2 * math.ceil(45 / 10)
    assert all(c.title in text for c in conversations)


def test_export_streams_through_an_async_iterator_under_asgi(staff, thread):
    conversation, messages = thread
    client = AsyncClient()
    client.force_login(staff)

    response = async_to_sync(client.post)(
        reverse(CHANGELIST),
        {"action": "export_json", "_selected_action": [conversation.pk]},
    )

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    assert isinstance(response, StreamingHttpResponse)
    assert response.is_async
    data = json.loads(async_to_sync(read)())
    assert [m["id"] for m in data["conversations"][0]["messages"]] == [m.pk for m in messages]


def test_it_filters_conversations_by_last_activity(staff_client, owner):
    recent = make_conversation(owner, pairs=0, title="Recent")
    first_of_march = make_conversation(owner, pairs=0, title="First of March")
    mid_march = make_conversation(owner, pairs=0, title="Mid March")
    april = make_conversation(owner, pairs=0, title="April")
    for conversation, when in [
        (first_of_march, at(2024, 3, 1)),
        (mid_march, at(2024, 3, 15, 12)),
        (april, at(2024, 4, 1)),
    ]:
        Conversation.objects.filter(pk=conversation.pk).update(updated=when)

    # The range's start is in it and its end is not.
    in_march = staff_client.get(
        reverse(CHANGELIST),
        {"updated__gte": "2024-03-01 00:00:00+00:00", "updated__lt": "2024-04-01 00:00:00+00:00"},
    )
    assert in_march.status_code == 200
    assert [c.pk for c in results(in_march)] == [mid_march.pk, first_of_march.pk]

    # The filter's own "Past 7 days" link, as staff click it.
    page = staff_client.get(reverse(CHANGELIST))
    changelist = page.context["cl"]
    spec = next(s for s in changelist.filter_specs if s.field_path == "updated")
    link = next(c for c in spec.choices(changelist) if c["display"] == "Past 7 days")
    past_week = staff_client.get(reverse(CHANGELIST) + link["query_string"])
    assert "updated__gte" in link["query_string"]
    assert [c.pk for c in results(past_week)] == [recent.pk]


# --- Each user's limits on generations ------------------------------------------------


def _user_change_data(user, **limits) -> dict:
    """The user's change form as the admin posts it, with the limits inline."""
    joined = timezone.localtime(user.date_joined)
    data = {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "generation_limits-TOTAL_FORMS": "1",
        "generation_limits-INITIAL_FORMS": "0",
        "generation_limits-MIN_NUM_FORMS": "0",
        "generation_limits-MAX_NUM_FORMS": "1",
    }
    for name, value in limits.items():
        data[f"generation_limits-0-{name}"] = value
    return data


def test_the_user_page_shows_the_limits_in_effect_and_what_is_used(staff_client, owner, settings):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 2
    settings.CHAT_MAX_MESSAGES_PER_MINUTE = 20
    settings.CHAT_MAX_TOKENS_PER_DAY = 0
    make_conversation(owner, pairs=1)  # one reply of 12 + 5 tokens, just now
    page = staff_client.get(reverse("admin:auth_user_change", args=[owner.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Limits on generations" in html
    assert "<tr><th>Replies at once</th><td>2</td><td>0</td></tr>" in html
    assert "<tr><th>Messages per minute</th><td>20</td><td>1</td></tr>" in html
    assert "<tr><th>Tokens per day</th><td>no limit</td><td>17</td></tr>" in html
    assert 'name="generation_limits-0-concurrent_replies"' in html

    listing = staff_client.get(reverse("admin:auth_user_changelist"))
    assert "2 / 20 / no limit" in listing.content.decode()


def test_limits_set_in_the_admin_are_the_users_own_and_shown(staff_client, owner, settings):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 2
    settings.CHAT_MAX_MESSAGES_PER_MINUTE = 20
    settings.CHAT_MAX_TOKENS_PER_DAY = 1000
    url = reverse("admin:auth_user_change", args=[owner.pk])
    data = _user_change_data(
        owner, concurrent_replies="1", messages_per_minute="", tokens_per_day="0"
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    own = UserLimits.objects.get(user=owner)
    assert (own.concurrent_replies, own.messages_per_minute, own.tokens_per_day) == (1, None, 0)
    html = staff_client.get(url).content.decode()
    assert "<tr><th>Replies at once</th><td>1</td><td>0</td></tr>" in html
    assert "<tr><th>Messages per minute</th><td>20</td>" in html  # blank: the site's
    assert "<tr><th>Tokens per day</th><td>no limit</td>" in html  # 0: none
    listing = staff_client.get(reverse("admin:auth_user_changelist"))
    assert "1 / 20 / no limit" in listing.content.decode()


# --- Export actions: a bad selection is refused before anything streams (issue 11) ---


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
@pytest.mark.parametrize(
    "bad",
    ["abc", "1\x00", "9" * 20, "-1", "", " 1"],
    ids=["letters", "nul", "twenty-digits", "negative", "empty", "space"],
)
def test_an_export_of_a_selection_that_is_not_ids_is_refused_with_the_admins_message(
    staff_client, thread, fmt, bad
):
    conversation, _ = thread
    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": f"export_{fmt}", "_selected_action": [str(conversation.pk), bad]},
    )

    assert not isinstance(response, StreamingHttpResponse)
    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST)
    page = staff_client.get(response["Location"])
    assert "The selection is not a list of conversation ids; nothing was done." in (
        page.content.decode()
    )


@pytest.mark.django_db
def test_an_export_of_good_ids_still_streams_after_the_check(staff_client, thread):
    conversation, _ = thread
    response = export(staff_client, "json", [conversation])
    assert isinstance(response, StreamingHttpResponse)
    assert json.loads(body(response))["conversations"][0]["title"] == "Soup recipes"


@pytest.mark.django_db
def test_an_export_of_an_eighteen_digit_id_that_does_not_exist_is_an_empty_download(
    staff_client, thread
):
    response = staff_client.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": ["9" * 18]}
    )
    # An id that fits the database but names nothing: an export of nothing, the header row.
    assert isinstance(response, StreamingHttpResponse)
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(body(response))))
    assert len(rows) == 1


# --- Import jobs: staff cancel any user's running import -------------------------------


@pytest.mark.django_db
def test_staff_cancel_a_users_running_import_from_the_admin(staff_client, owner, stranger):
    from conversations.models import ImportJob

    running = ImportJob.objects.create(
        owner=owner, filename="big.zip", status=ImportJob.Status.RUNNING
    )
    done = ImportJob.objects.create(owner=stranger, filename="old.zip", status="done")

    response = staff_client.post(
        reverse("admin:conversations_importjob_changelist"),
        {"action": "cancel", "_selected_action": [running.pk, done.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Cancelled 1 import. 1 had already ended." in response.content.decode()
    running.refresh_from_db()
    done.refresh_from_db()
    assert running.status == ImportJob.Status.CANCELLED
    assert done.status == ImportJob.Status.DONE


@pytest.mark.django_db
def test_the_import_job_list_shows_every_users_jobs_to_staff_only(
    staff_client, owner_client, owner
):
    from conversations.models import ImportJob

    ImportJob.objects.create(owner=owner, filename="mine.zip", status=ImportJob.Status.RUNNING)
    url = reverse("admin:conversations_importjob_changelist")
    assert "mine.zip" in staff_client.get(url).content.decode()
    assert owner_client.get(url).status_code == 302  # to the admin's login
