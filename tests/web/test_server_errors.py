"""A server error (DEBUG off) is logged, on the console and in CHAT_ERROR_LOG_FILE, with
the request id that the response sends as X-Request-ID."""

from __future__ import annotations

import logging
import re

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path, reverse


class Boom(Exception):
    pass


@login_not_required
def broken(request: HttpRequest) -> HttpResponse:
    raise Boom("the view broke")


@login_not_required
async def broken_async(request: HttpRequest) -> HttpResponse:
    raise Boom("the async view broke")


urlpatterns = [path("broken/", broken), path("broken-async/", broken_async)]


def _error_log() -> str:
    for handler in logging.getLogger("django.request").handlers:
        handler.flush()
    log = django_settings.CHAT_ERROR_LOG_FILE
    assert log.parent == django_settings.CHAT_LOG_FILE.parent
    return log.read_text() if log.exists() else ""


@pytest.fixture
def broken_urls(settings):
    settings.ROOT_URLCONF = __name__


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/broken/", "/broken-async/"])
def test_a_server_error_is_logged_with_the_request_id(url, broken_urls):
    assert not django_settings.DEBUG
    before = _error_log()
    response = Client(raise_request_exception=False).get(url)
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    written = _error_log()[len(before) :]
    assert f"ERROR request_id={request_id} django.request Internal Server Error: {url}" in written
    assert "Boom: the" in written  # the traceback
    # And on the console, in the same format.
    console = [
        h for h in logging.getLogger("django.request").handlers if type(h) is logging.StreamHandler
    ]
    assert console and console[0].formatter is not None
    assert "request_id=%(request_id)s" in console[0].formatter._fmt  # type: ignore[operator]


@pytest.mark.django_db
def test_every_response_has_its_own_request_id(client):
    first = client.get(reverse("login"))["X-Request-ID"]
    second = client.get(reverse("login"))["X-Request-ID"]
    assert first != second


def test_the_error_log_is_beside_the_chat_log_by_default(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "CHAT_ERROR_LOG_FILE"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.CHAT_ERROR_LOG_FILE)",
        ],
        cwd=root,
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_LOG_FILE": str(tmp_path / "logs" / "chat.log"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "logs" / "errors.log")
