"""The Chromium fixtures of the browser tests (Chromium through Playwright, against uvicorn
serving chatsite, with the fake OpenAI-compatible server as the model).

Needs a Chromium binary: ``apt-get install chromium`` (Debian; scripts/test installs it).
Without one the tests are skipped on a developer's machine and fail in CI. Without
Playwright this folder is skipped whole, so the rest of the suite still collects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("playwright", exc_type=ImportError)

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, Browser, playwright_sync


@pytest.fixture
def chromium(asgi_server, fake_openai, owner) -> Iterator[Browser]:
    """Chromium, started after (and closed before) the database and server fixtures."""
    if not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium, or run scripts/test)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        session = Browser(browser, asgi_server.url)
        try:
            yield session
        finally:
            browser.close()
            if session.console:
                print("browser console:", *session.console, sep="\n  ")
    outside = [u for u in session.requests if urlsplit(u).hostname != "127.0.0.1"]
    assert not outside, f"the page loaded from outside the app: {outside}"
    assert not session.page_errors, f"JavaScript errors: {session.page_errors}"
    # htmx reports its errors (htmx:sseError, htmx:swapError, ...) on the console.
    errors = [
        m for m in session.console if m.startswith("error:") and "Failed to load resource" not in m
    ]
    assert not errors, errors


@pytest.fixture
def page(chromium) -> Any:
    return chromium.new_context().new_page()
