"""A chatsite export cannot give a conversation settings the settings form would refuse."""

from __future__ import annotations

import json

import pytest

from conversations.forms import ConversationSettingsForm
from conversations.llm import registry as llm
from conversations.models import Conversation
from conversations.transfer import chatsite
from conversations.transfer.chatsite import conversations_import_json


def export_with(**settings_: object) -> str:
    entry = {
        "title": "Imported",
        "created": "2024-01-02T03:04:05+00:00",
        "messages": [
            {"id": 1, "role": "user", "content": "Hi", "created": "2024-01-02T03:04:05+00:00"}
        ],
        **settings_,
    }
    return json.dumps({"format": "chatsite-export", "version": 1, "conversations": [entry]})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"temperature": 99.0}, {"temperature": None}),
        ({"temperature": -0.1}, {"temperature": None}),
        ({"max_tokens": 0}, {"max_tokens": None}),
        ({"max_tokens": 10**9}, {"max_tokens": None}),
        ({"model": "not-offered-here"}, {"model": "fake-model"}),
    ],
)
def test_out_of_bounds_settings_fall_back_to_the_site_defaults(owner, given, expected):
    result = conversations_import_json(data=export_with(**given), owner=owner)

    assert result.conversations_imported == 1
    conversation = Conversation.objects.get()
    for name, value in expected.items():
        assert getattr(conversation, name) == value, name


def test_settings_the_form_accepts_are_kept(owner):
    data = export_with(model="fake-model", temperature=2.0, max_tokens=32768)
    conversations_import_json(data=data, owner=owner)

    conversation = Conversation.objects.get()
    assert (conversation.model, conversation.temperature, conversation.max_tokens) == (
        "fake-model",
        2.0,
        32768,
    )
    assert conversation.model in [o.id for o in llm.available_models()]


def test_the_bounds_are_those_of_the_settings_form():
    form = ConversationSettingsForm()
    temperature = form.fields["temperature"]
    max_tokens = form.fields["max_tokens"]
    assert (temperature.min_value, temperature.max_value) == (  # type: ignore[attr-defined]
        chatsite.TEMPERATURE_MIN,
        chatsite.TEMPERATURE_MAX,
    )
    assert (max_tokens.min_value, max_tokens.max_value) == (  # type: ignore[attr-defined]
        chatsite.MAX_TOKENS_MIN,
        chatsite.MAX_TOKENS_MAX,
    )
