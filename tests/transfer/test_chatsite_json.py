"""Exports read back: the JSON export re-imports intact, once, and bad entries are reported."""

from __future__ import annotations

import io
import json
import math
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError

from conversations.models import Conversation, Message
from conversations.transfer import export
from conversations.transfer.chatsite import conversations_import_json
from conversations.transfer.results import ImportFormatError
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory, UserFactory

MESSAGE_FIELDS = [
    "role",
    "status",
    "content",
    "error",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "total_ms",
    "created",
    "updated",
]
CONVERSATION_FIELDS = ["title", "model", "system_prompt", "created", "updated"]

START = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def exported(queryset=None) -> dict:
    return json.loads("".join(export.export_json(queryset or Conversation.objects.all())))


def thread_of(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.all())


def parent_positions(messages: list[Message]) -> list[int | None]:
    """Each message's reply-to link, as a position in the thread (ids differ after import)."""
    positions = {m.pk: i for i, m in enumerate(messages)}
    return [positions[m.parent_id] if m.parent_id else None for m in messages]


def assert_same_conversation(copy: Conversation, original: Conversation) -> None:
    for name in CONVERSATION_FIELDS:
        assert getattr(copy, name) == getattr(original, name), name
    copied, originals = thread_of(copy), thread_of(original)
    assert len(copied) == len(originals)
    for new, old in zip(copied, originals, strict=True):
        for name in MESSAGE_FIELDS:
            assert getattr(new, name) == getattr(old, name), name
    assert parent_positions(copied) == parent_positions(originals)


@pytest.fixture
def history(owner, settings):
    """Two conversations of alice's, with retries, failures and exact old timestamps."""
    # Offered here, so the import keeps it (a model not offered becomes the default).
    settings.OPENAI_MODELS = ["gpt-test"]
    soup = ConversationFactory(
        owner=owner, title="Soup", model="gpt-test", system_prompt="Be brief, ünïcode ok."
    )
    question = MessageFactory(conversation=soup, content="How?\nQuickly, please.")
    ReplyFactory(conversation=soup, parent=question, content="Boil it.", model="gpt-test")
    ReplyFactory(
        conversation=soup,
        parent=question,
        content="Half",
        status=Message.Status.ERROR,
        error="Upstream said 503",
        prompt_tokens=None,
        completion_tokens=None,
    )
    follow_up = MessageFactory(conversation=soup, content="And then?")
    ReplyFactory(conversation=soup, parent=follow_up, content="Eat.", status=Message.Status.STOPPED)
    empty = ConversationFactory(owner=owner, title="", model="", system_prompt="")
    # Spread the timestamps out in the past, so keeping or losing them shows.
    for i, message in enumerate(Message.objects.order_by("id")):
        Message.objects.filter(pk=message.pk).update(
            created=START + timedelta(minutes=i), updated=START + timedelta(minutes=i, seconds=7)
        )
    Conversation.objects.filter(pk=soup.pk).update(
        created=START - timedelta(days=1), updated=START + timedelta(hours=1)
    )
    Conversation.objects.filter(pk=empty.pk).update(created=START, updated=START)
    soup.refresh_from_db()
    empty.refresh_from_db()
    return [soup, empty]


# --- Round trips --------------------------------------------------------------------


def test_it_round_trips_into_another_user_with_everything_preserved(history, stranger):
    data = exported()

    result = conversations_import_json(data=data, owner=stranger)

    assert (result.conversations_imported, result.messages_imported) == (2, 5)
    assert result.skipped == []
    copies = {c.title: c for c in Conversation.objects.filter(owner=stranger)}
    for original in history:
        assert_same_conversation(copies[original.title], original)
    # The originals are untouched and still alice's.
    assert Conversation.objects.filter(owner__username="alice").count() == 2
    assert Message.objects.count() == 10


def test_it_round_trips_into_the_original_owner_by_username(history, owner):
    data = exported()
    originals = {
        c.title: (
            {n: getattr(c, n) for n in CONVERSATION_FIELDS},
            [{n: getattr(m, n) for n in MESSAGE_FIELDS} for m in thread_of(c)],
            parent_positions(thread_of(c)),
        )
        for c in history
    }
    Conversation.objects.all().delete()

    result = conversations_import_json(data=data)

    assert (result.conversations_imported, result.messages_imported) == (2, 5)
    for copy in Conversation.objects.all():
        assert copy.owner == owner
        fields, messages, parents = originals[copy.title]
        assert {n: getattr(copy, n) for n in CONVERSATION_FIELDS} == fields
        assert [{n: getattr(m, n) for n in MESSAGE_FIELDS} for m in thread_of(copy)] == messages
        assert parent_positions(thread_of(copy)) == parents


