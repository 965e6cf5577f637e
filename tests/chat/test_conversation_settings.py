"""Per-conversation settings: the form, the defaults, and that every call and reply uses them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_models(settings):
    settings.OPENAI_MODELS = ["other-model"]


def save(client, conversation: Conversation, **fields):
    data = {"model": "fake-model", "system_prompt": "", "temperature": "", "max_tokens": ""}
    data |= {k: str(v) for k, v in fields.items()}
    return client.post(reverse("settings", args=[conversation.pk]), data, **HTMX)


def test_the_conversation_page_offers_the_models_and_shows_its_settings(
    owner_client, owner, two_models
):
    conversation = ConversationFactory(owner=owner, temperature=0.4, max_tokens=300)
    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert '<details id="settings-panel"' in html
    assert '<option value="fake-model" selected>fake-model</option>' in html
    assert '<option value="other-model">other-model</option>' in html
    assert 'name="temperature" value="0.4"' in html
    assert 'name="max_tokens" value="300"' in html
    assert "You are a test assistant.</textarea>" in html


def test_saved_settings_are_sent_with_every_call_and_recorded_on_the_reply(
    owner_client, owner, fake_openai, two_models
):
    conversation = ConversationFactory(owner=owner)
    response = save(
        owner_client,
        conversation,
        model="other-model",
        system_prompt="Answer like a pirate.",
        temperature="0.7",
        max_tokens="256",
    )
    assert response.status_code == 200
    assert "Saved" in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == (
        "other-model",
        "Answer like a pirate.",
    )
    assert (conversation.temperature, conversation.max_tokens) == (0.7, 256)

    fake_openai.script(Reply(tokens=["Arr"]))
    send(owner_client, "Hello", conversation)
    reply = finished(last_reply())
    request = fake_openai.requests[-1]
    assert request["model"] == "other-model"
    assert request["temperature"] == 0.7
    assert request["max_tokens"] == 256
    assert request["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert (reply.model, reply.system_prompt) == ("other-model", "Answer like a pirate.")
    assert (reply.temperature, reply.max_tokens) == (0.7, 256)
    # The reply says what it was generated with (footer tooltip).
    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "Temperature: 0.7 · Maximum length: 256 tokens" in html


def test_blank_settings_mean_the_sites_defaults(owner_client, owner, fake_openai, settings):
    settings.CHAT_TEMPERATURE = 0.3
    settings.CHAT_MAX_TOKENS = 1000
    conversation = ConversationFactory(owner=owner, temperature=1.5, max_tokens=99)
    assert save(owner_client, conversation).status_code == 200
    conversation.refresh_from_db()
    assert conversation.temperature is None and conversation.max_tokens is None
    assert conversation.system_prompt == ""

    fake_openai.script(Reply(tokens=["ok"]))
    send(owner_client, "Defaults?", conversation)
    reply = finished(last_reply())
    request = fake_openai.requests[-1]
    assert (request["temperature"], request["max_tokens"]) == (0.3, 1000)
    assert request["messages"][0] == {"role": "user", "content": "Defaults?"}  # no system prompt
    assert (reply.temperature, reply.max_tokens) == (0.3, 1000)


def test_with_no_limit_configured_none_is_sent(owner_client, owner, fake_openai):
    conversation = ConversationFactory(owner=owner)
    fake_openai.script(Reply(tokens=["ok"]))
    send(owner_client, "Limits?", conversation)
    reply = finished(last_reply())
    assert "max_tokens" not in fake_openai.requests[-1]
    assert "temperature" not in fake_openai.requests[-1]
    assert reply.max_tokens is None and reply.temperature is None


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("model", "gpt-imaginary", "is not a model this server offers"),
        ("temperature", "3", "less than or equal to 2"),
        ("temperature", "-0.1", "greater than or equal to 0"),
        ("temperature", "warm", "Enter a number from 0 to 2."),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "999999", "less than or equal to 32768"),
        ("max_tokens", "1.5", "Enter a whole number"),
    ],
)
def test_bad_settings_are_refused_with_a_form_error(owner_client, owner, field, value, error):
    conversation = ConversationFactory(owner=owner, temperature=0.5)
    response = save(owner_client, conversation, **{field: value})
    assert response.status_code == 422
    assert error in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.temperature == 0.5 and conversation.model == "fake-model"
    # Without JavaScript: the whole page, with the error in the open panel.
    data = {"model": "fake-model", field: value}
    page = owner_client.post(reverse("settings", args=[conversation.pk]), data)
    assert page.status_code == 422
    assert "<html" in page.content.decode() and error in page.content.decode()


def test_settings_without_javascript_redirect_back(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    data = {"model": "fake-model", "system_prompt": "Short answers.", "temperature": "1"}
    response = owner_client.post(reverse("settings", args=[conversation.pk]), data)
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Short answers." and conversation.temperature == 1


def test_a_stranger_cannot_change_settings(stranger_client, owner):
    conversation = ConversationFactory(owner=owner)
    assert save(stranger_client, conversation, system_prompt="pwned").status_code == 404
    conversation.refresh_from_db()
    assert conversation.system_prompt == "You are a test assistant."


def test_a_new_conversation_gets_the_defaults(owner_client, fake_openai, settings):
    settings.CHAT_SYSTEM_PROMPT = "Default prompt."
    fake_openai.script(Reply(tokens=["hi"]))
    send(owner_client, "First")
    conversation = Conversation.objects.get()
    assert (conversation.model, conversation.system_prompt) == ("fake-model", "Default prompt.")
    assert conversation.temperature is None and conversation.max_tokens is None
    reply = finished(last_reply())
    assert reply.system_prompt == "Default prompt."
    assert fake_openai.requests[-1]["messages"][0]["content"] == "Default prompt."


def test_the_new_chat_page_sends_the_first_message_with_its_settings(
    owner_client, fake_openai, two_models
):
    html = owner_client.get(reverse("chat")).content.decode()
    assert '<details class="composer-settings"' in html
    assert '<option value="other-model">other-model</option>' in html
    fake_openai.script(Reply(tokens=["hi"]))
    data = {
        "content": "Hello",
        "model": "other-model",
        "system_prompt": "",
        "temperature": "0.2",
        "max_tokens": "64",
    }
    assert owner_client.post(reverse("send_new"), data, **HTMX).status_code == 200
    conversation = Conversation.objects.get()
    assert conversation.model == "other-model" and conversation.system_prompt == ""
    finished(last_reply())
    request = fake_openai.requests[-1]
    assert (request["model"], request["temperature"], request["max_tokens"]) == (
        "other-model",
        0.2,
        64,
    )
    assert request["messages"] == [{"role": "user", "content": "Hello"}]


def test_the_new_chat_page_refuses_an_unknown_model(owner_client):
    data = {"content": "Hello", "model": "nope"}
    response = owner_client.post(reverse("send_new"), data, **HTMX)
    assert response.status_code == 422
    assert "is not a model this server offers" in response.content.decode()
    assert Message.objects.count() == 0
