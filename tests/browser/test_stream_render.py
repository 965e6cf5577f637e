"""A streaming reply shows as Markdown while it grows, in real Chromium.

Same rules as the other browser tests (see tests/browser/support.py): no ORM calls while a
browser is open.
"""

from __future__ import annotations

import pytest

from tests.browser.support import (
    assert_same_document,
    assert_streams_closed,
    composer,
    expect,
    last_reply,
    log_in,
    mark_document,
)
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CODE = "def f():\n    return '<b>x</b>'\n\nprint(f())"
TOKENS = [
    "Before the code.\n\n",
    "```python\n",
    "def f():\n",
    "    return '<b>x</b>'\n",
    "\n",
    "print(f())\n",
    # The fence stays open a while: several samples see the partial code block.
    "```\n",
    "\nAfter the *code*.",
]

# One consistent look at the page while the reply streams.
STREAMING_WITH_CODE = """() => {
  const reply = [...document.querySelectorAll('#thread [data-role=assistant]')].pop();
  const body = reply && reply.querySelector('.msg-body');
  const code = body && body.querySelector('.code-block pre code');
  if (!code || !code.textContent || reply.dataset.status !== 'streaming') return null;
  const composer = document.getElementById('composer');
  const stop = reply.querySelector('button.stop');
  return {
    code: code.textContent,
    text: body.textContent,
    bold: body.querySelectorAll('b').length,
    // The open block (a fence not closed yet) is the last thing in the reply.
    endsWithCode: body.lastElementChild.classList.contains('md-tail') &&
      !!body.lastElementChild.lastElementChild &&
      body.lastElementChild.lastElementChild.classList.contains('code-block'),
    // Everything after the body is outside the code block: the reply's own controls...
    stopVisible: !!stop && stop.checkVisibility() && !stop.closest('pre'),
    // ...and the rest of the page.
    pres: [...document.querySelectorAll('pre')].every(pre => body.contains(pre)),
    composerOutside: !!composer && !body.contains(composer) && !composer.closest('pre'),
    composerVisible: !!composer && composer.checkVisibility(),
    sidebarVisible: document.getElementById('sidebar-list').checkVisibility(),
    connected: reply.hasAttribute('sse-connect'),
    live: body.getAttribute('aria-live'),
    busy: body.getAttribute('aria-busy'),
  };
}"""


def test_a_fenced_code_block_shows_as_code_while_the_reply_streams(page, chromium, fake_openai):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    fake_openai.script(Reply(tokens=TOKENS, delay=0.4))
    log_in(page)
    mark_document(page)
    composer(page).fill("Show me code")
    composer(page).press("Enter")

    seen = page.wait_for_function(STREAMING_WITH_CODE, timeout=10_000).json_value()
    # A code block, before `done`, with the code so far as code, not as markup.
    assert seen["code"] and CODE.startswith(seen["code"].rstrip("\n")), seen
    assert "```" not in seen["text"] and "Before the code." in seen["text"], seen
    assert seen["bold"] == 0 and seen["endsWithCode"], seen
    assert seen["stopVisible"] and seen["pres"], seen
    assert seen["composerOutside"] and seen["composerVisible"] and seen["sidebarVisible"], seen
    assert seen["connected"] and seen["live"] == "off" and seen["busy"] == "true", seen

    # Once done the final rendering replaces it, and its Copy button copies the whole code.
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    body = reply.locator(".msg-body")
    expect(body).to_have_attribute("aria-live", "polite")
    expect(body).to_have_attribute("aria-busy", "false")
    expect(body.locator("pre code")).to_have_text(CODE)
    expect(body.locator("em")).to_have_text("code")
    expect(page.locator("#announcer")).to_have_text("Reply finished.")
    copy = body.locator("button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == CODE
    assert_streams_closed(page)
    assert_same_document(page)
    assert len(chromium.stream_requests(reply.get_attribute("data-message"))) == 1
