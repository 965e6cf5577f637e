"""Managing history: renaming and deleting conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from conversations.generation.runner import runner
from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, last_reply, log_events, send

# --- Rename -------------------------------------------------------------------------------


def _rename(client, conversation, title, *, htmx=True):
    url = reverse("rename", args=[conversation.pk])
    return client.post(url, {"title": title}, **(HTMX if htmx else {}))


@pytest.mark.django_db
def test_it_renames_a_conversation_and_tells_the_page(owner_client, owner):
    conversation = ConversationFactory(owner=owner, title="First words of the…")
    response = _rename(owner_client, conversation, "  Trip to Lisbon  ")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="conversation-header"' in html
    assert "Trip to Lisbon" in html
    event = json.loads(response["HX-Trigger"])["chatsite:title"]
    assert event == {"id": conversation.pk, "title": "Trip to Lisbon"}
    conversation.refresh_from_db()
    assert conversation.title == "Trip to Lisbon"
    assert conversation.title_set_by_user


@pytest.mark.django_db
def test_it_renames_without_javascript_and_redirects_back(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    response = _rename(owner_client, conversation, "Plain form", htmx=False)
    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "<title>Plain form · chatsite</title>" in page
    assert '<h1 id="conversation-title" class="conv-title">Plain form</h1>' in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "error"),
    [
        ("", "Give the conversation a title."),
        ("   ", "Give the conversation a title."),
        ("x" * 201, "the limit is 200 characters and it has 201"),
    ],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_it_refuses_an_empty_or_too_long_title_with_an_inline_error(
    owner_client, owner, title, error, htmx
):
    conversation = ConversationFactory(owner=owner, title="Keep me")
    response = _rename(owner_client, conversation, title, htmx=htmx)
    assert response.status_code == 422
    html = response.content.decode()
    assert error in html
    assert 'role="alert"' in html
    assert '<details class="conv-rename" open>' in html
    if not htmx:
        assert 'id="composer"' in html  # the whole page, form open with its error
    conversation.refresh_from_db()
    assert conversation.title == "Keep me"
    assert not conversation.title_set_by_user


@pytest.mark.django_db
def test_it_accepts_a_title_of_exactly_200_characters(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    assert _rename(owner_client, conversation, "y" * 200).status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "y" * 200


@pytest.mark.django_db
def test_a_stranger_cannot_rename_my_conversation(stranger_client, owner):
    conversation = ConversationFactory(owner=owner, title="Mine")
    assert _rename(stranger_client, conversation, "Yours now").status_code == 404
    assert _rename(stranger_client, conversation, "Yours now", htmx=False).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


@pytest.mark.django_db
def test_rename_only_accepts_post(owner_client, owner):
    conversation = ConversationFactory(owner=owner)
    assert owner_client.get(reverse("rename", args=[conversation.pk])).status_code == 405


# --- Delete -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_asks_for_confirmation_on_a_page_that_works_without_javascript(owner_client, owner):
    question = MessageFactory(conversation__owner=owner, conversation__title="Tax <b>notes</b>")
    ReplyFactory(conversation=question.conversation, parent=question)
    url = reverse("delete", args=[question.conversation_id])
    response = owner_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Delete “Tax &lt;b&gt;notes&lt;/b&gt;”?" in html
    assert "its 2 messages" in html
    assert f'<form method="post" action="{url}">' in html
    assert Conversation.objects.filter(pk=question.conversation_id).exists()
    # The conversation page links to it, and htmx asks before posting.
    page = owner_client.get(question.conversation.get_absolute_url()).content.decode()
    assert f'href="{url}" hx-post="{url}" hx-confirm="Delete' in page


@pytest.fixture
def log_path() -> Path:
    return Path(django_settings.CHAT_LOG_FILE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
def test_deleting_removes_the_conversation_and_its_messages_and_logs_it(
    owner_client, owner, log_path, htmx
):
    keep = MessageFactory(conversation__owner=owner)
    question = MessageFactory(conversation__owner=owner, conversation__title="Old plans")
    ReplyFactory(conversation=question.conversation, parent=question)
    MessageFactory(conversation=question.conversation)
    conversation_id = question.conversation_id
    before = len(log_events(log_path))

    url = reverse("delete", args=[conversation_id])
    response = owner_client.post(url, **(HTMX if htmx else {}))

    if htmx:
        assert response["HX-Redirect"] == reverse("chat")
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse("chat")
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    assert not Message.objects.filter(conversation_id=conversation_id).exists()
    assert Message.objects.filter(pk=keep.pk).exists()
    events = [e for e in log_events(log_path)[before:] if e["event"] == "deleted"]
    assert len(events) == 1
    assert events[0]["user"] == "alice"
    assert events[0]["conversation"] == conversation_id
    assert events[0]["title"] == "Old plans"
    assert events[0]["messages"] == 3
    assert owner_client.get(reverse("conversation", args=[conversation_id])).status_code == 404


@pytest.mark.django_db
def test_a_stranger_cannot_see_or_delete_my_conversation(stranger_client, owner):
    question = MessageFactory(conversation__owner=owner)
    url = reverse("delete", args=[question.conversation_id])
    assert stranger_client.get(url).status_code == 404
    assert stranger_client.post(url).status_code == 404
    assert stranger_client.post(url, **HTMX).status_code == 404
    assert Message.objects.filter(pk=question.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_stops_a_reply_still_being_written_first(owner_client, fake_openai, log_path):
    fake_openai.script(Reply(tokens=["word "] * 200, delay=0.05))
    send(owner_client, "Write a long essay")
    reply = last_reply()
    fake_openai.wait_for_requests(1)
    live = runner.get(reply.pk)
    assert live is not None
    before = len(log_events(log_path))

    response = owner_client.post(reverse("delete", args=[reply.conversation_id]), **HTMX)

    assert response["HX-Redirect"] == "/"
    assert live.snapshot().done
    assert runner.wait_idle(5)
    assert not Message.objects.exists()
    assert not Conversation.objects.exists()
    events = log_events(log_path)[before:]
    assert [e["event"] for e in events] == ["reply", "deleted"]
    assert events[0]["status"] == "stopped"
    assert fake_openai.disconnected.wait(5)  # the request to the model was closed
