"""`manage.py import_conversations` runs the upload page's pipeline: every format, streamed."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc

import pytest
from django.core.management import CommandError, call_command

from conversations.models import Conversation, Message
from conversations.transfer import export
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatgpt_export import ChatGPTConversation, dumps, simple, zipped
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

pytestmark = pytest.mark.django_db


def run(*args: str, verbosity: int = 1, **options) -> str:
    out = io.StringIO()
    call_command(
        "import_conversations", *args, stdout=out, no_color=True, verbosity=verbosity, **options
    )
    return out.getvalue()


def write(tmp_path, data: bytes, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def titles(user) -> set[str]:
    return set(Conversation.objects.filter(owner=user).values_list("title", flat=True))


@pytest.fixture
def chatsite_file(owner, tmp_path):
    """A chatsite JSON export of two of alice's conversations, one with a reply."""
    soup = ConversationFactory(owner=owner, title="Soup")
    question = MessageFactory(conversation=soup, content="How?")
    ReplyFactory(conversation=soup, parent=question, content="Boil it.")
    tea = ConversationFactory(owner=owner, title="Tea")
    MessageFactory(conversation=tea, content="Green or black?")
    text = "".join(export.export_json(Conversation.objects.all()))
    return write(tmp_path, text.encode(), "export.json")


@pytest.fixture
def chatgpt_zip(tmp_path):
    data = zipped({"conversations.json": dumps([simple("Zipped A"), simple("Zipped B")])})
    return write(tmp_path, data, "chatgpt-export.zip")


# --- ChatGPT exports ---------------------------------------------------------------------


def test_a_chatgpt_zip_export_imports_with_an_owner_and_only_once(chatgpt_zip, stranger):
    first = run(chatgpt_zip, "--owner", "mallory")
    second = run(chatgpt_zip, "--owner", "mallory")
    listed = run(chatgpt_zip, "--owner", "mallory", verbosity=2)

    assert "Imported 2 conversation(s) with 8 message(s)." in first
    assert "Skipped 0 conversation(s) with 0 message(s)" in first
    assert "Imported 0 conversation(s) with 0 message(s)." in second
    assert "2 already present, 0 invalid." in second
    assert "-v 2" in second
    assert "'Zipped A': already present: already imported" in listed
    assert titles(stranger) == {"Zipped A", "Zipped B"}
    assert Message.objects.filter(conversation__owner=stranger).count() == 8


def test_a_sharded_chatgpt_export_imports_every_shard(tmp_path, stranger):
    data = zipped(
        {
            "conversations-000.json": dumps([simple("Shard 0 a"), simple("Shard 0 b")]),
            "conversations-001.json": dumps([simple("Shard 1")]),
        }
    )

    output = run(write(tmp_path, data, "export.zip"), "--owner", "mallory")

    assert "Imported 3 conversation(s) with 12 message(s)." in output
    assert titles(stranger) == {"Shard 0 a", "Shard 0 b", "Shard 1"}


@pytest.mark.parametrize("name", ["conversations.json", "conversations-001.json"])
def test_a_plain_conversations_json_or_one_shard_imports(tmp_path, stranger, name):
    path = write(tmp_path, dumps([simple("Plain")]), name)

    output = run(path, "--owner", "mallory")

    assert "Imported 1 conversation(s) with 4 message(s)." in output
    assert titles(stranger) == {"Plain"}


@pytest.mark.parametrize(
    "data",
    [
        zipped({"conversations.json": dumps([simple("No owner")])}),
        dumps([simple("No owner")]),
        json.dumps(simple("No owner")).encode(),  # one conversation on its own
    ],
    ids=["zip", "conversations.json", "one conversation"],
)
def test_a_chatgpt_export_without_an_owner_is_refused(tmp_path, owner, data):
    with pytest.raises(CommandError, match=r"ChatGPT.*--owner USERNAME"):
        run(write(tmp_path, data, "export"))
    assert not Conversation.objects.exists()


def test_a_bad_chatgpt_conversation_is_listed_in_red_and_fails_the_command(tmp_path, stranger):
    broken = ChatGPTConversation("Broken").build()
    broken["mapping"] = "not a mapping"
    path = write(tmp_path, dumps([simple("Fine"), broken]), "conversations.json")
    out = io.StringIO()

    with pytest.raises(CommandError, match="1 conversation"):
        call_command("import_conversations", path, owner="mallory", stdout=out, force_color=True)

    lines = out.getvalue().splitlines()
    assert "Imported 1 conversation(s) with 4 message(s)." in lines[0]
    assert "\x1b[32" in lines[0]  # the first line is a success
    (bad,) = [line for line in lines if "'Broken'" in line]
    assert 'invalid: no "mapping" of messages' in bad
    assert "\x1b[31" in bad  # red
    assert titles(stranger) == {"Fine"}


