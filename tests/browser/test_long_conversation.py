"""A long conversation in a real browser: the newest messages, earlier ones on request."""

from __future__ import annotations

import pytest

from tests.browser.support import expect, log_in, orm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _long_conversation() -> int:
    from django.contrib.auth.models import User

    from conversations.models import Message
    from tests.support.factories import ConversationFactory

    conversation = ConversationFactory(owner=User.objects.get(username="alice"))
    parent = None
    for i in range(12):
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
            content=f"Message number {i}.",
            status=Message.Status.COMPLETE,
        )
    return conversation.pk


def test_show_earlier_messages_loads_them_in_place(page, settings):
    settings.CHAT_THREAD_PAGE = 5
    log_in(page)
    page.goto(f"/c/{orm(_long_conversation)}/")
    articles = page.locator("#thread > article")
    expect(articles).to_have_count(5)
    expect(articles.first).to_contain_text("Message number 7.")
    shown_at = page.url
    page.get_by_role("link", name="Show earlier messages (7)").click()
    expect(articles).to_have_count(10)
    expect(articles.first).to_contain_text("Message number 2.")
    assert page.url == shown_at  # swapped in place by htmx, not a new page
    page.get_by_role("link", name="Show earlier messages (2)").click()
    expect(articles).to_have_count(12)
    expect(articles.first).to_contain_text("Message number 0.")
    expect(page.get_by_role("link", name="Show earlier messages")).to_have_count(0)
