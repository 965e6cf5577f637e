"""Who may see and touch what, and how bad input is answered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.support.factories import PASSWORD, MessageFactory, ReplyFactory
from tests.support.helpers import HTMX, send

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def owned(owner):
    """A conversation of alice's with a finished, an in-flight and a failed reply."""
    question = MessageFactory(conversation__owner=owner, content="alice's secret question")
    conversation = question.conversation
    reply = ReplyFactory(
        conversation=conversation, parent=question, content="alice's secret answer"
    )
    return conversation, reply


def _urls(conversation: Conversation, message: Message) -> list[tuple[str, str]]:
    c, m = conversation.pk, message.pk
    return [
        ("get", reverse("conversation", args=[c])),
        ("post", reverse("send", args=[c])),
        ("get", reverse("reply_stream", args=[c, m])),
        ("post", reverse("stop", args=[c, m])),
        ("post", reverse("retry", args=[c, m])),
    ]


@pytest.mark.django_db
def test_every_page_requires_login(client, owned):
    conversation, reply = owned
    urls = [("get", reverse("chat")), ("post", reverse("send_new")), *_urls(conversation, reply)]
    for method, url in urls:
        response = getattr(client, method)(url, {"content": "hi"} if method == "post" else None)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_a_stranger_gets_404_on_every_url_of_someone_elses_conversation(stranger_client, owned):
    conversation, reply = owned
    for method, url in _urls(conversation, reply):
        response = getattr(stranger_client, method)(
            url, {"content": "injected"} if method == "post" else None, **HTMX
        )
        assert response.status_code == 404, url
        assert "alice's secret" not in response.content.decode()
    # Nothing was written or changed.
    assert Message.objects.count() == 2
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE


@pytest.mark.django_db
def test_a_message_id_from_another_conversation_is_404(owner_client, owner, stranger, owned):
    conversation, _ = owned
    foreign = ReplyFactory(conversation__owner=stranger)
    url = reverse("stop", args=[conversation.pk, foreign.pk])
    assert owner_client.post(url).status_code == 404
    url = reverse("reply_stream", args=[conversation.pk, foreign.pk])
    assert owner_client.get(url).status_code == 404


@pytest.mark.django_db
def test_the_sidebar_lists_only_my_conversations(owner_client, stranger, owned):
    MessageFactory(conversation__owner=stranger, conversation__title="mallory's plans")
    page = owner_client.get(reverse("chat")).content.decode()
    assert owned[0].title in page
    assert "mallory's plans" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("content", ["", "   ", "\n\t \n"])
def test_an_empty_message_is_refused_with_a_visible_error(owner_client, content):
    response = send(owner_client, content)
    assert response.status_code == 422
    assert "Type a message before sending." in response.content.decode()
    assert response["HX-Retarget"] == "#composer"
    assert Message.objects.count() == 0

    response = send(owner_client, content, htmx=False)
    assert response.status_code == 422
    assert "Type a message before sending." in response.content.decode()
    assert "<html" in response.content.decode()


@pytest.mark.django_db
def test_an_overlong_message_is_refused_and_kept_in_the_composer(owner_client, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    text = "x" * 51
    response = send(owner_client, text)
    assert response.status_code == 422
    html = response.content.decode()
    assert "too long: the limit is 50 characters and it has 51" in html
    assert text in html  # not silently dropped
    assert Message.objects.count() == 0
    assert send(owner_client, "x" * 50).status_code == 200


@pytest.mark.django_db
def test_csrf_is_enforced_on_every_post(owner, owned):
    client = Client(enforce_csrf_checks=True)
    client.login(username=owner.username, password=PASSWORD)
    conversation, reply = owned
    for url in (
        reverse("send_new"),
        reverse("send", args=[conversation.pk]),
        reverse("stop", args=[conversation.pk, reply.pk]),
        reverse("retry", args=[conversation.pk, reply.pk]),
    ):
        response = client.post(url, {"content": "forged"})
        assert response.status_code == 403, url
        assert "expired" in response.content.decode()
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_the_chat_page_carries_the_csrf_token_for_htmx(owner_client):
    html = owner_client.get(reverse("chat")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


@pytest.mark.django_db
def test_get_on_a_post_only_url_is_405(owner_client, owned):
    conversation, reply = owned
    assert owner_client.get(reverse("send", args=[conversation.pk])).status_code == 405
    assert owner_client.get(reverse("stop", args=[conversation.pk, reply.pk])).status_code == 405


@pytest.mark.django_db
def test_unknown_ids_are_404_pages_not_errors(owner_client):
    response = owner_client.get("/c/999999/")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()


@pytest.mark.django_db
def test_login_and_logout(client, owner):
    page = client.get(reverse("login")).content.decode()
    assert 'name="username"' in page and 'name="password"' in page
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("chat")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("chat")).status_code == 302


@pytest.mark.django_db
def test_signup_creates_an_account_and_logs_in(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )
    assert response.status_code == 302
    assert client.get(reverse("chat")).status_code == 200


@pytest.mark.django_db
def test_signup_can_be_switched_off(client, settings):
    settings.SIGNUP_ENABLED = False
    assert client.get(reverse("signup")).status_code == 404
    response = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )
    assert response.status_code == 404
    assert "Sign up" not in client.get(reverse("login")).content.decode()


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_with_debug_off_and_no_secret_key_it_refuses_to_start(tmp_path):
    result = _check({"DEBUG": "false", "SECRET_KEY": "", "CHAT_LOG_FILE": str(tmp_path / "c.log")})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    result = _check(
        {"DEBUG": "false", "SECRET_KEY": "change-me", "CHAT_LOG_FILE": str(tmp_path / "c.log")}
    )
    assert result.returncode != 0
    result = _check(
        {"DEBUG": "false", "SECRET_KEY": "x" * 50, "CHAT_LOG_FILE": str(tmp_path / "c.log")}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_an_expired_session_sends_htmx_requests_to_the_login_page(client, owned):
    conversation, _ = owned
    response = client.post(reverse("send", args=[conversation.pk]), {"content": "hi"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_retrying_while_a_reply_is_being_written_is_refused_inline(owner_client, owner):
    question = MessageFactory(conversation__owner=owner)
    failed = ReplyFactory(
        conversation=question.conversation, parent=question, status=Message.Status.ERROR
    )
    ReplyFactory(conversation=question.conversation, status=Message.Status.STREAMING)
    url = reverse("retry", args=[failed.conversation_id, failed.pk])
    response = owner_client.post(url, **HTMX)
    assert response.status_code == 409
    assert response["HX-Retarget"] == "#composer-error"
    assert "still being written" in response.content.decode()
    assert Message.objects.count() == 3