def test_messages_with_equal_timestamps_keep_their_order(owner, stranger):
    conversation = ConversationFactory(owner=owner)
    for text in ["first", "second", "third"]:
        MessageFactory(conversation=conversation, content=text)
    conversation.messages.update(created=START)

    conversations_import_json(data=exported(), owner=stranger)

    copy = Conversation.objects.get(owner=stranger)
    assert [m.content for m in thread_of(copy)] == ["first", "second", "third"]


def test_it_accepts_a_dict_json_text_bytes_or_a_file(history, stranger):
    text = "".join(export.export_json(Conversation.objects.all()))
    targets = [UserFactory() for _ in range(4)]

    for data, target in zip(
        [json.loads(text), text, text.encode(), io.BytesIO(text.encode())], targets, strict=True
    ):
        assert conversations_import_json(data=data, owner=target).conversations_imported == 2


def test_replies_exported_mid_generation_come_back_interrupted(owner, stranger):
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation)
    ReplyFactory(
        conversation=conversation, parent=question, status=Message.Status.STREAMING, content="Par"
    )

    conversations_import_json(data=exported(), owner=stranger)

    reply = Message.objects.get(conversation__owner=stranger, role=Message.Role.ASSISTANT)
    assert (reply.status, reply.content) == (Message.Status.INTERRUPTED, "Par")


# --- Idempotence --------------------------------------------------------------------


def test_importing_the_same_export_twice_creates_nothing_the_second_time(history, stranger):
    data = exported()
    conversations_import_json(data=data, owner=stranger)
    before = (Conversation.objects.count(), Message.objects.count())

    again = conversations_import_json(data=data, owner=stranger)

    assert (again.conversations_imported, again.messages_imported) == (0, 0)
    assert (again.conversations_skipped, again.messages_skipped) == (2, 5)
    assert all(s.duplicate for s in again.skipped)
    assert "mallory already has it" in again.skipped[0].reason
    assert (Conversation.objects.count(), Message.objects.count()) == before


def test_importing_into_the_owner_who_still_has_them_creates_nothing(history):
    result = conversations_import_json(data=exported())

    assert result.conversations_imported == 0
    assert len(result.duplicates) == 2
    assert Conversation.objects.count() == 2


# --- Bad input ----------------------------------------------------------------------


def test_corrupt_entries_are_skipped_and_reported_while_the_rest_import(history, stranger):
    data = exported()
    good = data["conversations"][0]

    def variant(**changes):
        entry = json.loads(json.dumps(good))
        entry.update(changes)
        return entry

    broken_role = variant(title="Bad role")
    broken_role["messages"][1]["role"] = "robot"
    orphan = variant(title="Orphan")
    orphan["messages"][1]["parent_id"] = 999_999
    negative = variant(title="Negative")
    negative["messages"][2]["prompt_tokens"] = -4
    data["conversations"] = [
        "not a conversation",
        variant(title="No date", created=None),
        broken_role,
        orphan,
        negative,
        variant(title="x" * 201),
        variant(title="Nobody's", owner="ghost"),
        variant(title="Bad messages", messages={"oops": 1}),
        good,
    ]

    result = conversations_import_json(data=data)

    assert (result.conversations_imported, result.messages_imported) == (0, 0)
    assert len(result.duplicates) == 1  # `good` is alice's own, still there
    reasons = [s.reason for s in result.errors]
    assert len(reasons) == 8
    assert reasons[0] == "not an object"
    assert "created is not a date and time" in reasons[1]
    assert "message 2" in reasons[2]
    assert "robot" in reasons[2]
    assert "parent 999999 is not in this conversation" in reasons[3]
    assert "prompt_tokens" in reasons[4]
    assert "title" in reasons[5]
    assert "owner 'ghost' does not exist" in reasons[6]
    assert '"messages" is not a list' in reasons[7]
    assert [s.entry for s in result.errors] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert result.errors[2].title == "Bad role"
    assert result.errors[2].messages == 5

    # Into another user, the good entries import and none of the broken ones leave a trace;
    # an unknown exported owner no longer matters.
    again = conversations_import_json(data=data, owner=stranger)
    assert (again.conversations_imported, again.messages_imported) == (2, 10)
    assert len(again.errors) == 7
    imported = Conversation.objects.filter(owner=stranger).values_list("title", flat=True)
    assert sorted(imported) == ["Nobody's", "Soup"]
    assert Message.objects.filter(conversation__owner=stranger).count() == 10


