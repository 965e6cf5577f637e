"""The chat page in a real browser: Chromium (through Playwright) against uvicorn serving
chatsite, with the fake OpenAI-compatible server as the model. Everything the page loads
must come from the app on 127.0.0.1 (the `chromium` fixture checks).

No ORM calls while a browser is open except through `orm` (see tests/browser/support.py).
"""

from __future__ import annotations

import html
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.support import (
    assert_same_document,
    assert_streams_closed,
    composer,
    expect,
    expect_complete,
    last_reply,
    log_in,
    mark_document,
    orm,
    replies,
)
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# One consistent sample of the newest reply and the composer.
SAMPLE = """() => {
  const replies = document.querySelectorAll('#thread [data-role=assistant]');
  const reply = replies[replies.length - 1];
  const body = reply && reply.querySelector('.msg-body');
  const stop = reply && reply.querySelector('button.stop');
  const send = document.querySelector('#composer button[type=submit]');
  return {
    id: reply ? reply.id : null,
    status: reply ? reply.dataset.status : null,
    text: body ? body.textContent : null,
    busy: body ? body.getAttribute('aria-busy') : null,
    stopVisible: !!stop && stop.checkVisibility(),
    sendDisabled: !!send && send.disabled,
    // A live <meta http-equiv=refresh> would reload the page under the reader.
    refresh: document.querySelector('meta[http-equiv=refresh i]') !== null,
  };
}"""


def watch_stream(page: Any, full: str, n: int, timeout: float = 12.0) -> list[dict[str, Any]]:
    """Sample the `n`th reply, the newest, until it is no longer in flight; check each sample."""
    expect(replies(page)).to_have_count(n)
    samples = []
    deadline = time.monotonic() + timeout
    while True:
        sample = page.evaluate(SAMPLE)
        samples.append(sample)
        if sample["status"] not in ("pending", "streaming"):
            break
        assert time.monotonic() < deadline, f"reply still {sample['status']}: {sample}"
        # What is shown so far is always the start of the reply: nothing lost, nothing doubled.
        # (Rendered as Markdown while it streams, so compared word by word: paragraphs and
        # trailing spaces change the whitespace, not the words.)
        assert squash(full).startswith(squash(sample["text"])), sample
        assert sample["busy"] == "true", sample
        assert sample["stopVisible"], sample
        assert sample["sendDisabled"], sample
        assert not sample["refresh"], sample
        # Once text shows, the reply says it is streaming, no longer pending.
        assert sample["status"] == ("streaming" if sample["text"] else "pending"), sample
        time.sleep(0.03)
    return samples


def squash(text: str) -> str:
    """Words separated by single spaces: what rendered Markdown keeps of a text."""
    return " ".join(text.split())


def partial_lengths(samples: list[dict[str, Any]], full: str) -> set[int]:
    return {
        len(squash(s["text"]))
        for s in samples
        if s["status"] in ("pending", "streaming")
        and 0 < len(squash(s["text"])) < len(squash(full))
    }


# --- The tests --------------------------------------------------------------------------


