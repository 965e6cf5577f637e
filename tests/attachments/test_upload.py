"""Attaching files to a message through the composer: saved with the message before the
model is called, every limit and bad file refused inline with nothing half-saved."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image

from conversations.models import Attachment, Conversation, Message
from tests.support import images
from tests.support.factories import ConversationFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, files, content="What is in this picture?", conversation=None, htmx=True, **data):
    url = reverse("send", args=[conversation.pk]) if conversation else reverse("send_new")
    payload = {"content": content, "attachments": files, **data}
    return client.post(url, payload, **(HTMX if htmx else {}))


def stored_files(media) -> list:
    """The stored files, without the thumbnails kept beside images (tests of their own)."""
    return [p for p in media.rglob("*") if p.is_file() and not p.name.endswith(".thumb")]


def test_images_are_saved_with_the_message_before_the_model_is_called(
    owner_client, owner, fake_openai, vision_model, media
):
    fake_openai.script(Reply(tokens=["A", " red", " square."], first_delay=0.3))
    files = [
        images.upload("red.png", images.png()),
        images.upload("blue.jpg", images.image_bytes("JPEG")),
    ]
    response = post(owner_client, files, caption=["A red square", ""])
    assert response.status_code == 200
    fake_openai.wait_for_requests(1)
    question = Message.objects.get(role=Message.Role.USER)
    # Asked, not answered: the message and its images are already stored.
    assert last_reply().status in Message.IN_FLIGHT
    red, blue = question.attachments.order_by("id")
    assert (red.name, red.caption, red.kind) == ("red.png", "A red square", "image")
    assert (blue.name, blue.caption, blue.content_type) == ("blue.jpg", "", "image/jpeg")
    assert red.owner == owner and red.conversation == question.conversation
    assert (red.width, red.height) == (64, 48) and len(red.sha256) == 64
    assert red.file.name.startswith(f"attachments/{owner.pk}/") and "red" not in red.file.name
    assert red.size == red.file.size
    assert len(stored_files(media)) == 2
    html = response.content.decode()
    assert reverse("attachment_thumbnail", args=[red.conversation_id, red.pk]) in html
    assert 'alt="A red square"' in html and 'alt="blue.jpg"' in html
    assert finished(last_reply()).content == "A red square."


def test_without_javascript_the_file_input_posts_and_the_page_shows_the_thumbnail(
    owner_client, fake_openai, vision_model
):
    response = post(
        owner_client, [images.upload("shot.png", images.png())], htmx=False, caption="A screenshot"
    )
    assert response.status_code == 302
    finished(last_reply())
    page = owner_client.get(response["Location"], follow=True)
    html = page.content.decode()
    attachment = Attachment.objects.get()
    assert attachment.caption == "A screenshot"
    assert (
        f'href="{reverse("attachment", args=[attachment.conversation_id, attachment.pk])}"' in html
    )
    assert 'alt="A screenshot"' in html
    assert 'enctype="multipart/form-data"' in html and 'type="file"' in html and "multiple" in html


def _refused(response, media, *words):
    assert response.status_code == 422, response.content[:500]
    html = response.content.decode()
    for word in words:
        assert word in html, html[-2000:]
    assert "Nothing was sent" in html
    # Nothing half-saved: no conversation, no message, no attachment row, no file.
    assert not Conversation.objects.exists()
    assert not Message.objects.exists() and not Attachment.objects.exists()
    assert stored_files(media) == []
    # The text stays in the composer.
    assert "What is in this picture?" in html


@pytest.mark.parametrize("htmx", [True, False])
def test_a_bad_file_among_good_ones_refuses_the_message_inline(
    owner_client, fake_openai, vision_model, media, htmx
):
    files = [
        images.upload("good.png", images.png()),
        images.upload(
            "evil.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
        ),
    ]
    response = post(owner_client, files, htmx=htmx)
    _refused(response, media, "evil.png", "is not a file this site takes")
    assert fake_openai.requests == []


def test_too_many_files_are_refused(owner_client, settings, fake_openai, vision_model, media):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    files = [images.upload(f"{i}.png", images.png()) for i in range(3)]
    _refused(post(owner_client, files), media, "That is 3 files; a message can carry at most 2.")


def test_a_file_over_the_size_limit_is_refused(
    owner_client, settings, fake_openai, vision_model, media
):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    big = images.png(400, 400)
    noisy = Image.effect_noise((300, 300), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    assert len(out.getvalue()) > 1000 and len(big) > 0
    _refused(
        post(owner_client, [images.upload("big.png", out.getvalue())]),
        media,
        "big.png",
        "the largest attachment is",
    )


def test_a_pixel_bomb_is_refused_inline(owner_client, fake_openai, vision_model, media):
    bomb = images.upload("bomb.png", images.pixel_bomb_png())
    _refused(post(owner_client, [bomb]), media, "bomb.png", "has too many pixels")


def test_a_truncated_image_is_refused_inline(owner_client, fake_openai, vision_model, media):
    noisy = Image.effect_noise((200, 200), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="JPEG")
    cut = out.getvalue()[:-3000]
    _refused(
        post(owner_client, [images.upload("cut.jpg", cut)]),
        media,
        "cut.jpg",
        "damaged or incomplete",
    )


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.png", b"<!doctype html><html><script>alert(document.cookie)</script></html>"),
        ("vector.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
        ("empty.png", b""),
    ],
)
def test_html_svg_or_empty_files_named_png_are_refused(
    owner_client, fake_openai, vision_model, media, name, data
):
    response = post(owner_client, [images.upload(name, data, "image/png")])
    _refused(response, media, name, "is empty" if not data else "is not a file this site takes")


def test_a_png_named_jpg_is_stored_as_png(owner_client, fake_openai, vision_model):
    post(owner_client, [images.upload("photo.jpg", images.png())])
    finished(last_reply())
    attachment = Attachment.objects.get()
    assert attachment.content_type == "image/png" and attachment.file.name.endswith(".png")
    assert attachment.name == "photo.jpg"


def test_a_file_name_with_folders_and_control_characters_is_cleaned(
    owner_client, fake_openai, vision_model
):
    post(owner_client, [images.upload("../../etc/pass\x07wd.png", images.png())])
    finished(last_reply())
    assert Attachment.objects.get().name == "passwd.png"


def test_images_to_a_model_that_cannot_see_them_are_refused_before_any_call(
    owner_client, owner, fake_openai
):
    conversation = ConversationFactory(owner=owner, model="fake-model")
    response = post(
        owner_client, [images.upload("cat.png", images.png())], conversation=conversation
    )
    assert response.status_code == 200
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "cannot see images" in reply.error and "Settings" in reply.error
    assert "cannot see images" in response.content.decode()
    # The user's message and its image are kept; the model was never asked.
    question = Message.objects.get(role=Message.Role.USER)
    assert question.content == "What is in this picture?" and question.attachments.count() == 1
    assert fake_openai.requests == []


def test_an_edited_question_keeps_its_images(owner_client, owner, fake_openai, vision_model):
    post(owner_client, [images.upload("cat.png", images.png())])
    finished(last_reply())
    question = Message.objects.get(role=Message.Role.USER)
    url = reverse("edit", args=[question.conversation_id, question.pk])
    owner_client.post(url, {"content": "And now?"}, **HTMX)
    finished(last_reply())
    edited = Message.objects.filter(role=Message.Role.USER).latest("id")
    assert edited.content == "And now?"
    assert [a.sha256 for a in edited.attachments.all()] == [
        a.sha256 for a in question.attachments.all()
    ]
    sent = fake_openai.requests[-1]["messages"][-1]["content"]
    assert [part["type"] for part in sent] == ["text", "image_url"]
