"""Thinking is not sent back to the model, unless the server needs it (a setting); the
setting is checked; the admin shows a reply's thinking."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.checks import check_send_reasoning_back
from conversations.generation.context import model_context
from conversations.models import Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply, validate_request
from tests.support.helpers import finished, last_reply, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(owner):
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation, content="2+2?")
    first = ReplyFactory(
        conversation=conversation, parent=question, content="4", reasoning="Two and two."
    )
    plain = MessageFactory(conversation=conversation, parent=first, content="And 3+3?")
    second = ReplyFactory(conversation=conversation, parent=plain, content="6")
    follow = MessageFactory(conversation=conversation, parent=second, content="Thanks")
    pending = ReplyFactory(
        conversation=conversation, parent=follow, content="", status=Message.Status.PENDING
    )
    return pending


def test_thinking_is_not_sent_back_by_default(answered, settings):
    assert settings.CHAT_SEND_REASONING_BACK is False
    sent = model_context(reply=answered)
    assert [m["content"] for m in sent] == ["2+2?", "4", "And 3+3?", "6", "Thanks"]
    assert not any("reasoning_content" in m for m in sent)
    assert "Two and two." not in str(sent)


def test_with_the_setting_each_reply_carries_its_own_thinking(answered, settings):
    settings.CHAT_SEND_REASONING_BACK = True
    sent = model_context(reply=answered)
    assert [m.get("reasoning_content") for m in sent] == [None, "Two and two.", None, None, None]


def test_a_local_model_is_never_sent_it(answered, settings):
    settings.CHAT_SEND_REASONING_BACK = True
    Message.objects.filter(pk=answered.pk).update(model="local:smol")
    answered.refresh_from_db()
    assert not any("reasoning_content" in m for m in model_context(reply=answered))


@pytest.mark.django_db(transaction=True)
def test_the_server_gets_it_with_the_setting_on_and_not_without(
    owner_client, fake_openai, settings
):
    fake_openai.script(Reply(reasoning=["Hm."], tokens=["A"]), Reply(), Reply())
    send(owner_client, "First")
    first = finished(last_reply())
    send(owner_client, "Second", first.conversation)
    finished(last_reply())
    sent = fake_openai.requests[-1]["messages"]
    assert [m for m in sent if m["role"] == "assistant"] == [{"role": "assistant", "content": "A"}]
    settings.CHAT_SEND_REASONING_BACK = True
    send(owner_client, "Third", first.conversation)
    finished(last_reply())
    sent = fake_openai.requests[-1]["messages"]
    assert [m for m in sent if m["role"] == "assistant"] == [
        {"role": "assistant", "content": "A", "reasoning_content": "Hm."},
        {"role": "assistant", "content": "Hello from the fake model."},
    ]
    # Valid but for the servers' extension field.
    body = dict(fake_openai.requests[-1])
    body["messages"] = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in sent]
    validate_request(body)


@pytest.mark.parametrize(("value", "errors"), [(True, 0), (False, 0), ("false", 1), (1, 1)])
def test_the_setting_must_be_a_bool(settings, value, errors):
    settings.CHAT_SEND_REASONING_BACK = value
    found = check_send_reasoning_back(None)
    assert len(found) == errors
    if errors:
        assert found[0].id == "chatsite.E004" and "true or false" in found[0].hint


def test_the_admin_shows_a_replys_thinking_and_its_tokens(staff_client, owner):
    reply = ReplyFactory(
        conversation__owner=owner, content="4", reasoning="Counting <fingers>", reasoning_tokens=42
    )
    page = staff_client.get(reverse("admin:conversations_message_change", args=[reply.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Counting &lt;fingers&gt;" in text
    assert "42" in text and "Reasoning tokens" in text


def test_thinking_sent_back_counts_in_the_context_budget(settings):
    from conversations.llm import registry

    plain = [{"role": "assistant", "content": "4"}]
    with_thinking = [{"role": "assistant", "content": "4", "reasoning_content": "x" * 300}]
    assert (
        registry.count_tokens(with_thinking, model="m")
        == registry.count_tokens(plain, model="m") + 100
    )
