"""Accounts on a server: long passwords, password reset only with email, the model server
named to staff only."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from tests.support.factories import PASSWORD


def test_the_tests_password_is_long_enough():
    assert len(PASSWORD) >= 12


@pytest.mark.django_db
def test_signup_refuses_a_password_shorter_than_12_characters(client):
    response = client.post(
        reverse("signup"),
        {"username": "newbie", "password1": "Xq7!vbnm#2k", "password2": "Xq7!vbnm#2k"},
    )
    assert response.status_code == 200
    assert "at least 12 characters" in response.content.decode()
    response = client.post(
        reverse("signup"),
        {"username": "newbie", "password1": "Xq7!vbnm#2kL", "password2": "Xq7!vbnm#2kL"},
    )
    assert response.status_code == 302


@pytest.mark.django_db
def test_without_email_there_is_no_password_reset(client):
    for name, kwargs in [
        ("password_reset", {}),
        ("password_reset_done", {}),
        ("password_reset_complete", {}),
        ("password_reset_confirm", {"uidb64": "MQ", "token": "set-password"}),
    ]:
        assert client.get(reverse(name, kwargs=kwargs)).status_code == 404, name
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 404
    assert not mail.outbox
    assert "Forgot your password" not in client.get(reverse("login")).content.decode()


@pytest.mark.django_db
def test_with_email_configured_password_reset_sends_a_link(client, owner, settings):
    settings.PASSWORD_RESET_ENABLED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    owner.email = "alice@example.com"
    owner.save()
    assert "Forgot your password" in client.get(reverse("login")).content.decode()
    assert client.get(reverse("password_reset")).status_code == 200
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and "/accounts/reset/" in mail.outbox[0].body


def test_the_console_backend_counts_as_no_email(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "from django.conf import settings as s; print(s.PASSWORD_RESET_ENABLED)"

    def enabled(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=root,
            env={**base, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert enabled() == "False"
    assert enabled(EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend") == "False"
    assert enabled(EMAIL_HOST="smtp.example.com") == "True"


@pytest.mark.django_db
def test_only_staff_see_which_model_server_answers(owner_client, staff_client, fake_openai):
    server = fake_openai.base_url.rstrip("/")
    html = owner_client.get(reverse("chat")).content.decode()
    assert "Model: <strong>fake-model</strong>" in html
    assert server not in html and "127.0.0.1" not in html
    html = staff_client.get(reverse("chat")).content.decode()
    assert f"Model: <strong>fake-model</strong> · {server}" in html
