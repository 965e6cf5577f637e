"""What the browser tests share: a Chromium session that records what every page does,
and the helpers that drive the chat page.

Django and the sync Playwright API: Playwright runs an asyncio loop in this thread, so
while a browser is open Django considers the thread async and refuses ORM calls. Rather
than setting DJANGO_ALLOW_ASYNC_UNSAFE (process-wide: it would also hide real async-safety
bugs in the server under test), the browser is started per test *after* the database
fixtures and closed before they tear down (see conftest.py), and the tests make no ORM
calls of their own while it is open (`orm` runs one in a fresh thread when needed).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tests.support.factories import PASSWORD

playwright_sync = pytest.importorskip("playwright.sync_api", exc_type=ImportError)

expect = playwright_sync.expect

T = TypeVar("T")

CHROMIUM = os.environ.get("CHATSITE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
expect.set_options(timeout=10_000)

# Every EventSource the page creates, so tests can see whether it was closed.
TRACK_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__sources = [];
  window.EventSource = class extends Native {
    constructor(url, init) { super(url, init); window.__sources.push(this); }
  };
})();
"""


def orm(fn: Callable[[], T]) -> T:
    """Run ORM code in a fresh thread: this one looks async to Django while a browser is open."""
    from django.db import connections

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result["value"]


class Browser:
    """A Chromium session that records what every page does."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page_errors: list[str] = []

    def new_context(self, **kwargs: Any) -> Any:
        kwargs.setdefault("viewport", VIEWPORT)
        context = self.browser.new_context(base_url=self.base_url, **kwargs)
        context.add_init_script(TRACK_EVENT_SOURCES)
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("page", self._watch)
        return context

    def _watch(self, page: Any) -> None:
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def stream_requests(self, message_id: str) -> list[str]:
        return [u for u in self.requests if f"/m/{message_id}/stream/" in u]


def log_in(page: Any) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


def composer(page: Any) -> Any:
    return page.get_by_role("textbox", name="Message")


def replies(page: Any) -> Any:
    return page.locator("#thread [data-role=assistant]")


def last_reply(page: Any) -> Any:
    return replies(page).last


def mark_document(page: Any) -> None:
    """Flag the current document, to check later that the page was never reloaded."""
    page.evaluate("() => { window.__sameDocument = true; }")


def assert_same_document(page: Any) -> None:
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"


def expect_complete(page: Any, text: str) -> None:
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".msg-body")).to_have_text(text)
    expect(reply.locator(".msg-body")).to_have_attribute("aria-busy", "false")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def assert_streams_closed(page: Any) -> None:
    """Every EventSource was closed by the page (an unclosed one would reconnect)."""
    states = page.evaluate("() => window.__sources.map(s => [s.url, s.readyState])")
    assert states, "the page never opened an EventSource"
    assert all(state == 2 for _, state in states), states
