"""A reasoning model's thinking in real Chromium: a "Thinking…" block that streams, folds
into "Thought for N s" when the answer begins, and reopens after a reload; without
JavaScript, the reply page after the redirect has it in a <details>.

Same rules as the other browser tests (see tests/browser/support.py): no ORM calls while a
browser is open.
"""

from __future__ import annotations

import re

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

THINKING = [
    "First I add *two* ",
    "and two.\n\n",
    "That makes <b>four</b>, ",
    "which I check ",
    "once more.",
]

# One look at the reply while it streams: its thinking block and its answer.
LOOK = """() => {
  const reply = [...document.querySelectorAll('#thread [data-role=assistant]')].pop();
  const block = reply && reply.querySelector('details.reasoning');
  if (!block) return null;
  return {
    status: reply.dataset.status,
    hidden: block.hidden,
    open: block.open,
    title: block.querySelector('summary').textContent.trim(),
    thinking: block.querySelector('.reasoning-body').textContent,
    bold: block.querySelectorAll('b').length,
    em: block.querySelectorAll('em').length,
    answer: reply.querySelector('.msg-body').textContent,
  };
}"""


def test_the_thinking_streams_folds_when_the_answer_starts_and_reopens_after_reload(
    page, chromium, fake_openai
):
    fake_openai.script(
        Reply(reasoning=THINKING, tokens=["It is ", "**4**", "."], first_delay=0.2, delay=0.4)
    )
    log_in(page)
    mark_document(page)
    composer(page).fill("What is 2+2?")
    composer(page).press("Enter")

    # Thinking, live: open, titled "Thinking…", more of it as it comes, no answer yet.
    seen = page.wait_for_function(
        f"() => {{ const s = ({LOOK})(); return s && !s.hidden && s.thinking.includes('two') && s; }}"
    ).json_value()
    assert seen["open"] and seen["title"] == "Thinking…" and seen["answer"] == "", seen
    assert seen["status"] == "streaming", seen
    assert seen["em"] == 1, seen  # rendered as Markdown by the server
    later = page.wait_for_function(
        f"() => {{ const s = ({LOOK})(); return s && s.thinking.includes('makes') && s; }}"
    ).json_value()
    assert later["open"] and later["answer"] == "" and later["bold"] == 0, later
    assert "<b>four</b>" in later["thinking"], later  # the model's tags are text

    # The answer begins: the block folds, titled with how long it took.
    folded = page.wait_for_function(
        f"() => {{ const s = ({LOOK})(); return s && s.answer.includes('It is') && s; }}"
    ).json_value()
    assert not folded["open"], folded
    assert re.fullmatch(r"Thought for \d+ s", folded["title"]), folded
    assert folded["status"] == "streaming", folded

    # Reopened by a click while the answer streams: it stays open when the reply ends.
    reply = last_reply(page)
    reply.locator("details.reasoning summary").click()
    expect(reply.locator("details.reasoning")).to_have_attribute("open", "")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".msg-body")).to_have_text("It is 4.")
    block = reply.locator("details.reasoning")
    expect(block).to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text(re.compile(r"Thought for \d+ s · 5 tokens"))
    expect(block.locator(".reasoning-body")).to_contain_text("which I check once more.")
    assert_streams_closed(page)
    assert_same_document(page)

    # After a reload: still there, folded, and it opens again.
    page.reload()
    block = last_reply(page).locator("details.reasoning")
    expect(block).to_be_visible()
    expect(block).not_to_have_attribute("open", "")
    expect(block.locator(".reasoning-body")).not_to_be_visible()
    block.locator("summary").click()
    expect(block.locator(".reasoning-body")).to_be_visible()
    expect(block.locator(".reasoning-body em")).to_have_text("two")
    expect(last_reply(page).locator(".msg-body")).to_have_text("It is 4.")


def test_an_answer_that_proves_to_be_thinking_moves_into_the_block(page, fake_openai):
    fake_openai.script(
        Reply(
            reasoning=["Okay, the user ", "asks for ", "the sum."],
            reasoning_format="think_unopened",
            tokens=["Four", "."],
            first_delay=0.2,
            delay=0.5,
        )
    )
    log_in(page)
    composer(page).fill("2+2, briefly")
    composer(page).press("Enter")
    # Nothing said it was thinking: shown as the answer at first...
    page.wait_for_function(
        f"() => {{ const s = ({LOOK})(); return s && s.answer.includes('Okay'); }}"
    )
    # ...then, at </think>, moved whole into the thinking block; the answer starts anew.
    moved = page.wait_for_function(
        f"() => {{ const s = ({LOOK})(); return s && s.answer.includes('Four') && s; }}"
    ).json_value()
    assert "Okay" not in moved["answer"], moved
    assert "Okay, the user asks for the sum." in moved["thinking"], moved
    assert not moved["hidden"], moved
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".msg-body")).to_have_text("Four.")
    expect(reply.locator("details.reasoning .reasoning-body")).to_have_text(
        "Okay, the user asks for the sum.", use_inner_text=False
    )


def test_without_javascript_the_reply_page_shows_the_thinking_in_a_details_block(
    chromium, fake_openai
):
    fake_openai.script(Reply(reasoning=["Plain ", "*HTML* thinking."], tokens=["Done."]))
    page = chromium.new_context(java_script_enabled=False).new_page()
    log_in(page)
    composer(page).fill("Think without scripts")
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    block = reply.locator("details.reasoning")
    expect(block.locator("summary")).to_have_text(re.compile(r"Thought for \d+ s"))
    expect(block.locator(".reasoning-body")).not_to_be_visible()
    block.locator("summary").click()  # <details> opens by itself
    expect(block.locator(".reasoning-body")).to_be_visible()
    expect(block.locator(".reasoning-body em")).to_have_text("HTML")
    expect(reply.locator(".msg-body")).to_have_text("Done.")
