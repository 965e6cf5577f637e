"""Rich replies and look & feel in real Chromium: rendered Markdown with code blocks and their
Copy buttons, the theme menu, the phone menu, keyboard shortcuts, reply-end announcements.

Same rules as the other browser tests (see tests/browser/support.py): no ORM calls while a
browser is open except through `orm`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import composer, expect, last_reply, log_in, orm
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CODE = 'def greet(name):\n    return f"Hello, {name}!"  # <b>not bold</b>'
ANSWER = f"""## A greeting

Here is **one way**:

```python
{CODE}
```

| Step | What |
| --- | --- |
| 1 | call it |"""

LIGHT_BG = "rgb(255, 255, 255)"
DARK_BG = "rgb(22, 24, 29)"


def _tokens(text: str) -> list[str]:
    tokens = re.findall(r"\s*\S+", text)
    assert "".join(tokens) == text
    return tokens


def _background(page: Any, selector: str = "body") -> str:
    return page.evaluate(
        f"() => getComputedStyle(document.querySelector({selector!r})).backgroundColor"
    )


def test_a_code_block_renders_highlighted_with_a_copy_button_that_copies(chromium, fake_openai):
    fake_openai.script(Reply(tokens=_tokens(ANSWER), delay=0.08))
    context = chromium.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    log_in(page)
    composer(page).fill("Write me a greeting function")
    composer(page).press("Enter")

    # While it streams the reply is already rendered: the code block is one before it ends.
    reply = last_reply(page)
    page.wait_for_function(
        """() => {
          const reply = [...document.querySelectorAll('#thread [data-role=assistant]')].pop();
          const body = reply && reply.querySelector('.msg-body');
          return !!body && reply.dataset.status === 'streaming' && body.querySelector('.code-block pre code')
            && body.querySelector('h2') && !body.textContent.includes('```');
        }"""
    )
    expect(reply).to_have_attribute("data-status", "complete")
    expect(page.locator("#announcer")).to_have_text("Reply finished.")
    body = reply.locator(".msg-body")
    expect(body.locator("h2")).to_have_text("A greeting")
    expect(body.locator("strong")).to_have_text("one way")
    expect(body.locator("table td")).to_have_text(["1", "call it"])
    expect(body.locator("pre code")).to_have_text(CODE)
    expect(body.locator("pre code span.k").first).to_have_text("def")
    expect(body.locator("b")).to_have_count(0)
    expect(body.locator(".code-lang")).to_have_text("python")

    copy = body.locator("button.copy")
    expect(copy).to_have_accessible_name("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == CODE
    expect(copy).to_have_text("Copy")

    # The same on a fresh page load.
    page.evaluate("() => navigator.clipboard.writeText('something else')")
    page.reload()
    copy = last_reply(page).locator("button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == CODE
    # A finished reply on a loaded page is not announced again.
    expect(page.locator("#announcer")).to_have_text("")


def test_a_stopped_reply_is_announced_once(page, chromium, fake_openai):
    fake_openai.script(Reply(tokens=[f"w{i} " for i in range(60)], delay=0.1))
    log_in(page)
    composer(page).fill("Go on")
    composer(page).press("Enter")
    expect(last_reply(page).locator(".msg-body")).to_contain_text("w2 ")
    expect(page.locator("#announcer")).to_have_text("")
    # Tokens are not read out: the body is busy while it grows.
    expect(last_reply(page).locator(".msg-body")).to_have_attribute("aria-busy", "true")
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(page.locator("#announcer")).to_have_text("Reply stopped.")
    assert fake_openai.disconnected.wait(5)


def test_the_theme_follows_the_system_and_a_choice_persists(chromium, fake_openai):
    fake_openai.script(Reply(tokens=_tokens(ANSWER), delay=0.001))
    context = chromium.new_context(color_scheme="light")
    page = context.new_page()
    log_in(page)
    composer(page).fill("Code please")
    composer(page).press("Enter")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    theme = page.get_by_label("Theme")
    expect(theme).to_have_value("system")
    assert _background(page) == LIGHT_BG
    light_code = _background(page, ".highlight")

    # System preference: dark follows it.
    page.emulate_media(color_scheme="dark")
    assert _background(page) == DARK_BG
    assert _background(page, ".highlight") != light_code

    # A choice wins over the system, and is remembered across a reload.
    page.emulate_media(color_scheme="light")
    theme.select_option("dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert _background(page) == DARK_BG
    dark_code = _background(page, ".highlight")
    assert dark_code != light_code
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_label("Theme")).to_have_value("dark")
    assert _background(page) == DARK_BG
    assert _background(page, ".highlight") == dark_code

    page.get_by_label("Theme").select_option("light")
    page.emulate_media(color_scheme="dark")
    page.reload()
    assert _background(page) == LIGHT_BG
    page.get_by_label("Theme").select_option("system")
    expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile(".*"))
    assert _background(page) == DARK_BG
    page.reload()
    assert _background(page) == DARK_BG
    assert page.evaluate("() => localStorage.getItem('chatsite-theme')") is None


def test_the_theme_is_applied_before_the_page_is_parsed(chromium, fake_openai):
    """No flash: the stored theme is on <html> before <body> exists (theme.js blocks)."""
    context = chromium.new_context(color_scheme="light")
    context.add_init_script(
        """
        window.__themeAtBody = "unseen";
        new MutationObserver((_, observer) => {
          if (document.body) {
            window.__themeAtBody = document.documentElement.dataset.theme || "none";
            observer.disconnect();
          }
        }).observe(document, {childList: true, subtree: true});
        """
    )
    page = context.new_page()
    log_in(page)
    page.get_by_label("Theme").select_option("dark")
    page.reload()
    assert page.evaluate("() => window.__themeAtBody") == "dark"


def test_on_a_phone_the_conversation_list_folds_behind_a_button(chromium, fake_openai, owner):
    from tests.support.factories import ConversationFactory

    orm(lambda: [ConversationFactory(owner=owner, title=f"Topic {i}") for i in range(3)])
    page = chromium.new_context(viewport={"width": 375, "height": 700}).new_page()
    log_in(page)
    toggle = page.get_by_role("button", name="Conversations", exact=True)
    conversations = page.locator("#sidebar-list")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_have_attribute("aria-controls", "sidebar-list")
    expect(conversations).to_be_hidden()
    # The composer is close to the top, not pushed down by the list.
    assert composer(page).bounding_box()["y"] < 700

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(conversations).to_be_visible()
    expect(conversations.get_by_role("link")).to_have_text(["Topic 2", "Topic 1", "Topic 0"])
    toggle.click()
    expect(conversations).to_be_hidden()
    toggle.click()
    conversations.get_by_role("link", name="Topic 1").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page.locator("#sidebar-list")).to_be_hidden()

    # On a wide screen there is no toggle: the list is always there.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(toggle).to_be_hidden()
    expect(page.locator("#sidebar-list")).to_be_visible()

    # Without JavaScript a link opens the list.
    nojs = chromium.new_context(
        java_script_enabled=False, viewport={"width": 375, "height": 700}
    ).new_page()
    log_in(nojs)
    expect(nojs.locator("#sidebar-list")).to_be_hidden()
    expect(nojs.get_by_role("button", name="Conversations", exact=True)).to_be_hidden()
    nojs.get_by_role("link", name="Conversations", exact=True).click()
    expect(nojs.locator("#sidebar-list")).to_be_visible()
    expect(nojs.get_by_label("Theme")).to_be_hidden()


def test_keyboard_shortcuts_and_the_help_dialog(page, chromium, fake_openai):
    fake_openai.script(Reply(tokens=["Hi", "."], delay=0.01))
    log_in(page)
    box = composer(page)
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")

    # "?" outside the message box opens the list of shortcuts; Esc closes it.
    page.locator("body").click(position={"x": 700, "y": 10})
    expect(box).not_to_be_focused()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("New chat")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # "/" focuses the message box, and is not typed into it.
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    # Typing "?" and "/" in the box types them.
    page.keyboard.type("why? a/b")
    expect(box).to_have_value("why? a/b")
    expect(dialog).to_be_hidden()
    # Ctrl+/ opens the list even while typing; its Close button closes it.
    page.keyboard.press("Control+/")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Shift+Esc comes back to the message box from anywhere.
    page.get_by_role("link", name="New chat").focus()
    page.keyboard.press("Shift+Escape")
    expect(box).to_be_focused()

    # The ? button opens the list too.
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")

    # Focus rings are visible on keyboard focus.
    page.get_by_role("link", name="New chat").focus()
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline == ["solid", "2px"], outline

    # Ctrl+Shift+O starts a new chat from a conversation.
    box.fill("Hello")
    box.press("Enter")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#thread [data-role]")).to_have_count(0)
