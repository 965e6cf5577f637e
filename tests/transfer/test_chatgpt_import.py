"""ChatGPT exports read into conversations: every branch, the right parents, nothing twice."""

from __future__ import annotations

import io
import json
import tracemalloc
from datetime import UTC, datetime

import pytest

from conversations.models import Conversation, Message
from conversations.transfer import chatgpt, jobs
from conversations.transfer import jsonstream as jsonstream_module
from conversations.transfer.jobs import ImportRefused, file_import
from conversations.transfer.jsonstream import JSONStream, JSONStreamError, StreamArray
from tests.support.chatgpt_export import ChatGPTConversation, dumps, simple, text, zipped
from tests.support.helpers import log_events

pytestmark = pytest.mark.django_db


def run(owner, conversations):
    return chatgpt.conversations_import(conversations=conversations, owner=owner)


def by_content(conversation: Conversation) -> dict[str, Message]:
    return {m.content: m for m in conversation.messages.all()}


def write(tmp_path, data: bytes, name: str = "upload") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def branched() -> tuple[dict, dict[str, str]]:
    """Q1 → A1 → (Q2 → A2 | Q2 edited → (A2b | A2b regenerated)); current: the regenerated."""
    c = ChatGPTConversation("Branches", model="gpt-4o")
    n = {}
    n["q1"] = c.add(c.system, "user", "Q1")
    n["a1"] = c.add(n["q1"], "assistant", "A1")
    n["q2"] = c.add(n["a1"], "user", "Q2")
    n["a2"] = c.add(n["q2"], "assistant", "A2")
    n["q2e"] = c.add(n["a1"], "user", "Q2 edited")
    n["a2b"] = c.add(n["q2e"], "assistant", "A2b", model="gpt-4o-mini")
    n["a2r"] = c.add(n["q2e"], "assistant", "A2b regenerated", model="o1")
    return c.build(current=n["a2r"]), n


def test_it_keeps_every_branch_with_the_right_parents(owner):
    raw, n = branched()
    result = run(owner, [raw])
    assert result.conversations_imported == 1
    assert result.messages_imported == 7
    conv = Conversation.objects.get(owner=owner)
    m = by_content(conv)
    assert set(m) == {"Q1", "A1", "Q2", "A2", "Q2 edited", "A2b", "A2b regenerated"}
    assert m["Q1"].parent is None  # the root and the hidden system message are skipped
    assert m["A1"].parent == m["Q1"]
    assert m["Q2"].parent == m["A1"]
    assert m["Q2 edited"].parent == m["A1"]
    assert m["A2"].parent == m["Q2"]
    assert m["A2b"].parent == m["Q2 edited"]
    assert m["A2b regenerated"].parent == m["Q2 edited"]
    assert [m["Q1"].role, m["A1"].role] == ["user", "assistant"]
    assert {x.status for x in m.values()} == {Message.Status.COMPLETE}
    # The branch shown is ChatGPT's current one.
    assert conv.current == m["A2b regenerated"]
    assert conv.external_id == raw["conversation_id"]
    assert m["A2"].external_id == n["a2"]


def test_the_current_branch_is_the_nearest_kept_ancestor_of_a_skipped_current_node(owner):
    c = ChatGPTConversation()
    q = c.add(c.system, "user", "Question")
    a = c.add(q, "assistant", "Answer")
    hidden = c.add(a, "assistant", "", content=text(""))
    run(owner, [c.build(current=hidden)])
    conv = Conversation.objects.get()
    assert conv.current == conv.messages.get(content="Answer")