def test_chat_journey_streams_replies_and_keeps_history(page, chromium, fake_openai):
    # Leading spaces, a blank line and markup-like text must all come through as typed.
    tokens = [
        "Hello",
        " world",
        ",",
        "\n\n",
        "this",
        " is",
        " <b>not bold</b>",
        " &amp;",
        " a",
        " reply.",
    ]
    full = "".join(tokens)
    fake_openai.script(Reply(tokens=tokens, delay=0.25))
    log_in(page)
    box = composer(page)
    mark_document(page)

    # Shift+Enter adds a line and sends nothing; Enter sends.
    box.fill("Hello")
    box.press("Shift+Enter")
    box.press_sequentially("there")
    expect(box).to_have_value("Hello\nthere")
    assert not [u for u in chromium.requests if "/send/" in u]
    expect(page.locator("#thread [data-role]")).to_have_count(0)
    box.press("Enter")

    # The question shows at once, while the reply is still coming.
    question = page.locator("#thread [data-role=user]")
    expect(question).to_have_count(1)
    expect(question.locator(".msg-body")).to_have_text("Hello\nthere")
    samples = watch_stream(page, full, 1)
    assert samples[0]["status"] in ("pending", "streaming"), samples[0]
    assert len(partial_lengths(samples, full)) >= 3, samples
    expect_complete(page, full)
    expect(last_reply(page).locator(".msg-body b")).to_have_count(0)
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    assert_same_document(page)

    # The URL moved to the new conversation, which tops the sidebar.
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page).to_have_title("Hello there · chatsite")
    conversation_url = urlsplit(page.url).path
    first = page.locator("#sidebar-list li a").first
    expect(first).to_have_attribute("href", conversation_url)
    expect(first).to_have_attribute("aria-current", "page")
    expect(first).to_have_text("Hello there")

    # The stream was read once and closed after `done`.
    reply_id = last_reply(page).get_attribute("data-message")
    assert_streams_closed(page)
    assert len(chromium.stream_requests(reply_id)) == 1, chromium.requests

    # Back shows the new-chat page as it is now (its sidebar lists the conversation), and
    # Forward the conversation.
    page.go_back()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#sidebar-list li a")).to_have_text(["Hello there"])
    expect(page.locator("#thread [data-role]")).to_have_count(0)
    page.go_forward()
    expect(page).to_have_url(re.compile(re.escape(conversation_url) + "$"))
    expect(page.locator("#thread [data-role]")).to_have_count(2)

    # Reload: the history is there.
    page.reload()
    expect(page.locator("#thread [data-role]")).to_have_count(2)
    expect(question.locator(".msg-body")).to_have_text("Hello\nthere")
    expect_complete(page, full)

    # A second message in the same conversation streams too.
    tokens2 = ["Second", " answer", " comes", " in", " pieces", " as", " well", "."]
    full2 = "".join(tokens2)
    fake_openai.script(Reply(tokens=tokens2, delay=0.1))
    box.fill("And a follow-up?")
    box.press("Enter")
    samples = watch_stream(page, full2, 2)
    assert len(partial_lengths(samples, full2)) >= 2, samples
    expect_complete(page, full2)
    expect(page.locator("#thread [data-role]")).to_have_count(4)
    expect(page).to_have_url(re.compile(re.escape(conversation_url) + "$"))
    expect(page.locator("#sidebar-list li")).to_have_count(1)
    expect(box).to_have_value("")
    assert_streams_closed(page)

    # A new chat, then back to the first one through the sidebar.
    page.get_by_role("link", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#thread [data-role]")).to_have_count(0)
    fake_openai.script(Reply(tokens=["Another", " topic", "."], delay=0.02))
    composer(page).fill("Something else")
    composer(page).press("Enter")
    expect_complete(page, "Another topic.")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    assert urlsplit(page.url).path != conversation_url
    links = page.locator("#sidebar-list li a")
    expect(links).to_have_text(["Something else", "Hello there"])

    links.nth(1).click()
    expect(page).to_have_url(re.compile(re.escape(conversation_url) + "$"))
    bodies = page.locator("#thread [data-role] .msg-body")
    expect(bodies).to_have_text(["Hello\nthere", full, "And a follow-up?", full2])

    # Talking there again moves it back to the top of the sidebar.
    fake_openai.script(Reply(tokens=["Back", " again", "."], delay=0.02))
    composer(page).fill("One more thing")
    composer(page).press("Enter")
    expect(replies(page)).to_have_count(3)
    expect_complete(page, "Back again.")
    expect(links).to_have_text(["Hello there", "Something else"])
    expect(links.first).to_have_attribute("aria-current", "page")
    assert len(fake_openai.requests) == 4


def test_stop_keeps_the_partial_reply(page, chromium, fake_openai):
    tokens = [f"word{i} " for i in range(80)]
    full = "".join(tokens)
    fake_openai.script(Reply(tokens=tokens, delay=0.1))
    log_in(page)
    mark_document(page)
    composer(page).fill("Talk for a long time")
    composer(page).press("Enter")
    reply = last_reply(page)
    expect(reply.locator(".msg-body")).to_contain_text("word3 ")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    # One can type the next message meanwhile, but Enter does not send it yet.
    composer(page).fill("Next question")
    composer(page).press("Enter")
    expect(composer(page)).to_have_value("Next question")
    shown = reply.locator(".msg-body").text_content()

    page.get_by_role("button", name="Stop").click()
    expect(reply).to_have_attribute("data-status", "stopped")
    assert fake_openai.disconnected.wait(5)
    text = reply.locator(".msg-body").text_content()
    # Rendered as Markdown once stopped: a trailing space of the text so far is not shown.
    assert text.startswith(shown.rstrip()) and full.startswith(text) and len(text) < len(full), text
    expect(reply.locator(".msg-body")).to_have_attribute("aria-busy", "false")
    expect(reply.locator(".badge")).to_have_text("Stopped")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.locator("#thread [data-role=user]")).to_have_count(1)
    assert len(fake_openai.requests) == 1
    assert_same_document(page)
    # What the page shows is what was saved.
    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(last_reply(page).locator(".msg-body")).to_have_text(text)


