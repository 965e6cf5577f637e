"""The local model in real Chromium: no key, no server, the bundled SmolLM2 answers on the
page, streams, stops on request, and a second tab's reply says it is queued.

Same rules as the other browser tests (see tests/browser/support.py). Needs the local model
installed, as tests/llm/test_local_model.py does (skipped without it, failing in CI).
"""

from __future__ import annotations

import pytest

from conversations.generation.runner import runner
from tests.browser.support import composer, expect, last_reply, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.local_model,
    pytest.mark.django_db(transaction=True),
]


def test_the_local_model_answers_on_the_page(page, local_backend):
    log_in(page)
    expect(page.get_by_text("Local model: SmolLM2-135M-Instruct — offline.")).to_be_visible()
    composer(page).fill("Say hello.")
    composer(page).press("Enter")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=60_000)
    expect(reply.locator(".msg-body")).not_to_be_empty()
    expect(reply.locator(".msg-foot")).to_contain_text("SmolLM2-135M-Instruct (local)")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_stop_keeps_what_the_local_model_wrote(page, local_backend, settings):
    settings.CHAT_MAX_TOKENS = 2000
    log_in(page)
    composer(page).fill("Write a very long story about a dragon and a castle.")
    composer(page).press("Enter")
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).not_to_be_empty(timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    expect(reply).to_have_attribute("data-status", "stopped", timeout=15_000)
    expect(reply.locator(".msg-body")).not_to_be_empty()
    assert runner.wait_idle(15)


def test_a_reply_waiting_for_the_model_says_it_is_queued(chromium, page, local_backend, settings):
    settings.CHAT_MAX_TOKENS = 300
    log_in(page)
    composer(page).fill("Write a long poem about the sea.")
    composer(page).press("Enter")
    expect(last_reply(page).locator(".msg-body")).not_to_be_empty(timeout=60_000)
    # A second tab (same user, a new conversation) while the model is busy.
    other = chromium.new_context().new_page()
    log_in(other)
    composer(other).fill("And one about mountains.")
    composer(other).press("Enter")
    expect(last_reply(other).locator(".typing")).to_contain_text("Queued", timeout=10_000)
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(other)).to_have_attribute("data-status", "complete", timeout=60_000)
    assert runner.wait_idle(15)
