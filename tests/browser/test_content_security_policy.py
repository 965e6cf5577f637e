"""Under the Content-Security-Policy (no inline script, no eval) the chat streams, the theme
switches and the admin works, and the browser reports no violation anywhere."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import composer, expect, expect_complete, log_in
from tests.support.factories import PASSWORD
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
(() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  });
})();
"""


def _context(chromium: Any, **kwargs: Any) -> Any:
    context = chromium.new_context(**kwargs)
    context.add_init_script(RECORD_VIOLATIONS)
    return context


def _violations(page: Any, chromium: Any) -> list[str]:
    seen = page.evaluate("() => window.__csp || []")
    console = [m for m in chromium.console if "Content Security Policy" in m]
    return [*seen, *console]


def test_chat_stream_theme_and_admin_work_under_the_policy(staff, chromium, fake_openai):
    fake_openai.script(Reply(tokens=["Hello", " under", " a", " policy."], delay=0.1))
    page = _context(chromium, color_scheme="light").new_page()
    response = page.goto("/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert "unsafe-eval" not in policy
    assert response.headers["referrer-policy"] == "same-origin"
    assert "camera=()" in response.headers["permissions-policy"]
    log_in(page)

    composer(page).fill("Hello")
    composer(page).press("Enter")
    expect_complete(page, "Hello under a policy.")

    theme = page.get_by_label("Theme")
    theme.select_option("dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert _violations(page, chromium) == []

    admin = _context(chromium).new_page()
    admin.goto("/admin/")
    admin.fill("input[name=username]", staff.username)
    admin.fill("input[name=password]", PASSWORD)
    admin.get_by_role("button", name="Log in").click()
    expect(admin).to_have_url(re.compile(r"/admin/$"))
    expect(admin.locator("#site-name")).to_be_visible()
    admin.goto("/admin/conversations/conversation/")
    expect(admin.locator("#changelist")).to_be_visible()
    # The admin's own scripts run: the theme toggle and the action checkboxes are wired up.
    admin.goto("/admin/auth/user/")
    admin.locator("#action-toggle").check()
    expect(admin.locator(".action-counter")).to_contain_text("selected")
    assert _violations(admin, chromium) == []