def test_it_skips_hidden_and_system_nodes_and_keeps_custom_instructions_as_system_prompt(owner):
    c = ChatGPTConversation("Instructions")
    context = c.add(
        c.system,
        "user",
        content={
            "content_type": "user_editable_context",
            "user_profile": "I am a botanist.",
            "user_instructions": "Answer in French.",
        },
        hidden=True,
    )
    old_style = c.add(
        context,
        "system",
        "Be terse.",
        metadata={"is_user_system_message": True},
    )
    hidden_user = c.add(old_style, "user", "internal", hidden=True)
    q = c.add(hidden_user, "user", "What is a fern?")
    tool_call = c.add(q, "assistant", "", content=text(""))
    c.add(tool_call, "assistant", "Une plante.")
    run(owner, [c.build()])
    conv = Conversation.objects.get()
    assert conv.system_prompt == "I am a botanist.\n\nAnswer in French.\n\nBe terse."
    messages = list(conv.messages.all())
    assert [m.content for m in messages] == ["What is a fern?", "Une plante."]
    assert messages[0].parent is None  # re-parented past every skipped node
    assert messages[1].parent == messages[0]
    assert "internal" not in {m.content for m in messages}


def test_it_turns_code_images_and_tool_output_into_readable_text(owner):
    c = ChatGPTConversation("Rich content")
    q = c.add(
        c.system,
        "user",
        content={
            "content_type": "multimodal_text",
            "parts": [
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": "file-service://file-abc",
                    "size_bytes": 1234,
                    "width": 512,
                    "height": 512,
                },
                "Plot this data",
            ],
        },
    )
    thoughts = c.add(
        q,
        "assistant",
        content={"content_type": "thoughts", "thoughts": [{"summary": "hm", "content": "secret"}]},
    )
    code = c.add(
        thoughts,
        "assistant",
        content={"content_type": "code", "language": "python", "text": "print(1 + 1)"},
    )
    output = c.add(code, "tool", content={"content_type": "execution_output", "text": "2"})
    answer = c.add(output, "assistant", "The result is 2.")
    q2 = c.add(answer, "user", "And a quote?")
    c.add(
        q2,
        "tool",
        content={
            "content_type": "tether_quote",
            "url": "https://example.com/a",
            "domain": "example.com",
            "title": "Example",
            "text": "Quoted line",
        },
    )
    result = run(owner, [c.build()])
    assert result.conversations_imported == 1
    conv = Conversation.objects.get()
    messages = list(conv.messages.order_by("created", "id"))
    assert messages[0].content == "[image]\nPlot this data"
    assert messages[0].role == "user"
    # Code, its output and the explanation read as one reply; the reasoning is left out.
    assert messages[1].role == "assistant"
    assert messages[1].content.startswith("```python\nprint(1 + 1)\n```")
    assert "Output:\n```\n2\n```" in messages[1].content
    assert "secret" not in messages[1].content
    assert "The result is 2." in messages[1].content
    assert messages[1].parent == messages[0]
    assert messages[2].content == "And a quote?"
    assert messages[2].parent == messages[1]
    # Tool output with no assistant above it becomes an assistant message of its own.
    assert messages[3].role == "assistant"
    assert messages[3].content == "> Quoted line\n> — Example https://example.com/a"
    assert messages[3].parent == messages[2]


def test_alternative_answers_after_tool_output_stay_separate_replies(owner):
    c = ChatGPTConversation()
    q = c.add(c.system, "user", "Run it")
    code = c.add(q, "assistant", content={"content_type": "code", "text": "x = 1"})
    output = c.add(code, "tool", content={"content_type": "execution_output", "text": "ok"})
    c.add(output, "assistant", "First explanation")
    c.add(output, "assistant", "Regenerated explanation")
    result = run(owner, [c.build()])
    assert result.messages_imported == 4
    m = by_content(Conversation.objects.get())
    merged = m["```\nx = 1\n```\n\nOutput:\n```\nok\n```"]
    assert merged.parent == m["Run it"]
    assert m["First explanation"].parent == merged
    assert m["Regenerated explanation"].parent == merged


