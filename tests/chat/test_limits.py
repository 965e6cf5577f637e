"""Per-user limits on generations (replies at once, replies per minute, tokens per day),
through the views and the fake model server: the inline message, the user's message saved,
no upstream call, other users unaffected, a user's own limits over the site's, 0: none."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Message, UserLimits
from tests.support.factories import PASSWORD, ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send

pytestmark = pytest.mark.django_db(transaction=True)


def _slow_reply_in_flight(client: Client, fake_openai) -> Message:
    """Send a message whose reply takes a while; return the reply, being written."""
    fake_openai.script(Reply(first_delay=1.5))
    send(client, "A slow one")
    fake_openai.wait_for_requests(1)
    reply = last_reply()
    assert reply.status in Message.IN_FLIGHT
    return reply


def test_over_replies_at_once_the_message_is_saved_and_its_reply_is_a_clear_error(
    owner_client, owner, fake_openai, settings
):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1
    slow = _slow_reply_in_flight(owner_client, fake_openai)

    response = send(owner_client, "A second question, in another chat")
    assert response.status_code == 200
    html = response.content.decode()
    assert "You have reached your limit of 1 reply at once." in html
    question = Message.objects.get(content="A second question, in another chat")
    refused = Message.objects.get(parent=question)
    assert refused.status == Message.Status.ERROR
    assert refused.error.startswith("You have reached your limit of 1 reply at once.")
    assert question.conversation.owner == owner
    finished(slow)
    assert len(fake_openai.requests) == 1  # the refused reply never reached the model

    # Once the first has finished, Retry generates it.
    fake_openai.script(Reply(tokens=["Now", " then."]))
    url = reverse("retry", args=[question.conversation_id, refused.pk])
    assert owner_client.post(url, **HTMX).status_code == 200
    assert finished(last_reply()).content == "Now then."
    assert len(fake_openai.requests) == 2


def test_replies_at_once_counts_one_user_only(
    owner_client, stranger_client, stranger, fake_openai, settings
):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1
    slow = _slow_reply_in_flight(owner_client, fake_openai)
    fake_openai.script(Reply(tokens=["Fine."]))
    send(stranger_client, "Mine is not limited by hers")
    reply = finished(Message.objects.filter(conversation__owner=stranger).get(role="assistant"))
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Fine."
    finished(slow)


def test_two_sends_at_the_same_instant_cannot_both_pass_the_limit(owner, fake_openai, settings):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1
    fake_openai.script(Reply(first_delay=1.0), Reply(first_delay=1.0))
    clients = [Client(), Client()]
    for client in clients:
        assert client.login(username=owner.username, password=PASSWORD)
    start = threading.Barrier(2)
    statuses: list[int] = []

    def post(client: Client) -> None:
        start.wait()
        statuses.append(send(client, "At once").status_code)

    threads = [threading.Thread(target=post, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert statuses == [200, 200]
    replies = list(Message.objects.filter(role="assistant"))
    assert sorted(r.status in Message.IN_FLIGHT for r in replies) == [False, True]
    assert Message.objects.filter(role="user").count() == 2
    for reply in replies:
        finished(reply)
    assert len(fake_openai.requests) == 1


def test_over_messages_per_minute_the_send_is_refused_with_its_text_kept(
    owner_client, owner, fake_openai, settings
):
    settings.CHAT_MAX_MESSAGES_PER_MINUTE = 2
    conversation = ConversationFactory(owner=owner)
    for text in ("One", "Two"):
        fake_openai.script(Reply(tokens=["Ok."]))
        send(owner_client, text, conversation)
        finished(last_reply())
    saved = Message.objects.count()
    log_before = len(log_events(django_settings.CHAT_LOG_FILE))

    response = send(owner_client, "Three, too fast", conversation)
    assert response.status_code == 429
    assert response["HX-Retarget"] == "#composer"
    html = response.content.decode()
    assert "You have reached your limit of 2 messages per minute. Try again in" in html
    assert "Three, too fast</textarea>" in html
    # Nothing saved, nothing logged, nothing asked of the model.
    assert Message.objects.count() == saved
    assert len(log_events(django_settings.CHAT_LOG_FILE)) == log_before
    assert len(fake_openai.requests) == 2

    # A retry counts as much as a send: refused too, under the composer.
    reply = last_reply()
    response = owner_client.post(reverse("retry", args=[conversation.pk, reply.pk]), **HTMX)
    assert response.status_code == 409
    assert "limit of 2 messages per minute" in response.content.decode()
    assert Message.objects.count() == saved

    # A minute later the window has moved on.
    Message.objects.update(created=timezone.now() - timedelta(seconds=61))
    fake_openai.script(Reply(tokens=["Ok."]))
    send(owner_client, "Three, later", conversation)
    assert finished(last_reply()).status == Message.Status.COMPLETE


def test_over_tokens_per_day_the_message_is_saved_and_the_reply_says_when_it_resets(
    owner_client, owner, stranger_client, stranger, fake_openai, settings
):
    settings.CHAT_MAX_TOKENS_PER_DAY = 17
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation)
    ReplyFactory(conversation=conversation, parent=question)  # 12 + 5 tokens, today
    yesterday = ConversationFactory(owner=stranger)
    old = ReplyFactory(conversation=yesterday, parent=MessageFactory(conversation=yesterday))
    Message.objects.filter(pk=old.pk).update(
        created=timezone.now() - timedelta(days=1), prompt_tokens=1000
    )

    response = send(owner_client, "Spent already", conversation)
    assert response.status_code == 200
    refused = last_reply()
    assert refused.status == Message.Status.ERROR
    assert refused.parent.content == "Spent already"
    assert "You have reached your limit of 17 tokens today (resets at 00:00 UTC on " in (
        refused.error
    )
    assert "limit of 17 tokens today" in response.content.decode()
    assert fake_openai.requests == []
    # Logged like any reply that ended in an error.
    event = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == refused.pk]
    assert [(e["event"], e["status"], e["user"]) for e in event] == [("reply", "error", "alice")]

    # Yesterday's tokens of another user count for nothing today.
    fake_openai.script(Reply(tokens=["Fine."]))
    send(stranger_client, "Not spent", yesterday)
    assert finished(last_reply()).status == Message.Status.COMPLETE


def test_an_edit_over_a_limit_is_saved_with_an_error_reply(
    owner_client, owner, fake_openai, settings
):
    settings.CHAT_MAX_TOKENS_PER_DAY = 10
    conversation = ConversationFactory(owner=owner)
    question = MessageFactory(conversation=conversation, content="Before")
    ReplyFactory(conversation=conversation, parent=question)
    url = reverse("edit", args=[conversation.pk, question.pk])
    response = owner_client.post(url, {"content": "After"}, **HTMX)
    assert response.status_code == 200
    edited = Message.objects.get(content="After")
    assert edited.parent_id == question.parent_id
    assert "limit of 10 tokens today" in Message.objects.get(parent=edited).error
    assert "limit of 10 tokens today" in response.content.decode()
    assert fake_openai.requests == []


def test_a_users_own_limits_take_precedence_over_the_sites(
    owner_client, owner, fake_openai, settings
):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1
    settings.CHAT_MAX_TOKENS_PER_DAY = 5
    UserLimits.objects.create(user=owner, concurrent_replies=0, tokens_per_day=None)
    # Her own 0: no limit of replies at once; blank tokens: the site's 5, not yet reached.
    fake_openai.script(Reply(first_delay=1.0), Reply(first_delay=1.0))
    send(owner_client, "First")
    send(owner_client, "Second")
    fake_openai.wait_for_requests(2)
    assert Message.objects.filter(role="assistant", status="error").count() == 0
    for reply in Message.objects.filter(role="assistant"):
        finished(reply)
    # Her replies used 5+ tokens: now the site's default stops her.
    send(owner_client, "Third")
    assert "limit of 5 tokens today" in last_reply().error
    # The staff give her no limit of tokens: her own 0 wins over the site's 5.
    UserLimits.objects.filter(user=owner).update(tokens_per_day=0)
    send(owner_client, "Fourth, after the staff lifted her limit")
    assert finished(last_reply()).status == Message.Status.COMPLETE


def test_no_limit_is_zero_everywhere(owner_client, fake_openai, settings):
    settings.CHAT_MAX_CONCURRENT_REPLIES = 0
    settings.CHAT_MAX_MESSAGES_PER_MINUTE = 0
    settings.CHAT_MAX_TOKENS_PER_DAY = 0
    fake_openai.script(*[Reply(first_delay=0.5) for _ in range(4)])
    for n in range(4):
        send(owner_client, f"Message {n}")
    fake_openai.wait_for_requests(4)
    for reply in Message.objects.filter(role="assistant"):
        assert finished(reply).status == Message.Status.COMPLETE
    assert Conversation.objects.count() == 4
