"""Automatic titles: asked of the model after the first exchange, never over the user's own."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from conversations.chat import titles
from conversations.generation.runner import runner
from conversations.models import Conversation, Message
from conversations.web.chat import render_message
from tests.support.factories import ConversationFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, send


def _rename(client, conversation, title, *, htmx=True):
    url = reverse("rename", args=[conversation.pk])
    return client.post(url, {"title": title}, **(HTMX if htmx else {}))


@pytest.fixture
def auto_titles(settings):
    settings.CHAT_AUTO_TITLE = True
    settings.CHAT_TITLE_TIMEOUT = 2


def _first_exchange(client, fake_openai, *replies: Reply) -> Conversation:
    fake_openai.script(Reply(tokens=["Paris", " is the capital."]), *replies)
    send(client, "What is the capital of France, and why?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert runner.wait_idle(10)
    conversation = reply.conversation
    conversation.refresh_from_db()
    return conversation


@pytest.mark.django_db(transaction=True)
def test_it_titles_a_conversation_after_its_first_exchange(owner_client, fake_openai, auto_titles):
    conversation = _first_exchange(
        owner_client, fake_openai, Reply(tokens=['Title: "French', " capital", '."\n', "More"])
    )
    assert conversation.title == "French capital"
    assert not conversation.title_set_by_user
    # A small, bounded request: the instruction and the question, asked plainly (a
    # transcript made small local models comment on the answer instead).
    request = fake_openai.requests[1]
    assert request["max_tokens"] == 20
    assert request["temperature"] == pytest.approx(0.2)
    assert request["messages"][0]["role"] == "system"
    assert "What is the capital of France" in request["messages"][1]["content"]
    assert request["messages"][1]["content"].startswith("Write a title of 3 to 6 words")
    assert "Paris is the capital." not in request["messages"][1]["content"]
    # The page shows it.
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "<title>French capital · chatsite</title>" in page
    assert f'data-conversation="{conversation.pk}" aria-current="page">French capital</a>' in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "title_reply",
    [
        Reply(status=500),
        Reply(status=429),
        Reply(tokens=["Too", " late"], first_delay=4),  # past CHAT_TITLE_TIMEOUT
        Reply(tokens=["  ", "\n", '""']),  # nothing usable
    ],
    ids=["server-error", "rate-limited", "timeout", "empty"],
)
def test_a_failed_title_request_leaves_the_first_words_silently(
    owner_client, fake_openai, auto_titles, title_reply
):
    conversation = _first_exchange(owner_client, fake_openai, title_reply)
    assert len(fake_openai.requests) == 2
    assert conversation.title == "What is the capital of France, and why?"
    assert not conversation.title_set_by_user
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.COMPLETE
    assert reply.error == ""
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert 'role="alert"' not in page.replace('id="composer-error" role="alert"></p>', "")


def _title_in_flight(client, fake_openai) -> Message:
    """A first reply done, and the request for the conversation's title still running."""
    fake_openai.script(
        Reply(tokens=["An answer."]), Reply(tokens=["Automatic", " title"], first_delay=1.0)
    )
    send(client, "A question")
    reply = last_reply()
    live = runner.get(reply.pk)
    # None: the short answer has already ended and left the runner.
    assert live is None or live.wait_done(10)
    fake_openai.wait_for_requests(2)
    return reply


@pytest.mark.django_db(transaction=True)
def test_it_never_overwrites_a_title_the_user_set_even_while_the_title_is_asked_for(
    owner_client, fake_openai, auto_titles
):
    reply = _title_in_flight(owner_client, fake_openai)
    assert _rename(owner_client, reply.conversation, "Mine").status_code == 200
    assert runner.wait_idle(10)
    conversation = Conversation.objects.get(pk=reply.conversation_id)
    assert conversation.title == "Mine"
    assert conversation.title_set_by_user


@pytest.mark.django_db(transaction=True)
def test_a_renamed_conversation_is_not_sent_for_a_title(
    owner_client, owner, fake_openai, auto_titles
):
    conversation = ConversationFactory(owner=owner, title="Chosen", title_set_by_user=True)
    fake_openai.script(Reply(tokens=["Fine."]))
    send(owner_client, "Hello", conversation)
    finished(last_reply())
    assert len(fake_openai.requests) == 1
    conversation.refresh_from_db()
    assert conversation.title == "Chosen"


@pytest.mark.django_db(transaction=True)
def test_later_turns_do_not_ask_for_a_title_again(owner_client, fake_openai, auto_titles):
    conversation = _first_exchange(owner_client, fake_openai, Reply(tokens=["Capitals"]))
    assert conversation.title == "Capitals"
    fake_openai.script(Reply(tokens=["Second answer."]), Reply(tokens=["Other title"]))
    send(owner_client, "And Spain?", conversation)
    finished(last_reply())
    assert runner.wait_idle(10)
    assert len(fake_openai.requests) == 3
    conversation.refresh_from_db()
    assert conversation.title == "Capitals"


@pytest.mark.django_db(transaction=True)
def test_the_finished_first_reply_asks_the_page_to_fetch_the_new_title(
    owner_client, fake_openai, auto_titles
):
    conversation = _first_exchange(owner_client, fake_openai, Reply(tokens=["Capitals"]))
    first = conversation.messages.get(role=Message.Role.ASSISTANT)
    title_url = reverse("conversation_title", args=[conversation.pk])
    # The `done` event carries the reply's final HTML: for the first reply it fetches the title.
    assert f'hx-get="{title_url}" hx-trigger="load"' in render_message(first.pk)
    response = owner_client.get(title_url, **HTMX)
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {
        "chatsite:title": {"id": conversation.pk, "title": "Capitals"}
    }
    # Later replies do not.
    fake_openai.script(Reply(tokens=["More."]))
    send(owner_client, "More?", conversation)
    second = finished(last_reply())
    assert "title-poll" not in render_message(second.pk)


@pytest.mark.django_db
def test_a_stranger_cannot_read_my_title(stranger_client, owner):
    conversation = ConversationFactory(owner=owner)
    url = reverse("conversation_title", args=[conversation.pk])
    assert stranger_client.get(url, **HTMX).status_code == 404


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Trip to Lisbon", "Trip to Lisbon"),
        ('"Trip to Lisbon."', "Trip to Lisbon"),
        ("Title: Trip to Lisbon\nHere is why…", "Trip to Lisbon"),
        ("**Title:** “Trip”", "Trip"),
        ("\n\n  spaced   out  \n", "spaced out"),
        ("x" * 80, "x" * 59 + "…"),
        ("", ""),
    ],
)
def test_a_model_answer_is_cleaned_into_a_title(answer, title):
    assert titles.clean_title(answer) == title


@pytest.mark.django_db(transaction=True)
def test_a_conversation_deleted_while_its_title_is_awaited_answers_404(
    owner_client, owner, fake_openai, auto_titles
):
    """One tab waits for the automatic title while another deletes the conversation."""
    import threading

    from django.test import Client

    reply = _title_in_flight(owner_client, fake_openai)
    waiting = Client()
    waiting.force_login(owner)
    answers: list[int] = []
    url = reverse("conversation_title", args=[reply.conversation_id])
    tab = threading.Thread(target=lambda: answers.append(waiting.get(url, **HTMX).status_code))
    tab.start()
    deleted = owner_client.post(reverse("delete", args=[reply.conversation_id]), **HTMX)
    assert deleted.status_code in (200, 204, 302)
    tab.join(15)
    assert answers == [404]
    assert runner.wait_idle(10)