def test_it_keeps_titles_timestamps_and_models(owner, settings):
    settings.OPENAI_MODELS = ["gpt-4-turbo"]  # offered here: the conversation keeps it
    c = ChatGPTConversation("Timing", create_time=1_700_000_000.5, model="gpt-4-turbo")
    q = c.add(c.system, "user", "Hi", create_time=1_700_000_010.25)
    c.add(q, "assistant", "Hello", create_time=1_700_000_012.75, model="gpt-4o-2024-05-13")
    raw = c.build()
    raw["update_time"] = 1_700_000_100.0
    run(owner, [raw])
    conv = Conversation.objects.get()
    assert conv.title == "Timing"
    assert conv.title_set_by_user
    assert conv.model == "gpt-4-turbo"
    assert conv.created == datetime.fromtimestamp(1_700_000_000.5, tz=UTC)
    assert conv.updated == datetime.fromtimestamp(1_700_000_100.0, tz=UTC)
    hi, hello = conv.messages.all()
    assert hi.created == datetime.fromtimestamp(1_700_000_010.25, tz=UTC)
    assert hello.created == datetime.fromtimestamp(1_700_000_012.75, tz=UTC)
    assert hello.model == "gpt-4o-2024-05-13"
    assert hello.updated == hello.created


def test_a_message_without_a_time_takes_the_time_of_its_parent(owner):
    c = ChatGPTConversation()
    q = c.add(c.system, "user", "Q", create_time=1_700_000_000.0)
    c.add(q, "assistant", "A", create_time=None)
    run(owner, [c.build()])
    q_row, a_row = Conversation.objects.get().messages.all()
    assert a_row.created == q_row.created


def corrupt_entries() -> list:
    missing_mapping = simple("No mapping")
    del missing_mapping["mapping"]
    cycle = simple("Cycle")
    nodes = list(cycle["mapping"].values())
    nodes[0]["parent"] = nodes[-1]["id"]  # the root hangs under its own last descendant
    bad_time = simple("Bad time")
    next(n for n in bad_time["mapping"].values() if n["message"] and n["parent"])["message"][
        "create_time"
    ] = "yesterday"
    bad_children = simple("Bad children")
    next(iter(bad_children["mapping"].values()))["children"] = "abc"
    return [missing_mapping, cycle, bad_time, bad_children, "not even an object"]


def test_a_corrupt_conversation_is_reported_and_skipped_and_the_rest_imported(owner):
    entries = [simple("Good one"), *corrupt_entries(), simple("Good two")]
    result = run(owner, entries)
    assert result.conversations_imported == 2
    assert sorted(Conversation.objects.values_list("title", flat=True)) == ["Good one", "Good two"]
    reasons = {s.title: s.reason for s in result.skipped}
    assert reasons["No mapping"] == 'no "mapping" of messages'
    assert reasons["Cycle"] == "the message tree has a cycle"
    assert "create_time is not a time: 'yesterday'" in reasons["Bad time"]
    assert "children that are not a list" in reasons["Bad children"]
    assert reasons[""] == "not a conversation object"
    assert [s.entry for s in result.skipped] == [2, 3, 4, 5, 6]
    assert not any(s.duplicate for s in result.skipped)


def test_a_conversation_with_nothing_to_show_is_skipped_with_the_reason(owner):
    c = ChatGPTConversation("Empty")
    c.add(c.system, "user", "", content=text(""))
    result = run(owner, [c.build()])
    assert result.conversations_imported == 0
    assert [s.reason for s in result.skipped] == ["no message with text in it"]
    assert not Conversation.objects.exists()


def test_importing_the_same_export_twice_creates_nothing_new(owner):
    raw, _ = branched()
    entries = [raw, simple("Other")]
    first = run(owner, json.loads(json.dumps(entries)))
    counts = (Conversation.objects.count(), Message.objects.count())
    second = run(owner, json.loads(json.dumps(entries)))
    assert (Conversation.objects.count(), Message.objects.count()) == counts
    assert first.conversations_imported == 2
    assert second.conversations_imported == 0
    assert second.messages_imported == 0
    assert [s.reason for s in second.skipped] == ["already imported", "already imported"]
    assert all(s.duplicate for s in second.skipped)


