"""A huge conversation shows its newest messages; earlier ones come on request."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory
from tests.support.helpers import HTMX

pytestmark = pytest.mark.django_db


def _long(owner, count: int) -> tuple[Conversation, list[Message]]:
    conversation = ConversationFactory(owner=owner)
    messages: list[Message] = []
    parent = None
    for i in range(count):
        role = Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=role,
            content=f"Message number {i}.",
            status=Message.Status.COMPLETE,
        )
        messages.append(parent)
    return conversation, messages


def _shown(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<article id="m-(\d+)"', html)]


def test_the_page_shows_the_newest_part_of_a_long_branch(owner_client, owner, settings):
    settings.CHAT_THREAD_PAGE = 10
    conversation, messages = _long(owner, 25)
    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert _shown(html) == [m.pk for m in messages[-10:]]
    assert "Show earlier messages (15)" in html
    assert f"?before={messages[15].pk}#m-{messages[15].pk}" in html


def test_earlier_messages_come_without_javascript_as_a_longer_page(owner_client, owner, settings):
    settings.CHAT_THREAD_PAGE = 10
    conversation, messages = _long(owner, 25)
    response = owner_client.get(conversation.get_absolute_url(), {"before": messages[15].pk})
    html = response.content.decode()
    assert _shown(html) == [m.pk for m in messages[5:]]
    assert "Show earlier messages (5)" in html
    html = owner_client.get(
        conversation.get_absolute_url(), {"before": messages[5].pk}
    ).content.decode()
    assert _shown(html) == [m.pk for m in messages]
    assert "Show earlier messages" not in html


def test_earlier_messages_come_with_javascript_as_the_chunk_before(owner_client, owner, settings):
    settings.CHAT_THREAD_PAGE = 10
    conversation, messages = _long(owner, 25)
    url = reverse("earlier", args=[conversation.pk])
    html = owner_client.get(url, {"before": messages[15].pk}, **HTMX).content.decode()
    assert _shown(html) == [m.pk for m in messages[5:15]]
    assert "Show earlier messages (5)" in html
    html = owner_client.get(url, {"before": messages[5].pk}, **HTMX).content.decode()
    assert _shown(html) == [m.pk for m in messages[:5]]
    assert "Show earlier messages" not in html


def test_a_bad_or_foreign_before_is_ignored_and_a_stranger_gets_404(
    owner_client, stranger_client, owner, settings
):
    settings.CHAT_THREAD_PAGE = 10
    conversation, messages = _long(owner, 25)
    for before in ("x", "", "99999999999999999999", "-1"):
        html = owner_client.get(conversation.get_absolute_url(), {"before": before}).content
        assert _shown(html.decode()) == [m.pk for m in messages[-10:]]
    url = reverse("earlier", args=[conversation.pk])
    assert owner_client.get(url, {"before": "x"}, **HTMX).status_code == 302
    assert stranger_client.get(url, {"before": messages[15].pk}, **HTMX).status_code == 404


def test_a_long_conversation_costs_the_same_queries_as_a_short_one(
    owner_client, owner, settings, django_assert_max_num_queries
):
    settings.CHAT_THREAD_PAGE = 10
    conversation, _ = _long(owner, 400)
    with django_assert_max_num_queries(6):
        response = owner_client.get(conversation.get_absolute_url())
    assert response.status_code == 200
    assert len(_shown(response.content.decode())) == 10
