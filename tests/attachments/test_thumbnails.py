"""An image's thumbnail is made once, at upload, and kept beside the file: showing a thread
reads it, never decodes the image again; it goes with its file; an image stored without one
(before they were kept) still gets one."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image

from conversations.attachments import images as attachment_images
from conversations.attachments import selectors, services
from tests.attachments.test_export_import import attach
from tests.support import images
from tests.support.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _saved(message, data: bytes, name: str = "big.png"):
    prepared = services.prepare_data(data, name=name)
    return services.attachments_save(message=message, prepared=[prepared])[0]


def test_the_thumbnail_is_stored_at_upload_and_served_without_decoding(
    owner_client, owner, monkeypatch
):
    message = MessageFactory(conversation=ConversationFactory(owner=owner))
    picture = _saved(message, images.png(1200, 900))
    storage = picture.file.storage
    kept = attachment_images.thumbnail_name(picture.file.name)
    assert storage.exists(kept)
    with Image.open(io.BytesIO(storage.open(kept).read())) as thumb:
        assert max(thumb.size) == attachment_images.THUMBNAIL_SIDE

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded again")

    monkeypatch.setattr(attachment_images, "thumbnail_of", no_decoding)
    response = owner_client.get(
        reverse("attachment_thumbnail", args=[message.conversation_id, picture.pk])
    )
    assert response.status_code == 200
    assert response.content == storage.open(kept).read()


def test_deleting_the_conversation_deletes_the_thumbnail_too(owner):
    message = MessageFactory(conversation=ConversationFactory(owner=owner))
    picture = _saved(message, images.png(300, 200))
    storage = picture.file.storage
    names = [picture.file.name, attachment_images.thumbnail_name(picture.file.name)]
    assert all(storage.exists(name) for name in names)
    message.conversation.delete()
    assert not any(storage.exists(name) for name in names)


def test_an_image_stored_without_a_thumbnail_still_gets_one(owner):
    message = MessageFactory(conversation=ConversationFactory(owner=owner))
    old = attach(message, "old.png", images.png(800, 400))
    storage = old.file.storage
    assert not storage.exists(attachment_images.thumbnail_name(old.file.name))
    with Image.open(io.BytesIO(selectors.thumbnail(old))) as thumb:
        assert thumb.size == (320, 160)


def test_a_document_has_no_thumbnail_kept(owner):
    message = MessageFactory(conversation=ConversationFactory(owner=owner))
    notes = _saved(message, b"Some notes.\n", name="notes.txt")
    storage = notes.file.storage
    assert not storage.exists(attachment_images.thumbnail_name(notes.file.name))
