"""The chat log lists attachments (never their bytes); deleting removes their files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from conversations.history.services import conversation_delete
from conversations.models import Attachment, Message
from tests.support import images
from tests.support.helpers import HTMX, finished, last_reply, log_events

pytestmark = pytest.mark.django_db(transaction=True)


def send_image(client, name="cat.png", data=None, conversation=None):
    url = reverse("send", args=[conversation.pk]) if conversation else reverse("send_new")
    files = [images.upload(name, data or images.png())]
    client.post(url, {"content": "Look", "attachments": files}, **HTMX)
    return finished(last_reply())


def test_each_attachment_is_logged_with_name_type_size_and_sha256_never_its_bytes(
    owner_client, fake_openai, vision_model
):
    log = Path(django_settings.CHAT_LOG_FILE)
    before = len(log_events(log))
    send_image(owner_client, "secret-plan.png")
    attachment = Attachment.objects.get()
    events = log_events(log)[before:]
    (message,) = [e for e in events if e["event"] == "message"]
    assert json.loads(message["attachments"]) == [
        {
            "name": "secret-plan.png",
            "type": "image/png",
            "size": attachment.size,
            "sha256": attachment.sha256,
        }
    ]
    stored = attachment.file.open("rb").read()
    text = log.read_text(encoding="utf-8")
    assert base64.b64encode(stored).decode()[:40] not in text
    # Replies and messages without attachments have no such field.
    assert all("attachments" not in e for e in events if e["event"] == "reply")


def _files(media):
    """The stored files, each image's kept thumbnail counted with it (they go together)."""
    found = sorted(p for p in media.rglob("*") if p.is_file())
    thumbnails = {p for p in found if p.name.endswith(".thumb")}
    assert {p.with_name(p.name.removesuffix(".thumb")) for p in thumbnails} <= set(found)
    return [p for p in found if p not in thumbnails]


def test_deleting_a_conversation_deletes_its_files(
    owner_client, owner, fake_openai, vision_model, media
):
    send_image(owner_client)
    conversation = Message.objects.get(role="user").conversation
    send_image(owner_client, "second.png", conversation=conversation)
    assert len(_files(media)) == 2
    response = owner_client.post(reverse("delete", args=[conversation.pk]), **HTMX)
    assert response.status_code in (200, 204, 302)
    assert not Attachment.objects.exists()
    assert _files(media) == []


def test_deleting_an_account_deletes_its_files(
    owner_client, owner, fake_openai, vision_model, media
):
    send_image(owner_client)
    assert len(_files(media)) == 1
    owner.delete()
    assert _files(media) == []


def test_a_file_shared_with_an_edited_copy_stays_until_the_last_row_goes(
    owner_client, owner, fake_openai, vision_model, media
):
    send_image(owner_client)
    question = Message.objects.get(role="user")
    owner_client.post(
        reverse("edit", args=[question.conversation_id, question.pk]), {"content": "Again"}, **HTMX
    )
    finished(last_reply())
    original, copy = Attachment.objects.order_by("id")
    assert original.file.name == copy.file.name
    original.delete()
    assert len(_files(media)) == 1
    conversation_delete(user=owner, conversation=question.conversation)
    assert _files(media) == []
