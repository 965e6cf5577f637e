"""Documents through the composer (the shared upload path): read once at upload, shown as
a chip (name, type, size, pages), given to the model; a bad one refused inline, nothing
half-saved; with images in the same message."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import Attachment, AttachmentChunk, Conversation, Message
from tests.attachments import builders
from tests.support import images
from tests.support.fake_openai import Reply, validate_request
from tests.support.helpers import HTMX, finished, last_reply

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, files, content="What does it say?"):
    return client.post(reverse("send_new"), {"content": content, "attachments": files}, **HTMX)


def test_a_pdf_and_an_image_in_one_message(owner_client, fake_openai, vision_model, media):
    fake_openai.script(Reply(tokens=["It", " says", " hello."]))
    pdf = builders.pdf(["Page one says hello.", "Page two says goodbye."])
    files = [images.upload("report.pdf", pdf), images.upload("cat.png", images.png())]
    response = post(owner_client, files)
    assert response.status_code == 200
    reply = finished(last_reply())
    document, image = Message.objects.get(role="user").attachments.order_by("id")
    assert (document.kind, document.content_type, document.pages) == (
        "document",
        "application/pdf",
        2,
    )
    assert "Page two says goodbye." in document.text
    assert AttachmentChunk.objects.filter(attachment=document).exists()
    assert document.file.open("rb").read() == pdf and document.sha256 and document.size == len(pdf)
    assert image.kind == "image"
    html = response.content.decode()
    assert "report.pdf" in html and "application/pdf" in html and "2 pages" in html
    body = fake_openai.requests[-1]
    validate_request(body)
    assert "Page one says hello." in body["messages"][0]["content"]
    assert [p["type"] for p in body["messages"][-1]["content"]] == ["text", "image_url"]
    assert reply.sources and reply.sources[0]["name"] == "report.pdf"


def test_a_text_file_named_html_is_a_document_and_served_as_a_download(
    owner_client, fake_openai, vision_model
):
    post(owner_client, [images.upload("page.html", b"<script>alert(1)</script><p>Hello</p>")])
    finished(last_reply())
    document = Attachment.objects.get()
    assert document.kind == "document"
    response = owner_client.get(reverse("attachment", args=[document.conversation_id, document.pk]))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_an_encrypted_pdf_is_refused_inline_with_nothing_saved(
    owner_client, fake_openai, vision_model, media
):
    files = [
        images.upload("ok.png", images.png()),
        images.upload("secret.pdf", builders.pdf(["x"], password="pw")),
    ]
    response = post(owner_client, files)
    assert response.status_code == 422
    html = response.content.decode()
    assert "encrypted" in html.lower() and "Nothing was sent" in html
    assert not Conversation.objects.exists() and not Attachment.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_documents_go_to_a_model_that_cannot_see_images(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["Fine."]))
    post(owner_client, [images.upload("notes.md", b"# Notes\n\nThe code word is pelican.\n")])
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert "pelican" in fake_openai.requests[-1]["messages"][0]["content"]
