"""Content-Security-Policy (scripts from our own files only), Referrer-Policy and
Permissions-Policy on every page, and no template that the policy would break."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


def _script_src(policy: str) -> str:
    return next(d for d in policy.split(";") if d.strip().startswith("script-src")).strip()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["login", "chat", "admin:index"])
def test_every_page_sends_the_policies(owner_client, name):
    response = owner_client.get(reverse(name))
    policy = response["Content-Security-Policy"]
    assert _script_src(policy) == "script-src 'self'"
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert response["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


@pytest.mark.django_db(transaction=True)
def test_the_policies_come_with_async_pages_under_asgi(asgi_server):
    import httpx2

    response = httpx2.get(f"{asgi_server.url}/accounts/login/", timeout=10)
    assert _script_src(response.headers["content-security-policy"]) == "script-src 'self'"
    assert response.headers["permissions-policy"]


def test_no_template_has_an_inline_script_or_event_handler():
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (template, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert "javascript:" not in text, template


def test_htmx_injects_no_indicator_styles_and_evaluates_nothing():
    base = (ROOT / "templates" / "base.html").read_text()
    assert '"includeIndicatorStyles":false' in base
    assert '"allowEval":false' in base
