"""Managing history in a real browser: rename, delete, search, automatic titles."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.browser.support import (
    composer,
    expect,
    expect_complete,
    log_in,
    orm,
)
from tests.support.factories import PASSWORD
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _start_conversation(page, fake_openai, question: str, answer: str) -> str:
    fake_openai.script(Reply(tokens=[answer]))
    composer(page).fill(question)
    composer(page).press("Enter")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect_complete(page, answer)
    return urlsplit(page.url).path


def test_rename_and_delete_a_conversation(page, fake_openai):
    log_in(page)
    url = _start_conversation(page, fake_openai, "Plan a trip to Lisbon", "Sure.")
    header = page.locator("#conversation-header")
    expect(header.locator("#conversation-title")).to_have_text("Plan a trip to Lisbon")

    # An empty title is refused inline; nothing changes.
    header.get_by_text("Rename").click()
    box = page.get_by_role("textbox", name="New title")
    box.fill("   ")
    box.press("Enter")
    expect(
        page.get_by_role("alert").filter(has_text="Give the conversation a title.")
    ).to_be_visible()
    expect(page.locator("#conversation-title")).to_have_text("Plan a trip to Lisbon")

    # A real title shows in the header, the sidebar and the window title, without a reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    box = page.get_by_role("textbox", name="New title")
    box.fill("Lisbon in May")
    box.press("Enter")
    expect(page.locator("#conversation-title")).to_have_text("Lisbon in May")
    expect(page.locator(f'#sidebar-list a[href="{url}"]')).to_have_text("Lisbon in May")
    expect(page).to_have_title("Lisbon in May · chatsite")
    expect(page.get_by_role("textbox", name="New title")).to_be_hidden()
    assert page.evaluate("() => window.__sameDocument === true")
    page.reload()
    expect(page.locator("#conversation-title")).to_have_text("Lisbon in May")

    # Delete: dismissing the confirmation keeps it, accepting deletes it.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("link", name="Delete").click()
    expect(page).to_have_url(re.compile(re.escape(url) + "$"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("link", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#sidebar-list a[data-conversation]")).to_have_count(0)
    assert orm(_conversation_count) == 0
    assert page.goto(url).status == 404


def test_delete_without_javascript_uses_the_confirmation_page(chromium, fake_openai):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    conversation_id = orm(_make_conversation)
    page.goto(f"/c/{conversation_id}/")
    page.get_by_role("link", name="Delete").click()
    expect(page).to_have_url(re.compile(rf"/c/{conversation_id}/delete/$"))
    expect(page.get_by_role("heading", name="Delete “Old notes”?")).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/$"))
    assert orm(_conversation_count) == 0


def _conversation_count() -> int:
    from conversations.models import Conversation

    return Conversation.objects.count()


def _make_conversation() -> int:
    from django.contrib.auth.models import User

    from tests.support.factories import ConversationFactory, MessageFactory

    conversation = ConversationFactory(owner=User.objects.get(username="alice"), title="Old notes")
    MessageFactory(conversation=conversation, content="remember the milk")
    return conversation.pk


def test_search_and_open_a_result(page, fake_openai):
    log_in(page)
    _start_conversation(page, fake_openai, "Tell me about kiwi birds", "Kiwis cannot fly.")
    url = _start_conversation_new(page, fake_openai)
    search = page.get_by_role("searchbox", name="Search your conversations").first
    search.fill("cannot")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"/search/\?q=cannot$"))
    hits = page.locator('[data-hit="message"]')
    expect(hits).to_have_count(1)
    expect(hits.locator("mark")).to_have_text("cannot")
    hits.first.locator("a").click()
    # The branch holding it is shown (not saved: the URL says which).
    expect(page).to_have_url(re.compile(r"/c/\d+/\?m=\d+#m-\d+$"))
    anchor = urlsplit(page.url).fragment
    assert urlsplit(page.url).path != url
    expect(page.locator(f"#{anchor}")).to_be_in_viewport()
    expect(page.locator(f"#{anchor} .msg-body")).to_have_text("Kiwis cannot fly.")


def _start_conversation_new(page, fake_openai) -> str:
    page.get_by_role("link", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/$"))
    return _start_conversation(page, fake_openai, "Something else", "Another answer.")


def test_an_automatic_title_appears_once_the_first_reply_is_done(page, fake_openai, settings):
    settings.CHAT_AUTO_TITLE = True
    log_in(page)
    fake_openai.script(
        Reply(tokens=["Here", " is", " a", " recipe."], delay=0.1), Reply(tokens=["Pancake recipe"])
    )
    composer(page).fill("How do I make pancakes for four people?")
    composer(page).press("Enter")
    expect_complete(page, "Here is a recipe.")
    expect(page.locator("#conversation-title")).to_have_text("Pancake recipe")
    expect(page.locator("#sidebar-list a[aria-current=page]")).to_have_text("Pancake recipe")
    expect(page).to_have_title("Pancake recipe · chatsite")
