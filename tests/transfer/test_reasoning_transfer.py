"""A reply's thinking in the exports: its own field in JSON (round trip proven), a
<details> block in Markdown, a clear reason for a bad one in an import."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conversations.models import Conversation, Message
from conversations.transfer import export
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatsite_export import document, entry
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

pytestmark = pytest.mark.django_db

STARTED = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture
def thought(owner) -> Conversation:
    conversation = ConversationFactory(owner=owner, title="Thoughtful")
    question = MessageFactory(conversation=conversation, content="2+2?")
    ReplyFactory(
        conversation=conversation,
        parent=question,
        content="**4**",
        reasoning="Two and two.\n\nMake *four*. </details> <script>x</script>",
        reasoning_started=STARTED,
        reasoning_ended=STARTED + timedelta(seconds=7, milliseconds=400),
        reasoning_tokens=12,
    )
    return conversation


def _exported() -> dict:
    return json.loads("".join(export.export_json(Conversation.objects.all())))


def test_the_json_export_carries_the_thinking_and_imports_it_back(thought, stranger):
    reply = _exported()["conversations"][0]["messages"][1]
    assert reply["content"] == "**4**"
    assert reply["reasoning"].startswith("Two and two.")
    assert reply["reasoning_started"] == STARTED.isoformat()
    assert reply["reasoning_tokens"] == 12
    result = conversations_import_json(data=_exported(), owner=stranger)
    assert result.conversations_imported == 1
    original = Message.objects.get(conversation=thought, role="assistant")
    copy = Message.objects.get(conversation__owner=stranger, role="assistant")
    fields = ("content", "reasoning", "reasoning_started", "reasoning_ended", "reasoning_tokens")
    assert [getattr(copy, f) for f in fields] == [getattr(original, f) for f in fields]
    assert copy.reasoning_seconds == 7
    # And out again, the same.
    again = json.loads("".join(export.export_json(Conversation.objects.filter(owner=stranger))))[
        "conversations"
    ][0]["messages"][1]
    assert {k: again[k] for k in fields} == {k: reply[k] for k in fields}


def test_markdown_shows_the_thinking_in_a_details_block_before_the_answer(thought):
    text = "".join(export.export_markdown(Conversation.objects.all()))
    block = text[text.index("<details>") : text.index("</details>\n") + len("</details>")]
    assert block.startswith("<details>\n<summary>Thought for 7 s (12 tokens)</summary>\n\n")
    assert "Make *four*." in block
    # The thinking's own "</details>" cannot end the block early.
    assert block.count("</details>") == 1 and "&lt;/details>" in block
    assert text.index("</details>") < text.index("**4**")


def test_a_reply_without_thinking_has_no_block(owner):
    ReplyFactory(conversation=ConversationFactory(owner=owner), content="plain")
    assert "<details>" not in "".join(export.export_markdown(Conversation.objects.all()))


def test_older_exports_without_it_import(stranger):
    assert (
        conversations_import_json(
            data=document(entry("Old")), owner=stranger
        ).conversations_imported
        == 1
    )
    assert Message.objects.get(role="assistant").reasoning == ""


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"reasoning": 5}, "reasoning is not text"),
        ({"reasoning_tokens": -1}, "reasoning_tokens"),
        ({"reasoning_tokens": "many"}, "reasoning_tokens is not a number"),
        ({"reasoning_started": "yesterday"}, "reasoning_started is not a date"),
    ],
)
def test_a_bad_thinking_field_is_a_clear_reason_not_a_crash(stranger, changes, reason):
    raw = entry("Bad")
    raw["messages"][1].update(changes)
    result = conversations_import_json(data=document(raw), owner=stranger)
    assert result.conversations_imported == 0
    assert reason in result.skipped[0].reason