def test_an_entry_the_database_refuses_leaves_nothing_behind(history, stranger, monkeypatch):
    data = exported()
    real = Message.objects.bulk_update
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(Message.objects, "bulk_update", fail_once)

    result = conversations_import_json(data=data, owner=stranger)

    assert [s.reason for s in result.errors] == ["the database refused it: disk on fire"]
    assert result.conversations_imported == 1
    assert list(Conversation.objects.filter(owner=stranger).values_list("title", flat=True)) == [""]
    assert not Message.objects.filter(conversation__owner=stranger).exists()


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ("{not json", "Not valid JSON"),
        ({"format": "something-else", "version": 1, "conversations": []}, "Not a chatsite"),
        ({"format": "chatsite-export", "version": 2, "conversations": []}, "version 2"),
        ({"format": "chatsite-export", "version": 1, "conversations": {}}, "must be a list"),
        ([], "Not a chatsite"),
    ],
)
def test_it_refuses_data_that_is_not_a_chatsite_export(db, data, complaint):
    with pytest.raises(ImportFormatError, match=complaint):
        conversations_import_json(data=data)


# --- Export batching ----------------------------------------------------------------


@pytest.mark.parametrize("exporter", [export.export_json, export.export_csv])
def test_exports_fetch_messages_per_batch_not_per_conversation(
    owner, exporter, django_assert_num_queries
):
    for _ in range(25):
        conversation = ConversationFactory(owner=owner)
        MessageFactory.create_batch(2, conversation=conversation)

    # Per batch: its messages, then their attachments.
    with django_assert_num_queries(1 + 2 * math.ceil(25 / 10)):
        text = "".join(exporter(Conversation.objects.all(), batch_size=10))

    assert text.count("Message text") == 50


# --- The management command ---------------------------------------------------------


@pytest.fixture
def export_file(history, tmp_path):
    path = tmp_path / "export.json"
    path.write_text("".join(export.export_json(Conversation.objects.all())), encoding="utf-8")
    return path


def run(*args: str, verbosity: int = 1) -> str:
    out = io.StringIO()
    call_command("import_conversations", *args, stdout=out, no_color=True, verbosity=verbosity)
    return out.getvalue()


def test_the_command_imports_a_file_and_reports(export_file, stranger):
    first = run(str(export_file), "--owner", "mallory")
    second = run(str(export_file), "--owner", "mallory")
    listed = run(str(export_file), "--owner", "mallory", verbosity=2)

    assert "Imported 2 conversation(s) with 5 message(s)." in first
    assert "Skipped 0 conversation(s)" in first
    assert "Imported 0 conversation(s) with 0 message(s)." in second
    assert "Skipped 2 conversation(s) with 5 message(s): 2 already present, 0 invalid." in second
    assert "already has it" not in second
    assert "-v 2" in second
    assert "entry 1 (id " in listed
    assert "'Soup': already present: mallory already has it" in listed
    assert Conversation.objects.filter(owner=stranger).count() == 2


def test_the_command_reports_bad_entries_and_fails(export_file, stranger):
    data = json.loads(export_file.read_text(encoding="utf-8"))
    data["conversations"][0]["created"] = "yesterday"
    export_file.write_text(json.dumps(data), encoding="utf-8")
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 conversation"):
        call_command(
            "import_conversations", str(export_file), owner="mallory", stdout=out, no_color=True
        )

    assert "Imported 1 conversation(s)" in out.getvalue()
    assert "invalid: created is not a date and time: 'yesterday'" in out.getvalue()


def test_the_command_refuses_unknown_owners_and_unreadable_files(export_file, tmp_path):
    with pytest.raises(CommandError, match="no user 'ghost'"):
        run(str(export_file), "--owner", "ghost")
    with pytest.raises(CommandError, match="Cannot read"):
        run(str(tmp_path / "missing.json"))
    (tmp_path / "junk.json").write_text("[]", encoding="utf-8")
    with pytest.raises(CommandError, match="Not a chatsite export"):
        run(str(tmp_path / "junk.json"))
    assert Conversation.objects.count() == 2


def test_the_command_reads_standard_input(export_file, stranger, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(export_file.read_bytes())))

    output = run("-", "--owner", "mallory")

    assert "Imported 2 conversation(s) with 5 message(s)." in output


@pytest.mark.django_db
def test_the_markdown_export_shows_dates_at_the_ends_of_the_calendar(owner, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # 9999-12-31 23:00 UTC is past year 9999 in Tokyo
    conversation = ConversationFactory(owner=owner, title="Far future")
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    Conversation.objects.filter(pk=conversation.pk).update(created=far, updated=far)
    text = "".join(export.export_markdown(Conversation.objects.filter(pk=conversation.pk)))
    assert "Started: 9999-12-31 23:00 UTC" in text
