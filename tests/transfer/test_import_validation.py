"""Imports validate each entry: a bad one (wrong types, NUL characters, absurd dates) is skipped
with its reason while the rest import."""

from __future__ import annotations

import pytest

from conversations.models import Conversation
from conversations.transfer import chatgpt
from conversations.transfer.chatsite import conversations_import_json
from tests.support.chatgpt_export import ChatGPTConversation, simple
from tests.support.chatsite_export import document, entry

pytestmark = pytest.mark.django_db


# --- One bad entry does not abort the import ------------------------------------------------------


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


# --- Absurd timestamps ----------------------------------------------------------------------------


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
