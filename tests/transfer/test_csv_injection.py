"""The CSV export cannot run formulas in a spreadsheet; the JSON export stays exact."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conversations.models import Conversation
from conversations.transfer import export
from tests.support.factories import ConversationFactory, MessageFactory

HOSTILE = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_cells_that_would_start_a_formula_get_a_quote(owner, text):
    conversation = ConversationFactory(owner=owner, title=text)
    MessageFactory(conversation=conversation, content=text)

    rows = list(csv.DictReader(io.StringIO("".join(export.export_csv(Conversation.objects.all())))))

    assert rows[0]["conversation_title"] == "'" + text
    assert rows[0]["content"] == "'" + text


def test_csv_leaves_ordinary_text_and_numbers_alone(owner):
    conversation = ConversationFactory(owner=owner, title="Plain 'quoted' title")
    MessageFactory(conversation=conversation, content="a = b - c")

    rows = list(csv.DictReader(io.StringIO("".join(export.export_csv(Conversation.objects.all())))))

    assert rows[0]["conversation_title"] == "Plain 'quoted' title"
    assert rows[0]["content"] == "a = b - c"
    assert rows[0]["conversation_id"] == str(conversation.pk)


def test_json_export_keeps_the_text_exact(owner):
    conversation = ConversationFactory(owner=owner, title="=1+1")
    MessageFactory(conversation=conversation, content="@SUM(A1)")

    data = json.loads("".join(export.export_json(Conversation.objects.all())))

    assert data["conversations"][0]["title"] == "=1+1"
    assert data["conversations"][0]["messages"][0]["content"] == "@SUM(A1)"
