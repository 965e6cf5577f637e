"""What the model is sent for a message with images: OpenAI content parts, valid against
OpenAI's spec; the budget counts images; a model that cannot see them gets a note."""

from __future__ import annotations

import base64
import io
import re

import pytest
from django.urls import reverse
from PIL import Image

from conversations.generation.context import reply_context
from conversations.llm import vision
from conversations.llm.context import fit
from conversations.models import Attachment, Message
from tests.support import images
from tests.support.fake_openai import validate_request
from tests.support.helpers import HTMX, finished, last_reply

pytestmark = pytest.mark.django_db(transaction=True)

DATA_URL = re.compile(r"^data:image/(png|jpeg);base64,([A-Za-z0-9+/]+=*)$")


def send_images(client, files, content="Describe these", conversation=None):
    url = reverse("send", args=[conversation.pk]) if conversation else reverse("send_new")
    return client.post(url, {"content": content, "attachments": files}, **HTMX)


def test_images_go_as_content_parts_valid_against_openais_spec(
    owner_client, fake_openai, vision_model
):
    files = [
        images.upload("a.png", images.png(30, 20)),
        images.upload("b.jpg", images.image_bytes("JPEG", 50, 40)),
    ]
    send_images(owner_client, files)
    finished(last_reply())
    body = fake_openai.requests[-1]
    validate_request(body)
    question = body["messages"][-1]
    assert question["role"] == "user"
    text, first, second = question["content"]
    assert text == {"type": "text", "text": "Describe these"}
    stored = list(Attachment.objects.order_by("id"))
    for part, attachment in zip([first, second], stored, strict=True):
        assert part["type"] == "image_url" and set(part) == {"type", "image_url"}
        match = DATA_URL.match(part["image_url"]["url"])
        assert match, part["image_url"]["url"][:80]
        assert f"image/{match.group(1)}" == attachment.content_type
        data = base64.b64decode(match.group(2))
        assert data == attachment.file.open("rb").read()
        assert Image.open(io.BytesIO(data)).size == (attachment.width, attachment.height)


def test_the_spec_validator_does_refuse_a_malformed_image_part():
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "url": "data:image/png;base64,AA=="}],
            }
        ],
    }
    with pytest.raises(AssertionError, match="not a valid"):
        validate_request(body)


def test_earlier_images_of_the_branch_are_sent_again(
    owner_client, owner, fake_openai, vision_model
):
    send_images(owner_client, [images.upload("a.png", images.png())])
    finished(last_reply())
    conversation = Message.objects.get(role="user").conversation
    owner_client.post(
        reverse("send", args=[conversation.pk]), {"content": "And the colour?"}, **HTMX
    )
    finished(last_reply())
    body = fake_openai.requests[-1]
    validate_request(body)
    kinds = [
        m["content"] if isinstance(m["content"], str) else [p["type"] for p in m["content"]]
        for m in body["messages"]
    ]
    assert kinds[1] == ["text", "image_url"] and kinds[-1] == "And the colour?"


def test_a_model_without_images_gets_a_note_naming_them(
    owner_client, owner, fake_openai, vision_model, settings
):
    send_images(owner_client, [images.upload("chart.png", images.png())])
    reply = finished(last_reply())
    conversation = reply.conversation
    conversation.model = "fake-model"  # not a vision model
    conversation.save()
    reply.model = "fake-model"
    context = reply_context(reply=reply)
    question = context.messages[-1]
    assert isinstance(question["content"], str)
    assert "“chart.png”" in question["content"] and "cannot see" in question["content"]


def test_openais_tile_formula():
    assert vision.image_tokens(512, 512) == 85 + 170 * 1
    assert vision.image_tokens(1024, 1024) == 85 + 170 * 4  # 768 x 768: 2 x 2 tiles
    assert vision.image_tokens(2048, 4096) == 85 + 170 * 6  # 1024 x 2048 -> 768 x 1536: 2 x 3
    assert vision.image_tokens(100, 50) == 85 + 170


def test_a_fixed_count_per_image_is_a_setting(settings):
    settings.CHAT_IMAGE_TOKENS = 1000
    assert vision.image_tokens(4000, 4000) == 1000


def test_images_count_in_the_budget_and_leave_old_turns_out(settings):
    settings.CHAT_CONTEXT_WINDOWS = {"fake-vision-model": 3000}
    turns = [
        {"role": "user", "content": "old question " * 20},
        {"role": "assistant", "content": "old answer " * 20},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "new"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
    ]
    # A budget of 2,500 tokens: the text alone (~190) fits easily; with the image's 2,400
    # only the question with its image does.
    assert fit([], turns, model="fake-vision-model", max_tokens=500).omitted == 0
    fitted = fit([], turns, model="fake-vision-model", max_tokens=500, image_tokens=[0, 0, 2400])
    assert fitted.omitted == 2
    assert fitted.messages == [turns[-1]]


def test_a_too_long_question_with_an_image_loses_its_text_start_but_keeps_the_image(settings):
    settings.CHAT_CONTEXT_WINDOWS = {"fake-vision-model": 2000}
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    turns = [{"role": "user", "content": [{"type": "text", "text": "word " * 3000}, part]}]
    fitted = fit([], turns, model="fake-vision-model", max_tokens=100, image_tokens=[765])
    (message,) = fitted.messages
    text, image = message["content"]
    assert text["text"].startswith("[The start of this message was left out")
    assert image == part
    # The image's 765 tokens come out of the text: without them more text is kept.
    (without,) = fit([], turns, model="fake-vision-model", max_tokens=100).messages
    kept, kept_without = len(text["text"]), len(without["content"][0]["text"])
    assert kept < kept_without < len("word " * 3000)
    assert kept_without - kept >= 765 * 3 - 10


def test_a_server_refusing_images_is_remembered_and_the_next_image_refused_before_any_call(
    owner_client, fake_openai, vision_model
):
    fake_openai.refuse_images = True
    send_images(owner_client, [images.upload("a.png", images.png())])
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "does not take images" in reply.error and "image_url is only supported" in reply.error
    assert not vision.takes_images(vision_model)
    asked = len(fake_openai.requests)
    conversation = reply.conversation
    # The next message with an image: refused at once, kept, the server not asked again.
    url = reverse("send", args=[conversation.pk])
    owner_client.post(
        url, {"content": "Again", "attachments": [images.upload("b.png", images.png())]}, **HTMX
    )
    again = finished(last_reply())
    assert again.status == Message.Status.ERROR and "cannot see images" in again.error
    assert len(fake_openai.requests) == asked
    assert Message.objects.filter(role="user", content="Again").get().attachments.count() == 1
    # Text still goes to the model, with a note where the images were.
    fake_openai.refuse_images = False
    owner_client.post(url, {"content": "Just text"}, **HTMX)
    assert finished(last_reply()).status == Message.Status.COMPLETE
    sent = fake_openai.requests[-1]["messages"]
    assert all(isinstance(m["content"], str) for m in sent)
    assert "cannot see" in sent[1]["content"]


def test_which_models_take_images(settings):
    settings.CHAT_VISION_MODELS = ["gpt-4o*", "*Vision*"]
    assert vision.takes_images("gpt-4o-mini") and vision.takes_images("llama-3.2-11b-vision")
    assert not vision.takes_images("gpt-3.5-turbo")
    # The local model never does, whatever the patterns say.
    settings.CHAT_VISION_MODELS = ["*"]
    assert not vision.takes_images("local:smollm2-360m-instruct")
    assert vision.takes_images("anything-remote")
