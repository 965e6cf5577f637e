"""Import sizes are capped in bytes at every level, and memory stays flat up to the caps."""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import pytest

from conversations.models import Conversation
from conversations.transfer import jobs, reading
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatgpt_export import dumps, simple

pytestmark = pytest.mark.django_db

EMOJI = "\U0001f600"  # 4 bytes of UTF-8, one character
COUNT = 50_000_000  # 200 MB of text in one string


def emoji_zip(tmp_path) -> str:
    """A ChatGPT export zip: a conversation holding one string of 50 million emoji, then one
    ordinary conversation. It is written piece by piece, never held whole."""
    path = tmp_path / "emoji.zip"
    huge = simple("Huge")
    huge["mapping"]["huge-node"] = {"id": "huge-node", "message": None, "parent": None}
    before, after = json.dumps(huge).rsplit('"message": null', 1)
    block = (EMOJI * 1_000_000).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as member:
            member.write(b"[" + before.encode() + b'"message": "')
            for _ in range(COUNT // 1_000_000):
                member.write(block)
            member.write(b'"' + after.encode() + b", " + json.dumps(simple("After")).encode())
            member.write(b"]")
    return str(path)


def traced(fn):
    tracemalloc.start()
    try:
        value = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak


def test_a_zip_of_one_huge_emoji_string_is_refused_by_default_in_little_memory(tmp_path, owner):
    path = emoji_zip(tmp_path)

    def attempt():
        with pytest.raises(jobs.ImportRefused) as refused:
            jobs.file_import(path=path, owner=owner)
        return str(refused.value)

    message, peak = traced(attempt)

    assert "CHAT_IMPORT_MAX_COMPRESSION_RATIO" in message
    assert peak < 4 * 1024 * 1024, peak


def test_a_conversation_over_its_byte_cap_is_skipped_unheld_and_the_rest_import(
    tmp_path, owner, settings
):
    path = emoji_zip(tmp_path)
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 1_000_000  # past the zip check

    (_, result), peak = traced(lambda: jobs.file_import(path=path, owner=owner))

    assert result.conversations_imported == 1
    assert Conversation.objects.get().title == "After"
    [skip] = result.skipped
    # The size is in bytes of the file (200 MB), not in characters (50 million).
    assert "the conversation is 191 MiB" in skip.reason
    assert "the largest imported is 32 MiB (CHAT_IMPORT_MAX_CONVERSATION_BYTES)" in skip.reason
    # The string is 200 MB; memory holds at most the 32 MiB cap of it, and briefly.
    assert peak < 50 * 1024 * 1024, peak


def test_memory_follows_the_cap_not_the_conversation(tmp_path, owner, settings):
    path = emoji_zip(tmp_path)
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 1_000_000
    settings.CHAT_IMPORT_MAX_CONVERSATION_BYTES = 1024 * 1024

    (_, result), peak = traced(lambda: jobs.file_import(path=path, owner=owner))

    assert result.conversations_imported == 1
    assert "(CHAT_IMPORT_MAX_CONVERSATION_BYTES)" in result.skipped[0].reason
    assert peak < 8 * 1024 * 1024, peak


def chatsite(*entries: dict) -> str:
    return json.dumps({"format": "chatsite-export", "version": 1, "conversations": entries})


def entry(title: str, *contents: str) -> dict:
    when = "2024-01-02T03:04:05+00:00"
    return {
        "title": title,
        "created": when,
        "messages": [
            {"id": i, "role": "user", "content": c, "created": when}
            for i, c in enumerate(contents, start=1)
        ],
    }


def test_one_text_over_its_byte_cap_skips_its_conversation(owner, settings):
    settings.CHAT_IMPORT_MAX_STRING_BYTES = 1000
    # 300 characters, 1,200 bytes: over a cap in bytes, under the same number in characters.
    data = chatsite(entry("Emoji", EMOJI * 300), entry("Fine", "x" * 1000))

    result = conversations_import_json(data=data, owner=owner)

    assert result.conversations_imported == 1
    assert result.skipped[0].title == "Emoji"
    assert result.skipped[0].reason == (
        "message 1 has a text of 1,200 bytes; the longest imported is 1,000 bytes "
        "(CHAT_IMPORT_MAX_STRING_BYTES)"
    )


def test_a_title_over_the_text_cap_is_caught_too(owner, settings):
    settings.CHAT_IMPORT_MAX_STRING_BYTES = 1000
    result = conversations_import_json(data=chatsite(entry("t" * 1001, "hi")), owner=owner)
    assert "the conversation has a text of 1,001 bytes" in result.skipped[0].reason


def test_one_message_over_its_byte_cap_skips_its_conversation(owner, settings):
    settings.CHAT_IMPORT_MAX_MESSAGE_BYTES = 1000
    big = entry("Big message", "ok")
    big["messages"][0]["system_prompt"] = "s" * 600
    big["messages"][0]["content"] = "c" * 600
    data = chatsite(big, entry("Fine", "x" * 900))

    result = conversations_import_json(data=data, owner=owner)

    assert result.conversations_imported == 1
    assert "message 1 is 1," in result.skipped[0].reason
    assert "(CHAT_IMPORT_MAX_MESSAGE_BYTES)" in result.skipped[0].reason


def test_a_chatsite_conversation_over_its_cap_is_skipped_and_the_rest_import(
    tmp_path, owner, settings
):
    settings.CHAT_IMPORT_MAX_CONVERSATION_BYTES = 100_000
    data = chatsite(
        entry("Before", "a"),
        entry("Huge", *["y" * 9000] * 30),
        entry("After", "b"),
    )
    path = tmp_path / "export.json"
    path.write_text(data)

    _, result = jobs.file_import(path=str(path), owner=owner)

    assert set(Conversation.objects.values_list("title", flat=True)) == {"Before", "After"}
    assert [s.entry for s in result.skipped] == [2]
    assert "(CHAT_IMPORT_MAX_CONVERSATION_BYTES)" in result.skipped[0].reason


def test_a_json_file_over_the_uncompressed_total_is_refused(tmp_path, owner, settings):
    path = tmp_path / "conversations.json"
    path.write_bytes(dumps([simple("A"), simple("B")]))
    settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES = 100

    with pytest.raises(jobs.ImportRefused, match="CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES"):
        jobs.file_import(path=str(path), owner=owner)


def test_reading_past_the_total_stops_the_import_with_a_reason(
    tmp_path, owner, settings, monkeypatch
):
    """What is read is counted too, not only what the zip declares."""
    conversations = [simple(f"Conversation {i}") for i in range(200)]
    path = tmp_path / "conversations.json"
    data = dumps(conversations)
    path.write_bytes(data)
    inspect = reading.upload_inspect

    def inspected_then_lower(p: str) -> jobs.Upload:
        upload = inspect(p)
        settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES = len(data) // 2
        return upload

    monkeypatch.setattr(reading, "upload_inspect", inspected_then_lower)

    with pytest.raises(jobs.ImportRefused, match="holds more than"):
        jobs.file_import(path=str(path), owner=owner)
    assert 0 < Conversation.objects.count() < 200