# --- chatsite JSON exports ---------------------------------------------------------------


def test_a_chatsite_export_streams_from_a_file_to_another_owner(chatsite_file, stranger):
    first = run(chatsite_file, "--owner", "mallory")
    second = run(chatsite_file, "--owner", "mallory")

    assert "Imported 2 conversation(s) with 3 message(s)." in first
    assert "Skipped 2 conversation(s) with 3 message(s): 2 already present" in second
    assert titles(stranger) == {"Soup", "Tea"}


def test_without_an_owner_a_chatsite_export_keeps_the_exported_owners(chatsite_file, owner):
    Conversation.objects.all().delete()

    output = run(chatsite_file)
    again = run(chatsite_file)

    assert "Imported 2 conversation(s) with 3 message(s)." in output
    assert "Imported 0 conversation(s)" in again
    assert titles(owner) == {"Soup", "Tea"}
    assert Conversation.objects.count() == 2


def test_a_chatsite_export_reads_from_standard_input(chatsite_file, stranger, monkeypatch):
    with open(chatsite_file, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        output = run("-", "--owner", "mallory")

    assert "Imported 2 conversation(s) with 3 message(s)." in output
    assert titles(stranger) == {"Soup", "Tea"}


def test_a_chatgpt_zip_reads_from_standard_input(chatgpt_zip, stranger, monkeypatch):
    with open(chatgpt_zip, encoding="utf-8") as stdin:  # text mode, as sys.stdin is
        monkeypatch.setattr(sys, "stdin", stdin)
        output = run("-", "--owner", "mallory")

    assert "Imported 2 conversation(s) with 8 message(s)." in output


def test_a_cut_off_chatsite_export_keeps_the_conversations_read_before_the_break(
    chatsite_file, stranger, tmp_path
):
    with open(chatsite_file, "rb") as f:
        data = f.read()
    cut = data[: data.rindex(b'"messages"')]  # in the middle of the last entry
    path = write(tmp_path, cut, "cut.json")

    with pytest.raises(CommandError, match="Not valid JSON"):
        run(path, "--owner", "mallory")

    # Streamed: the first entry was imported before the break was reached.
    assert Conversation.objects.filter(owner=stranger).count() == 1


def test_the_library_function_streams_a_binary_file_through_the_same_reader(
    chatsite_file, stranger
):
    with open(chatsite_file, "rb") as f:
        result = conversations_import_json(data=f, owner=stranger)

    assert (result.conversations_imported, result.messages_imported) == (2, 3)


# --- Files that are not exports ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello, I am a text file", "not an export chatsite can read"),
        (b'{"some": "object"}', "not an export chatsite can read"),
        (zipped({"notes.txt": b"hi"}), "The zip has no conversations.json"),
        (b"", "The file is empty"),
        (b'{"format": "chatsite-export", "version": 99, "conversations": []}', "version 99"),
        (b'{"format": "chatsite-export", "version": 1, "conversations": 5}', "must be a list"),
    ],
)
def test_a_file_of_an_unknown_format_is_refused_with_the_reason(tmp_path, owner, data, reason):
    path = write(tmp_path, data, "mystery")

    with pytest.raises(CommandError, match=reason) as refused:
        run(path, "--owner", "alice")

    assert str(refused.value).startswith(f"{path}: ")
    assert not Conversation.objects.exists()


# --- Memory ------------------------------------------------------------------------------


def test_the_command_reads_a_big_file_in_bounded_memory(tmp_path, stranger):
    count = 40
    path = tmp_path / "conversations.json"
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i in range(count):
            conversation = simple(f"Big {i}", turns=1)
            conversation["moderation_results"] = ["x" * 500_000]  # read, then dropped
            f.write(("," if i else "") + json.dumps(conversation))
        f.write("]")
    size = path.stat().st_size
    assert size > 19 * 1024 * 1024

    tracemalloc.start()
    try:
        output = run(str(path), "--owner", "mallory")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert f"Imported {count} conversation(s)" in output
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"
