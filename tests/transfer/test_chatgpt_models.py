"""Imported ChatGPT conversations can be continued: their model is one offered here."""

from __future__ import annotations

import pytest

from conversations.llm import registry as llm
from conversations.models import Conversation
from conversations.transfer import chatgpt
from tests.support.chatgpt_export import ChatGPTConversation, simple

pytestmark = pytest.mark.django_db


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
