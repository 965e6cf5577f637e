"""An attachment is served only to its owner, through the owner-checked view."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from conversations.models import Attachment
from tests.support import images
from tests.support.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db


def make(owner, *, kind="image", name="cat.png", data=None, content_type="image/png"):
    conversation = ConversationFactory(owner=owner)
    message = MessageFactory(conversation=conversation)
    data = data if data is not None else images.png(1000, 500)
    attachment = Attachment(
        owner=owner,
        conversation=conversation,
        message=message,
        kind=kind,
        name=name,
        content_type=content_type,
        size=len(data),
        sha256="ab" * 32,
        width=1000 if kind == "image" else None,
        height=500 if kind == "image" else None,
    )
    attachment.file.save("x.png" if kind == "image" else "x.txt", ContentFile(data), save=False)
    attachment.save()
    return attachment


def urls(attachment):
    args = [attachment.conversation_id, attachment.pk]
    return reverse("attachment", args=args), reverse("attachment_thumbnail", args=args)


def test_the_owner_gets_the_image_and_its_thumbnail_with_safe_headers(owner_client, owner):
    attachment = make(owner, name='c"at\n.png')
    full, thumb = urls(attachment)
    response = owner_client.get(full)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == "inline; filename*=utf-8''c%22at%0A.png"
    assert "\n" not in response["Content-Disposition"]
    assert "sandbox" in response["Content-Security-Policy"]
    assert "private" in response["Cache-Control"]
    assert response.content == attachment.file.open("rb").read()
    small = owner_client.get(thumb)
    assert small.status_code == 200 and small["Content-Type"] == "image/png"
    assert max(Image.open(io.BytesIO(small.content)).size) == 320


def test_a_stranger_and_anonymous_visitors_get_nothing(owner, stranger_client, client):
    attachment = make(owner)
    for url in urls(attachment):
        assert stranger_client.get(url).status_code == 404
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_owner_of_another_conversation_cannot_reach_it_through_theirs(
    owner, stranger, stranger_client
):
    attachment = make(owner)
    theirs = ConversationFactory(owner=stranger)
    url = reverse("attachment", args=[theirs.pk, attachment.pk])
    assert stranger_client.get(url).status_code == 404


def test_an_attachment_through_another_conversation_of_the_owner_is_404(owner_client, owner):
    attachment = make(owner)
    other = ConversationFactory(owner=owner)
    assert (
        owner_client.get(reverse("attachment", args=[other.pk, attachment.pk])).status_code == 404
    )


def test_a_document_is_a_download_never_a_page(owner_client, owner):
    attachment = make(
        owner,
        kind="document",
        name="notes.html",
        data=b"<script>alert(1)</script>",
        content_type="text/html",
    )
    full, thumb = urls(attachment)
    response = owner_client.get(full)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert owner_client.get(thumb).status_code == 404


def test_only_get_and_head(owner_client, owner):
    full, _ = urls(make(owner))
    assert owner_client.head(full).status_code == 200
    assert owner_client.post(full).status_code == 405