def test_an_empty_message_is_refused_with_a_visible_error(page, chromium, fake_openai):
    log_in(page)
    composer(page).fill("   ")
    page.get_by_role("button", name="Send").click()
    error = page.get_by_role("alert")
    expect(error).to_have_text("Type a message before sending.")
    expect(error).to_be_visible()
    expect(page.locator("#thread [data-role]")).to_have_count(0)
    # Enter does the same.
    composer(page).fill("  ")
    composer(page).press("Enter")
    expect(error).to_have_text("Type a message before sending.")
    expect(page.locator("#thread [data-role]")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/$"))
    assert fake_openai.requests == []


def test_an_error_reply_can_be_retried(page, chromium, fake_openai):
    fake_openai.script(
        Reply(status=500), Reply(tokens=["Second", " time", " lucky", "."], delay=0.1)
    )
    log_in(page)
    mark_document(page)
    composer(page).fill("Please fail first")
    composer(page).press("Enter")
    failed = last_reply(page)
    expect(failed).to_have_attribute("data-status", "error")
    expect(failed.locator(".msg-error")).to_be_visible()
    expect(failed.locator(".msg-error")).not_to_be_empty()
    retry = failed.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    failed_id = failed.get_attribute("id")
    retry.click()
    # The new attempt takes the failed one's place; that one stays as version 1 of 2.
    expect(last_reply(page)).not_to_have_attribute("id", failed_id)
    expect(replies(page)).to_have_count(1)
    samples = watch_stream(page, "Second time lucky.", 1)
    assert len(partial_lengths(samples, "Second time lucky.")) >= 1, samples
    expect_complete(page, "Second time lucky.")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(last_reply(page)).to_have_attribute("data-status", "error")
    expect(last_reply(page).get_by_text("Version 1 of 2")).to_be_attached()
    assert len(fake_openai.requests) == 2
    assert_streams_closed(page)
    assert_same_document(page)


def test_the_chat_works_without_javascript(chromium, fake_openai):
    fake_openai.script(Reply(tokens=["No", " script", " needed", "."], delay=0.05))
    page = chromium.new_context(java_script_enabled=False).new_page()
    log_in(page)
    composer(page).fill("Plain HTML please")
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page.locator("#thread [data-role=user] .msg-body")).to_have_text("Plain HTML please")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(last_reply(page).locator(".msg-body")).to_have_text("No script needed.")
    expect(page.locator("#sidebar-list li a")).to_have_text(["Plain HTML please"])

    # A reply still being written (sent from a tab with JavaScript) shows its text so far,
    # and the page refreshes itself until the reply is done.
    tokens = [f"t{i} " for i in range(8)]
    fake_openai.script(Reply(tokens=tokens, delay=0.3))
    js = chromium.new_context().new_page()
    log_in(js)
    js.goto(urlsplit(page.url).path)
    composer(js).fill("And now slowly")
    composer(js).press("Enter")
    expect(last_reply(js).locator(".msg-body")).to_contain_text("t1 ")
    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    expect(last_reply(page).locator(".msg-body")).to_contain_text("t1 ")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(last_reply(page).locator(".msg-body")).to_have_text("".join(tokens))


def test_reopening_a_conversation_mid_stream_continues_live(page, chromium, fake_openai):
    tokens = [f"p{i} " for i in range(24)]
    full = "".join(tokens)
    fake_openai.script(Reply(tokens=tokens, delay=0.12))
    log_in(page)
    mark_document(page)
    composer(page).fill("A long answer, please")
    composer(page).press("Enter")
    expect(last_reply(page).locator(".msg-body")).to_contain_text("p3 ")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))

    other = page.context.new_page()
    response = other.goto(page.url)
    served = response.text()
    # The text so far, rendered as Markdown (a paragraph of words here).
    body = served[served.index('class="md-blocks"') :]
    body = body[body.index(">") + 1 : body.index("</div></div>")]
    shown = html.unescape(re.sub(r"<[^>]*>", "", body))
    assert shown and squash(full).startswith(squash(shown)), shown
    assert len(squash(shown)) < len(squash(full)), shown

    samples = watch_stream(other, full, 1)
    assert len(partial_lengths(samples, full)) >= 2, samples
    expect_complete(other, full)
    expect_complete(page, full)
    assert_streams_closed(other)
    assert_same_document(page)
    assert len(fake_openai.requests) == 1


