"""Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords a username is
refused from that address, even with the right password, on both login pages, until the
cool-off has passed; a successful login clears the count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.support.factories import PASSWORD

LOCKED = "Too many failed logins"
PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def throttle(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def _post(client: Client, url: str, username: str, password: str):
    return client.post(url, {"username": username, "password": password})


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_five_wrong_passwords_lock_the_right_one_out(url, throttle, staff):
    client = Client()
    for _ in range(4):
        response = _post(client, url, staff.username, "wrong-password-123")
        assert response.status_code == 200 and LOCKED not in response.content.decode()
    response = _post(client, url, staff.username, "wrong-password-123")
    assert response.status_code == 429
    response = _post(client, url, staff.username, PASSWORD)
    assert response.status_code == 429
    html = response.content.decode()
    assert LOCKED in html and "Try again in 15 minutes" in html
    assert not _logged_in(client)
    # The other login page refuses it too: the lock is the username's, on this address.
    other = next(page for page in PAGES if page != url)
    assert _post(Client(), other, staff.username, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_the_lock_is_per_username_and_address(throttle, owner, stranger):
    url = reverse("login")
    for _ in range(5):
        _post(Client(), url, owner.username, "wrong-password-123")
    assert _post(Client(), url, owner.username, PASSWORD).status_code == 429
    other_user = Client()
    assert _post(other_user, url, stranger.username, PASSWORD).status_code == 302
    other_address = Client(REMOTE_ADDR="10.0.0.7")
    assert _post(other_address, url, owner.username, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_successful_login_resets_the_count(throttle, owner):
    url = reverse("login")
    for _ in range(4):
        _post(Client(), url, owner.username, "wrong-password-123")
    assert _post(Client(), url, owner.username, PASSWORD).status_code == 302
    for _ in range(4):
        _post(Client(), url, owner.username, "wrong-password-123")
    client = Client()
    assert _post(client, url, owner.username, PASSWORD).status_code == 302
    assert _logged_in(client)


@pytest.mark.django_db
def test_the_lock_ends_after_the_cool_off(throttle, owner):
    url = reverse("login")
    for _ in range(5):
        _post(Client(), url, owner.username, "wrong-password-123")
    assert _post(Client(), url, owner.username, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    client = Client()
    assert _post(client, url, owner.username, PASSWORD).status_code == 302
    assert _logged_in(client)


def test_the_throttle_is_on_by_default_with_five_tries_and_15_minutes(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIN_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.AXES_ENABLED, s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME,"
            " s.AUTHENTICATION_BACKENDS[0])",
        ],
        cwd=root,
        env={**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "5", "0:15:00", "axes.backends.AxesStandaloneBackend"]


@pytest.mark.django_db(transaction=True)
def test_the_lockout_page_is_served_under_asgi(asgi_server, throttle, owner):
    import httpx2

    with httpx2.Client(base_url=asgi_server.url, timeout=10) as http:
        http.get("/accounts/login/")
        token = http.cookies["csrftoken"]

        def post(password: str):
            return http.post(
                "/accounts/login/",
                data={"username": owner.username, "password": password},
                headers={"X-CSRFToken": token, "Referer": asgi_server.url},
            )

        for _ in range(5):
            post("wrong-password-123")
        response = post(PASSWORD)
        assert response.status_code == 429
        assert LOCKED in response.text and "Try again in 15 minutes" in response.text


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(settings):
    from django.test import RequestFactory

    from conversations.web.middleware import client_ip

    factory = RequestFactory()
    forged = factory.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5", REMOTE_ADDR="127.0.0.1")
    settings.LOGIN_PROXY_COUNT = 0
    assert client_ip(forged) == "127.0.0.1"
    settings.LOGIN_PROXY_COUNT = 1
    assert client_ip(forged) == "203.0.113.5"
    assert client_ip(factory.get("/", REMOTE_ADDR="127.0.0.1")) == "127.0.0.1"


@pytest.mark.django_db
def test_behind_a_proxy_each_client_address_has_its_own_count(throttle, settings, owner):
    settings.LOGIN_PROXY_COUNT = 1
    url = reverse("login")
    via = {"REMOTE_ADDR": "127.0.0.1"}
    for _ in range(5):
        Client(HTTP_X_FORWARDED_FOR="203.0.113.5", **via).post(
            url, {"username": owner.username, "password": "wrong-password-123"}
        )
    locked = Client(HTTP_X_FORWARDED_FOR="203.0.113.5", **via)
    assert _post(locked, url, owner.username, PASSWORD).status_code == 429
    other = Client(HTTP_X_FORWARDED_FOR="198.51.100.9", **via)
    assert _post(other, url, owner.username, PASSWORD).status_code == 302
