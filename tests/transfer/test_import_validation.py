"""Review fixes of import/export: bad entries skipped, absurd dates, lossless JSON, branches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conversations.chat import selectors
from conversations.llm import registry as llm
from conversations.models import Conversation, Message
from conversations.transfer import chatgpt, export
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatgpt_export import ChatGPTConversation, simple
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

pytestmark = pytest.mark.django_db

START = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def exported(queryset=None) -> dict:
    return json.loads("".join(export.export_json(queryset or Conversation.objects.all())))


def entry(title: str, **changes) -> dict:
    """A minimal valid chatsite export entry with two messages."""
    raw = {
        "id": 1,
        "owner": "alice",
        "title": title,
        "model": "fake-model",
        "system_prompt": "",
        "created": "2024-01-01T00:00:00+00:00",
        "messages": [
            {
                "id": 1,
                "parent_id": None,
                "role": "user",
                "content": "Q",
                "created": "2024-01-01T00:00:01+00:00",
            },
            {
                "id": 2,
                "parent_id": 1,
                "role": "assistant",
                "content": "A",
                "created": "2024-01-01T00:00:02+00:00",
            },
        ],
    }
    raw.update(changes)
    return raw


def document(*entries: dict) -> dict:
    return {"format": export.FORMAT, "version": export.VERSION, "conversations": list(entries)}


# --- 1. One bad entry does not abort the import ---------------------------------------


def test_bad_types_and_overflowing_dates_skip_only_their_chatsite_entry(stranger):
    list_parent = entry("List parent")
    list_parent["messages"][1]["parent_id"] = [1]
    dict_parent = entry("Dict parent")
    dict_parent["messages"][1]["parent_id"] = {"id": 1}
    overflow = entry("Overflow", created="9999-12-31T23:59:59-05:00")
    list_current = entry("List current", current=[2])
    content_dict = entry("Content dict")
    content_dict["messages"][0]["content"] = {"text": "Q"}

    result = conversations_import_json(
        data=document(
            entry("First"),
            list_parent,
            dict_parent,
            overflow,
            list_current,
            content_dict,
            entry("Last"),
        ),
        owner=stranger,
    )

    assert sorted(Conversation.objects.values_list("title", flat=True)) == ["First", "Last"]
    reasons = {s.title: s.reason for s in result.skipped}
    assert set(reasons) == {
        "List parent",
        "Dict parent",
        "Overflow",
        "List current",
        "Content dict",
    }
    assert "parent" in reasons["List parent"]
    assert "parent" in reasons["Dict parent"]
    assert "created" in reasons["Overflow"]
    assert "current" in reasons["List current"]
    assert "content" in reasons["Content dict"]
    assert not any(s.duplicate for s in result.skipped)


def test_a_chatgpt_content_type_that_is_not_a_string_skips_only_that_conversation(owner):
    bad = simple("Bad type")
    node = next(n for n in bad["mapping"].values() if n["message"] and n["parent"])
    node["message"]["content"]["content_type"] = ["text"]
    worse = simple("Worse type")
    node = next(n for n in worse["mapping"].values() if n["message"] and n["parent"])
    node["message"]["content"]["content_type"] = {"kind": "text"}

    result = chatgpt.conversations_import(
        conversations=[simple("First"), bad, worse, simple("Last")], owner=owner
    )

    assert sorted(Conversation.objects.values_list("title", flat=True)) == ["First", "Last"]
    reasons = {s.title: s.reason for s in result.skipped}
    assert "content_type" in reasons["Bad type"]
    assert "content_type" in reasons["Worse type"]


def test_nul_characters_are_stripped_from_everything_imported(owner, stranger):
    nul = entry("Ti\x00tle", model="fake\x00-model", system_prompt="Be\x00 brief", current=2)
    nul["messages"][0]["content"] = "Q\x00uestion"
    nul["messages"][1]["model"] = "m\x00odel"
    nul["messages"][1]["system_prompt"] = "s\x00p"
    conversations_import_json(data=document(nul), owner=stranger)
    c = ChatGPTConversation("Chat\x00GPT", model="gpt\x00-4o")
    q = c.add(c.system, "user", "Hel\x00lo")
    c.add(q, "assistant", "Wor\x00ld", model="gpt\x00-4o")
    c.add(
        c.system,
        "user",
        "",
        content={"content_type": "user_editable_context", "user_instructions": "In\x00structions"},
    )
    chatgpt.conversations_import(conversations=[c.build(current=q)], owner=owner)

    texts = []
    for conversation in Conversation.objects.all():
        texts += [conversation.title, conversation.model, conversation.system_prompt]
        for m in conversation.messages.all():
            texts += [m.content, m.model, m.system_prompt, m.external_id]
    assert Conversation.objects.count() == 2
    assert not any("\x00" in t for t in texts)
    assert {"Title", "Be brief", "Question", "model", "sp", "ChatGPT", "Hello", "World"} <= set(
        texts
    )
    assert "Instructions" in Conversation.objects.get(owner=owner).system_prompt


# --- 2. Absurd timestamps -------------------------------------------------------------


@pytest.mark.parametrize(
    "created", ["9000-01-02T00:00:00+00:00", "1969-12-31T23:59:59+00:00", "0001-01-01T00:00:00"]
)
def test_chatsite_dates_outside_1970_to_9000_are_skipped_with_the_reason(stranger, created):
    late = entry("Late")
    late["messages"][1]["created"] = created
    result = conversations_import_json(
        data=document(entry("Early", created=created), late, entry("Fine")), owner=stranger
    )
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Fine"]
    assert [s.title for s in result.skipped] == ["Early", "Late"]
    assert all("out of range" in s.reason for s in result.skipped)


@pytest.mark.parametrize("field", ["create_time", "update_time"])
@pytest.mark.parametrize("value", [253_402_300_799.0, -1.0])  # 9999-12-31, before 1970
def test_chatgpt_times_outside_1970_to_9000_are_skipped_and_the_sidebar_still_works(
    owner, owner_client, field, value
):
    bad = simple("Far future")
    bad[field] = value
    result = chatgpt.conversations_import(conversations=[bad, simple("Fine")], owner=owner)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Fine"]
    assert [s.title for s in result.skipped] == ["Far future"]
    assert "out of range" in result.skipped[0].reason
    assert owner_client.get("/").status_code == 200


# --- 3. The JSON export keeps everything ----------------------------------------------


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


# --- 4. Markdown shows branches as alternatives ---------------------------------------


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


# --- 5. Imported ChatGPT conversations can be continued -------------------------------


def test_a_chatgpt_model_not_offered_here_gives_the_conversation_the_default_model(owner):
    c = ChatGPTConversation("Continue me", model="gpt-4o")
    q = c.add(c.system, "user", "Hi")
    c.add(q, "assistant", "Hello", model="gpt-4o-2024-05-13")
    chatgpt.conversations_import(conversations=[c.build()], owner=owner)
    conversation = Conversation.objects.get()
    assert "gpt-4o" not in [o.id for o in llm.available_models()]
    assert conversation.model == llm.default_model()
    assert conversation.messages.get(role="assistant").model == "gpt-4o-2024-05-13"


def test_a_chatgpt_model_offered_here_is_kept(owner, settings):
    settings.OPENAI_MODELS = ["gpt-4o"]
    assert "gpt-4o" in [o.id for o in llm.available_models()]
    chatgpt.conversations_import(conversations=[simple("Kept")], owner=owner)
    assert Conversation.objects.get().model == "gpt-4o"