def test_the_page_fits_a_phone_screen(chromium, fake_openai):
    """Long unbroken words (in messages and in the sidebar title) wrap or are cut short."""
    fake_openai.script(Reply(tokens=["Sure:", " " + "x" * 200], delay=0.01))
    page = chromium.new_context(viewport={"width": 320, "height": 640}).new_page()
    log_in(page)
    composer(page).fill("A long word: " + "y" * 200)
    page.get_by_role("button", name="Send").click()
    expect_complete(page, "Sure: " + "x" * 200)
    for control in (
        page.get_by_role("button", name="Send"),
        page.get_by_role("button", name="Log out"),
        composer(page),
    ):
        box = control.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 320, box
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 321).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths} {wide}"


def test_older_conversations_load_into_the_sidebar(page, chromium, fake_openai, owner, settings):
    from tests.support.factories import ConversationFactory

    settings.CHAT_SIDEBAR_LIMIT = 3
    orm(lambda: [ConversationFactory(owner=owner, title=f"Topic {i}") for i in range(8)])
    log_in(page)
    links = page.locator("#sidebar-list a[data-conversation]")
    expect(links).to_have_count(3)
    mark_document(page)
    for shown in (6, 8):
        page.get_by_role("link", name="Older conversations").click()
        expect(links).to_have_count(shown)
    expect(page.get_by_role("link", name="Older conversations")).to_have_count(0)
    assert_same_document(page)
    titles = links.all_inner_texts()
    assert titles == [f"Topic {i}" for i in range(7, -1, -1)]
    links.last.click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))


# --- The README's screenshot ------------------------------------------------------------

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
TRIP_QUESTION = "Plan a three-day trip to Lisbon in May. I like food, walking and views."
TRIP_ANSWER = """Here is a relaxed plan that keeps most walks downhill:

Day 1 – Alfama. Tram 28 up to the castle, then down through the lanes to the Miradouro de Santa Luzia. Sunset from Senhora do Monte.
Day 2 – Belém. The Jerónimos Monastery, custard tarts at Pastéis de Belém, and the riverside walk to the MAAT.
Day 3 – Sintra. Forty minutes by train from Rossio; reach Pena Palace early, before the crowds.

Bring comfortable shoes: the hills are steep."""
SEA_QUESTION = "Which day could I swap for something by the sea?"
SEA_ANSWER = (
    "Swap Day 3 for Cascais: 40 minutes by train along the coast from Cais do Sodré. Walk the "
    "seafront promenade towards Estoril, have grilled fish by the harbour, and stop at "
    "Carcavelos beach for the sunset on the way back."
)
OLDER_TITLES = [
    "Compare SQLite and Postgres for a side project",
    "Birthday message for grandma",
    "Regex for ISO 8601 dates",
    "Explain Python's asyncio event loop",
]


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def test_the_readme_screenshot_renders(chromium, fake_openai, owner, settings, tmp_path):
    """Renders the README's screenshot; CHATSITE_SCREENSHOT=1 writes it to docs/."""
    from tests.support.factories import ConversationFactory

    settings.OPENAI_MODEL = "llama3.1:8b"
    orm(lambda: [ConversationFactory(owner=owner, title=title) for title in OLDER_TITLES])
    fake_openai.script(
        Reply(tokens=_words(TRIP_ANSWER), delay=0.002),
        Reply(tokens=_words(SEA_ANSWER), delay=0.002),
    )
    page = chromium.new_context(color_scheme="light").new_page()
    log_in(page)
    for question, answer in ((TRIP_QUESTION, TRIP_ANSWER), (SEA_QUESTION, SEA_ANSWER)):
        composer(page).fill(question)
        composer(page).press("Enter")
        expect(page.locator("#thread [data-role=user] .msg-body").last).to_have_text(question)
        expect_complete(page, answer)
    page.mouse.move(0, 0)
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    target = SCREENSHOT if os.environ.get("CHATSITE_SCREENSHOT") else tmp_path / "shot.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target))
    assert target.read_bytes().startswith(b"\x89PNG")