def test_the_same_export_imports_for_two_different_users(owner, stranger):
    entries = [simple("Shared")]
    run(owner, json.loads(json.dumps(entries)))
    result = run(stranger, json.loads(json.dumps(entries)))
    assert result.conversations_imported == 1
    assert Conversation.objects.filter(owner=stranger).count() == 1


def test_each_imported_conversation_is_logged_with_its_counts(owner, tmp_path, settings):
    path = write(tmp_path, dumps([simple("Logged", turns=3)]))
    before = len(log_events(settings.CHAT_LOG_FILE))
    file_import(path=path, owner=owner)
    events = [e for e in log_events(settings.CHAT_LOG_FILE)[before:] if e["event"] == "import"]
    assert len(events) == 1
    conv = Conversation.objects.get()
    assert events[0]["user"] == "alice"
    assert events[0]["conversation"] == conv.pk
    assert events[0]["messages"] == 6
    assert events[0]["text"] == "Logged"


# --- Files: zip, shards, plain JSON ----------------------------------------------------


def test_a_sharded_export_in_a_zip_imports_every_shard(owner, tmp_path):
    data = zipped(
        {
            "conversations-000.json": dumps([simple("Shard 0 a"), simple("Shard 0 b")]),
            "conversations-001.json": dumps([simple("Shard 1")]),
        }
    )
    source, result = file_import(path=write(tmp_path, data), owner=owner)
    assert source == "chatgpt"
    assert result.conversations_imported == 3
    assert result.messages_imported == 12
    assert set(Conversation.objects.values_list("title", flat=True)) == {
        "Shard 0 a",
        "Shard 0 b",
        "Shard 1",
    }


def test_a_zip_with_conversations_json_imports_it(owner, tmp_path):
    data = zipped({"conversations.json": dumps([simple("Zipped")])})
    _, result = file_import(path=write(tmp_path, data), owner=owner)
    assert result.conversations_imported == 1


@pytest.mark.parametrize("name", ["conversations.json", "conversations-001.json"])
def test_a_plain_conversations_json_or_one_shard_imports(owner, tmp_path, name):
    path = write(tmp_path, b"\xef\xbb\xbf" + dumps([simple("Plain"), simple("Other")]), name)
    source, result = file_import(path=path, owner=owner)
    assert source == "chatgpt"
    assert result.conversations_imported == 2


