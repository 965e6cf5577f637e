"""One reply at a time: two tabs sending at once, which failed reply may be retried, who may stop."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse

from conversations.models import Message
from tests.support.factories import PASSWORD, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_tabs_sending_at_once_start_exactly_one_reply(owner, fake_openai):
    conversation = MessageFactory(conversation__owner=owner).conversation
    fake_openai.script(Reply(tokens=["only", " one"], delay=0.2))
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def tab(text: str) -> None:
        client = Client()
        client.login(username=owner.username, password=PASSWORD)
        barrier.wait()
        statuses.append(send(client, text, conversation).status_code)
        close_old_connections()

    tabs = [threading.Thread(target=tab, args=(f"tab {i}",)) for i in range(2)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(20)
    assert sorted(statuses) == [200, 409]
    finished(last_reply())
    assert len(fake_openai.requests) == 1
    assert conversation.messages.filter(role="user").count() == 2  # the factory's + one tab's


def test_only_the_latest_failed_reply_can_be_retried(owner_client, owner):
    q1 = MessageFactory(conversation__owner=owner)
    failed = ReplyFactory(conversation=q1.conversation, parent=q1, status=Message.Status.ERROR)
    q2 = MessageFactory(conversation=q1.conversation)
    ReplyFactory(conversation=q1.conversation, parent=q2)
    response = owner_client.post(reverse("retry", args=[failed.conversation_id, failed.pk]), **HTMX)
    assert response.status_code == 400
    assert "Only the latest reply can be retried" in response.content.decode()
    assert Message.objects.count() == 4


def test_a_stranger_cannot_stop_someone_elses_live_reply(
    owner_client, stranger_client, fake_openai
):
    fake_openai.script(Reply(tokens=["mine "] * 10, delay=0.05))
    send(owner_client, "Private")
    reply = last_reply()
    response = stranger_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]))
    assert response.status_code == 404
    reply = finished(reply)
    assert reply.status == Message.Status.COMPLETE
    assert not fake_openai.disconnected.is_set()
