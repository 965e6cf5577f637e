"""The API key and credentials in the server's URL never show in a reply nor reach the log."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from conversations.models import Message
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


KEY = "sk-test-key-never-sent-anywhere-but-loopback"


def test_a_key_echoed_by_the_provider_is_never_shown_or_logged(owner_client, fake_openai):
    fake_openai.script(Reply(status=400, error_message=f"Bad header: Bearer {KEY} rejected"))
    send(owner_client, "Echo")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "Bearer *** rejected" in reply.error
    assert KEY not in reply.error
    with open(django_settings.CHAT_LOG_FILE, encoding="utf-8") as log:
        assert KEY not in log.read()


def test_credentials_in_the_base_url_are_not_shown(owner_client, fake_openai, settings):
    settings.OPENAI_BASE_URL = "http://user:s3cr3t-token@127.0.0.1:9/v1"
    send(owner_client, "Anyone?")
    reply = finished(last_reply())
    assert "Cannot reach the model server." in reply.error
    assert "127.0.0.1" not in reply.error  # the address is for staff only (issue 11)
    assert "s3cr3t" not in reply.error