def test_a_single_conversation_object_imports(owner, tmp_path):
    path = write(tmp_path, json.dumps(simple("Alone")).encode())
    _, result = file_import(path=path, owner=owner)
    assert result.conversations_imported == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty."),
        (b"   \n", "The file has no content."),
        (b"hello, I am a text file", "not an export chatsite can read"),
        (b"PK\x03\x04 not really a zip", "The zip file cannot be read"),
        (zipped({"notes.txt": b"hi"}), "The zip has no conversations.json"),
        (b'{"some": "object"}', "not an export chatsite can read"),
        (b"[1, 2, 3]", "not an export chatsite can read"),
        (b'[{"title": "x"}', "Not valid JSON"),
        (b'{"format": "chatsite-export", "version": 99, "conversations": []}', "version 99"),
        (b"[\xff\xfe]", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_an_export_is_refused_with_a_clear_message(
    owner, tmp_path, data, message
):
    with pytest.raises(ImportRefused, match=message.replace(".", r"\.")):
        file_import(path=write(tmp_path, data), owner=owner)
    assert not Conversation.objects.exists()


def test_a_broken_file_keeps_what_was_imported_before_the_break(owner, tmp_path):
    good = dumps([simple("Before"), simple("Also before")])
    with pytest.raises(ImportRefused, match="Not valid JSON"):
        file_import(path=write(tmp_path, good[:-1] + b", {broken"), owner=owner)
    assert Conversation.objects.count() == 2


def test_progress_is_reported_as_the_file_is_read(owner, tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream_module, "CHUNK_SIZE", 4096)
    entries = [simple(f"Conversation {i}", turns=3) for i in range(30)]
    path = write(tmp_path, dumps(entries))
    seen = []
    file_import(
        path=path,
        owner=owner,
        on_progress=lambda read, total, result: seen.append(
            (read, total, result.conversations_imported)
        ),
    )
    total = len(dumps(entries))
    assert len(seen) > 5
    assert all(t == total for _, t, _ in seen)
    reads = [r for r, _, _ in seen]
    assert reads == sorted(reads)
    assert reads[-1] == total
    # Conversations are imported while the file is still being read.
    assert any(0 < n < 30 for r, _, n in seen if r < total)


def test_progress_of_a_zip_counts_every_shard(owner, tmp_path):
    shards = {
        "conversations-000.json": dumps([simple("A")]),
        "conversations-001.json": dumps([simple("B")]),
    }
    seen = []
    file_import(
        path=write(tmp_path, zipped(shards)),
        owner=owner,
        on_progress=lambda read, total, result: seen.append((read, total)),
    )
    total = sum(len(v) for v in shards.values())
    assert seen[-1] == (total, total)


# --- The incremental parser -----------------------------------------------------------


def test_the_parser_reads_a_big_file_in_bounded_memory(tmp_path):
    count = 20_000
    path = tmp_path / "big.json"
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i in range(count):
            f.write("," if i else "")
            json.dump(simple(f"Conversation {i} " + "x" * 400, turns=1), f)
        f.write("]")
    size = path.stat().st_size
    assert size > 40 * 1024 * 1024
    seen = 0
    tracemalloc.start()
    try:
        with path.open("rb") as f:
            for item in JSONStream(f).array_items():
                assert item["title"].startswith(f"Conversation {seen} ")
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"


def test_the_parser_decodes_values_split_across_every_chunk_boundary():
    doc = [{"a": i, "s": 'é\\"x' * i, "n": -1.5e3, "t": True, "z": None} for i in range(40)]
    data = json.dumps(doc, ensure_ascii=False).encode()
    for chunk_size in (1, 2, 3, 7, 64):
        assert list(JSONStream(io.BytesIO(data), chunk_size=chunk_size).array_items()) == doc


def test_the_parser_streams_the_conversations_of_an_object():
    data = json.dumps({"format": "x", "conversations": [1, {"b": 2}], "after": [3]}).encode()
    stream = JSONStream(io.BytesIO(data), chunk_size=3)
    seen = {}
    for key, value in stream.object_members(stream=frozenset({"conversations"})):
        seen[key] = list(value.items()) if isinstance(value, StreamArray) else value
    assert seen == {"format": "x", "conversations": [1, {"b": 2}], "after": [3]}


@pytest.mark.parametrize("data", [b"[1 2]", b"[1,", b"[1]]", b'[{"a" 1}]', b'["abc'])
def test_the_parser_rejects_invalid_json(data):
    with pytest.raises(JSONStreamError):
        list(JSONStream(io.BytesIO(data), chunk_size=2).array_items())


def test_a_syntax_error_is_found_without_reading_the_rest_of_the_file():
    data = b'[{"a": 1}, {"a" 2}, ' + b'{"pad": "' + b"x" * 5_000_000 + b'"}]'
    stream = JSONStream(io.BytesIO(data), chunk_size=1024)
    with pytest.raises(JSONStreamError, match="Expecting ':' delimiter"):
        list(stream.array_items())
    assert stream.bytes_read < 10_000


def test_inspecting_an_upload_reads_only_the_zip_directory(tmp_path):
    data = zipped({"conversations-000.json": b"[]", "conversations-001.json": b"[]"})
    upload = jobs.upload_inspect(write(tmp_path, data))
    assert upload.is_zip
    assert upload.members == ["conversations-000.json", "conversations-001.json"]
