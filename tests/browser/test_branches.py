"""Branches in a real browser: regenerate, switch versions, edit and resend."""

from __future__ import annotations

import pytest

from tests.browser.support import (
    assert_same_document,
    composer,
    expect,
    expect_complete,
    last_reply,
    log_in,
    mark_document,
    replies,
)
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def bodies(tab):
    return tab.locator("#thread [data-role] .msg-body")


def ask_for_a_fact(page, fake_openai, *second_tokens: str, delay: float = 0.05) -> None:
    """Log in, ask a question, get "First answer."; the next reply (a regenerate) is scripted."""
    fake_openai.script(
        Reply(tokens=["First", " answer."], delay=0.02),
        Reply(tokens=list(second_tokens or ["Second", " answer."]), delay=delay),
    )
    log_in(page)
    composer(page).fill("Tell me a fact")
    composer(page).press("Enter")
    expect_complete(page, "First answer.")


def test_regenerate_then_switch_between_the_versions(page, chromium, fake_openai):
    ask_for_a_fact(page, fake_openai)
    mark_document(page)

    page.get_by_role("button", name="Regenerate").click()
    expect_complete(page, "Second answer.")
    expect(replies(page)).to_have_count(1)
    reply = last_reply(page)
    expect(reply.get_by_text("Version 2 of 2")).to_be_attached()
    expect(reply.get_by_role("button", name="Next version")).to_be_disabled()

    reply.get_by_role("button", name="Previous version").click()
    expect(bodies(page)).to_have_text(["Tell me a fact", "First answer."])
    reply = last_reply(page)
    expect(reply.get_by_text("Version 1 of 2")).to_be_attached()
    expect(reply.get_by_role("button", name="Previous version")).to_be_disabled()

    reply.get_by_role("button", name="Next version").click()
    expect(bodies(page)).to_have_text(["Tell me a fact", "Second answer."])
    assert_same_document(page)
    # The page shows what was saved: the version chosen last.
    page.reload()
    expect(bodies(page)).to_have_text(["Tell me a fact", "Second answer."])
    assert len(fake_openai.requests) == 2


def test_edit_a_message_and_resend(page, chromium, fake_openai):
    fake_openai.script(
        Reply(tokens=["About", " cats."], delay=0.02),
        Reply(tokens=["About", " dogs."], delay=0.05),
    )
    log_in(page)
    composer(page).fill("Tell me about cats")
    composer(page).press("Enter")
    expect_complete(page, "About cats.")
    mark_document(page)

    question = page.locator("#thread [data-role=user]")
    question.get_by_role("link", name="Edit message").click()
    box = page.get_by_role("textbox", name="Edit message")
    expect(box).to_have_value("Tell me about cats")
    box.fill("Tell me about dogs")
    page.get_by_role("button", name="Save & send").click()
    expect_complete(page, "About dogs.")
    expect(bodies(page)).to_have_text(["Tell me about dogs", "About dogs."])
    expect(question.get_by_text("Version 2 of 2")).to_be_attached()
    assert fake_openai.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Tell me about dogs"}
    ]

    # The original question and its answer are one click away.
    question.get_by_role("button", name="Previous version").click()
    expect(bodies(page)).to_have_text(["Tell me about cats", "About cats."])
    assert_same_document(page)


def test_cancelling_an_edit_restores_the_message(page, chromium, fake_openai):
    fake_openai.script(Reply(tokens=["Fine."], delay=0.02))
    log_in(page)
    composer(page).fill("Keep this text")
    composer(page).press("Enter")
    expect_complete(page, "Fine.")
    question = page.locator("#thread [data-role=user]")
    question.get_by_role("link", name="Edit message").click()
    expect(page.get_by_role("textbox", name="Edit message")).to_be_visible()
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("textbox", name="Edit message")).to_have_count(0)
    expect(bodies(page)).to_have_text(["Keep this text", "Fine."])
    assert len(fake_openai.requests) == 1


def test_switching_versions_by_keyboard_keeps_the_focus_in_place(page, chromium, fake_openai):
    ask_for_a_fact(page, fake_openai, delay=0.02)
    page.get_by_role("button", name="Regenerate").focus()
    page.keyboard.press("Enter")
    expect_complete(page, "Second answer.")
    # After Regenerate, focus stays on the reply (its version buttons), not the page body.
    focused = "() => document.activeElement && document.activeElement.getAttribute('aria-label')"
    expect(page.locator("#thread [data-role=assistant] .version-prev")).to_be_focused()
    page.keyboard.press("Enter")  # Previous version: the first answer
    expect(last_reply(page).locator(".msg-body")).to_have_text("First answer.")
    # The same control is disabled now (the first version): its neighbour has the focus.
    expect(page.locator("#thread [data-role=assistant] .version-next")).to_be_focused()
    assert page.evaluate(focused) == "Next version"
    page.keyboard.press("Enter")  # Next version: back to the second
    expect(last_reply(page).locator(".msg-body")).to_have_text("Second answer.")
    expect(
        page.locator("#thread [data-role=assistant] .version-next:not([disabled])")
    ).to_have_count(0)
    expect(page.locator("#thread [data-role=assistant] .version-prev")).to_be_focused()


def test_version_buttons_rest_while_a_reply_is_written(page, chromium, fake_openai):
    ask_for_a_fact(page, fake_openai, "Second", " answer", " comes", " slowly.", delay=0.5)
    page.get_by_role("button", name="Regenerate").click()
    # While it streams, switching away would be refused by the server: the buttons say so.
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    expect(page.locator("#thread .versions button.version-prev")).to_be_disabled()
    expect_complete(page, "Second answer comes slowly.")
    expect(page.locator("#thread .versions button.version-prev")).to_be_enabled()


def test_the_message_box_takes_the_focus_on_a_desktop_but_not_on_a_phone(chromium):
    desktop = chromium.new_context().new_page()
    log_in(desktop)
    desktop.goto("/")
    expect(composer(desktop)).to_be_focused()
    phone = chromium.new_context(viewport={"width": 375, "height": 740}).new_page()
    log_in(phone)
    phone.goto("/")
    expect(composer(phone)).to_be_visible()
    expect(composer(phone)).not_to_be_focused()
