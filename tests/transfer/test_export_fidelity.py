"""The JSON export keeps everything (the shown branch, settings, flags, external ids); the
Markdown export shows the other branches too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conversations.chat import selectors
from conversations.models import Conversation, Message
from conversations.transfer import chatgpt, export
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatgpt_export import simple
from tests.support.chatsite_export import document, entry
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

pytestmark = pytest.mark.django_db


START = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def exported(queryset=None) -> dict:
    return json.loads("".join(export.export_json(queryset or Conversation.objects.all())))


# --- The JSON export keeps everything -------------------------------------------------------------


@pytest.fixture
def settled(owner):
    """A conversation with two branches, the older one shown, and non-default settings."""
    conversation = ConversationFactory(
        owner=owner,
        title="Settled",
        title_set_by_user=True,
        temperature=0.3,
        max_tokens=321,
        external_id="ext-123",
    )
    question = MessageFactory(conversation=conversation, content="Q", external_id="q-ext")
    first = ReplyFactory(
        conversation=conversation,
        parent=question,
        content="First answer",
        system_prompt="Be kind",
        temperature=0.7,
        max_tokens=99,
        omitted=3,
        external_id="a-ext",
    )
    ReplyFactory(conversation=conversation, parent=question, content="Second answer")
    conversation.current = first
    conversation.save()
    for i, message in enumerate(conversation.messages.order_by("id")):
        Message.objects.filter(pk=message.pk).update(created=START + timedelta(minutes=i))
    return conversation


def test_an_export_import_round_trip_keeps_the_shown_branch_settings_and_flags(settled, stranger):
    result = conversations_import_json(data=exported(), owner=stranger)

    assert result.conversations_imported == 1
    copy = Conversation.objects.get(owner=stranger)
    assert (copy.title_set_by_user, copy.temperature, copy.max_tokens, copy.external_id) == (
        True,
        0.3,
        321,
        "ext-123",
    )
    assert copy.current is not None and copy.current.content == "First answer"
    assert [m.content for m in selectors.thread(conversation=copy)] == ["Q", "First answer"]
    first = copy.messages.get(content="First answer")
    assert (first.system_prompt, first.temperature, first.max_tokens, first.omitted) == (
        "Be kind",
        0.7,
        99,
        3,
    )
    assert first.external_id == "a-ext"
    assert copy.messages.get(content="Q").external_id == "q-ext"


def test_exports_without_the_new_keys_still_import(stranger):
    result = conversations_import_json(data=document(entry("Old")), owner=stranger)
    assert result.conversations_imported == 1
    copy = Conversation.objects.get()
    assert (copy.current, copy.title_set_by_user, copy.temperature, copy.external_id) == (
        None,
        False,
        None,
        "",
    )


def test_a_current_that_is_not_in_the_conversation_skips_the_entry(stranger):
    result = conversations_import_json(data=document(entry("Lost", current=42)), owner=stranger)
    assert result.conversations_imported == 0
    assert "current" in result.skipped[0].reason


def test_an_external_id_identifies_a_conversation_even_when_renamed(settled, stranger):
    data = exported()
    conversations_import_json(data=data, owner=stranger)
    data["conversations"][0]["title"] = "Renamed elsewhere"
    result = conversations_import_json(data=data, owner=stranger)
    assert result.conversations_imported == 0
    assert result.skipped[0].duplicate
    assert Conversation.objects.filter(owner=stranger).count() == 1


def test_a_chatgpt_conversation_moved_through_a_chatsite_export_is_not_imported_twice(
    owner, stranger
):
    raw = simple("Moved")
    chatgpt.conversations_import(conversations=[json.loads(json.dumps(raw))], owner=owner)
    conversations_import_json(data=exported(), owner=stranger)
    # The title changes in the meantime: the ChatGPT id still recognises it.
    Conversation.objects.filter(owner=stranger).update(title="Renamed")

    result = chatgpt.conversations_import(conversations=[raw], owner=stranger)

    assert result.conversations_imported == 0
    assert result.skipped[0].duplicate
    assert Conversation.objects.filter(owner=stranger).count() == 1


# --- Markdown shows branches as alternatives ------------------------------------------------------


def test_markdown_shows_the_shown_branch_then_the_other_versions(settled):
    text = "".join(export.export_markdown(Conversation.objects.all()))
    transcript, _, others = text.partition("## Other versions")
    assert others, text
    assert "First answer" in transcript
    assert "Second answer" not in transcript
    assert "Second answer" in others
    assert "First answer" not in others
    # The alternative says what it answers and that it is one of two.
    assert "Reply 2 of 2" in others
    assert "> Q" in others or "“Q”" in others
    # The shown reply says it has an alternative.
    assert "version 1 of 2" in transcript


def test_markdown_without_branches_has_no_other_versions_section(owner):
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation)
    ReplyFactory(conversation=conversation, parent=question)
    text = "".join(export.export_markdown(Conversation.objects.all()))
    assert "Other versions" not in text
    assert "version" not in text.lower().replace("conversation", "")
