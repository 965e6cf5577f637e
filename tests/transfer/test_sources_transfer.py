"""The documents a reply was given (its footer's "Sources") travel in the JSON export and
come back on import; a bad list is a clear reason, not a crash."""

from __future__ import annotations

import json

import pytest

from conversations.models import Conversation, Message
from conversations.transfer import export
from conversations.transfer.chatsite import conversations_import_json
from conversations.transfer.fields import MAX_SOURCES
from tests.support.chatsite_export import document, entry
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

pytestmark = pytest.mark.django_db


def test_the_sources_of_a_reply_are_exported_and_imported_back(owner, stranger):
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation, content="RPM?")
    ReplyFactory(
        conversation=conversation,
        parent=question,
        content="4,200.",
        sources=[{"attachment": 7, "name": "manual.pdf", "passages": "pp. 40, 217"}],
    )
    data = json.loads("".join(export.export_json(Conversation.objects.filter(owner=owner))))
    reply = data["conversations"][0]["messages"][1]
    # Names and labels only: the attachment ids mean nothing in another database.
    assert reply["sources"] == [{"name": "manual.pdf", "passages": "pp. 40, 217"}]
    assert conversations_import_json(data=data, owner=stranger).conversations_imported == 1
    copy = Message.objects.get(conversation__owner=stranger, role="assistant")
    assert copy.sources == [{"name": "manual.pdf", "passages": "pp. 40, 217"}]


@pytest.mark.parametrize(
    ("sources", "reason"),
    [
        ("manual.pdf", "sources is not a list"),
        ([{"name": "x"}] * (MAX_SOURCES + 1), "sources is not a list"),
        (["manual.pdf"], "a source is not an object"),
        ([{"name": 5}], "name is not text"),
    ],
)
def test_a_bad_list_of_sources_is_a_clear_reason(stranger, sources, reason):
    raw = entry("Bad")
    raw["messages"][1]["sources"] = sources
    result = conversations_import_json(data=document(raw), owner=stranger)
    assert result.conversations_imported == 0
    assert reason in result.skipped[0].reason
