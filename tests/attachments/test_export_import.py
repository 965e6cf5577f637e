"""Attachments in the exports: the JSON export carries them (re-importable, the round trip
proven), Markdown names them; a hostile or oversized one in a file is refused."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from conversations.models import Attachment, Conversation
from conversations.transfer import export
from conversations.transfer.chatsite import conversations_import_json
from tests.support import images
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory, UserFactory

pytestmark = pytest.mark.django_db


def attach(
    message, name, data, *, caption="", kind="image", content_type="image/png", width=64, height=48
):
    attachment = Attachment(
        owner=message.conversation.owner,
        conversation=message.conversation,
        message=message,
        kind=kind,
        name=name,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        caption=caption,
    )
    attachment.file.save("f.png", ContentFile(data), save=False)
    attachment.save()
    return attachment


def exported(queryset=None) -> dict:
    return json.loads("".join(export.export_json(queryset or Conversation.objects.all())))


@pytest.fixture
def with_images(owner):
    conversation = ConversationFactory(owner=owner, title="Pictures")
    question = MessageFactory(conversation=conversation, content="What are these?")
    ReplyFactory(conversation=conversation, parent=question, content="Two squares.")
    red = attach(question, "red.png", images.png(64, 48, (255, 0, 0)), caption="A red square")
    blue = attach(question, "blue [1].png", images.png(32, 32, (0, 0, 255)), width=32, height=32)
    return conversation, question, [red, blue]


def test_the_json_export_carries_attachments_and_imports_them_back(owner, with_images, media):
    *_, originals = with_images
    data = exported()
    (entry,) = data["conversations"]
    exported_question = entry["messages"][0]
    assert [a["name"] for a in exported_question["attachments"]] == ["red.png", "blue [1].png"]
    first = exported_question["attachments"][0]
    assert first["caption"] == "A red square" and first["content_type"] == "image/png"
    assert base64.b64decode(first["data"]) == originals[0].file.open("rb").read()
    assert "attachments" not in entry["messages"][1]

    other = UserFactory(username="bob")
    result = conversations_import_json(data=data, owner=other)
    assert result.conversations_imported == 1 and not result.skipped
    copy = Conversation.objects.get(owner=other)
    copied_question = copy.messages.get(role="user")
    copies = list(copied_question.attachments.order_by("id"))
    assert [(a.name, a.caption, a.kind, a.content_type, a.width, a.height) for a in copies] == [
        (a.name, a.caption, a.kind, a.content_type, a.width, a.height) for a in originals
    ]
    for new, old in zip(copies, originals, strict=True):
        assert new.owner == other and new.conversation == copy
        assert new.file.name != old.file.name and new.file.name.startswith(
            f"attachments/{other.pk}/"
        )
        assert new.sha256 == hashlib.sha256(new.file.open("rb").read()).hexdigest()
    # Exported again, the pictures are the same pictures, pixel for pixel.
    again = exported(Conversation.objects.filter(owner=other))["conversations"][0]
    pixels = [_pixels(base64.b64decode(a["data"])) for a in again["messages"][0]["attachments"]]
    assert pixels == [_pixels(a.file.open("rb").read()) for a in originals]


def _pixels(data: bytes) -> tuple:
    image = Image.open(io.BytesIO(data))
    return image.size, image.convert("RGB").tobytes()


def test_importing_twice_creates_nothing_new(owner, with_images):
    data = exported()
    conversations_import_json(data=data, owner=UserFactory(username="bob"))
    count = Attachment.objects.count()
    result = conversations_import_json(data=data, owner=UserFactory(username="bob"))
    assert result.conversations_imported == 0 and Attachment.objects.count() == count


def _entry_with(attachment: dict) -> dict:
    return {
        "format": "chatsite-export",
        "version": 1,
        "conversations": [
            {
                "title": "Hostile",
                "created": "2024-01-01T00:00:00+00:00",
                "messages": [
                    {
                        "id": 1,
                        "role": "user",
                        "content": "hi",
                        "created": "2024-01-01T00:00:00+00:00",
                        "attachments": [attachment],
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("attachment", "reason"),
    [
        (
            {"name": "x.png", "data": base64.b64encode(b"<svg onload=alert(1)>").decode()},
            "not a file this site takes",
        ),
        (
            {"name": "x.png", "data": base64.b64encode(images.pixel_bomb_png()).decode()},
            "too many pixels",
        ),
        ({"name": "x.png", "data": "not base64!"}, "not base64"),
        ({"name": "x.png"}, "has no data"),
    ],
)
def test_a_bad_attachment_skips_its_conversation_with_the_reason(owner, attachment, reason, media):
    result = conversations_import_json(data=_entry_with(attachment), owner=owner)
    assert result.conversations_imported == 0
    (skipped,) = result.skipped
    assert reason in skipped.reason
    assert not Conversation.objects.exists() and not Attachment.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_an_attachment_over_the_size_limit_is_skipped_before_it_is_decoded(owner, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    data = base64.b64encode(b"\x89PNG" + b"\x00" * 5000).decode()
    result = conversations_import_json(
        data=_entry_with({"name": "big.png", "data": data}), owner=owner
    )
    (skipped,) = result.skipped
    assert "CHAT_ATTACHMENT_MAX_BYTES" in skipped.reason


def test_an_image_bigger_than_the_string_limit_still_imports(owner, settings, media):
    settings.CHAT_IMPORT_MAX_STRING_BYTES = 100
    data = base64.b64encode(images.png(50, 50)).decode()
    assert len(data) > 100
    result = conversations_import_json(
        data=_entry_with({"name": "ok.png", "data": data}), owner=owner
    )
    assert result.conversations_imported == 1, result.skipped
    assert Attachment.objects.get().name == "ok.png"


def test_the_markdown_export_links_attachments_by_name(owner, with_images):
    text = "".join(export.export_markdown(Conversation.objects.all()))
    assert "- Attached: [red.png](red.png) (image/png, " in text and "— A red square" in text
    assert "- Attached: [blue \\[1\\].png](blue%20%5B1%5D.png)" in text


def test_a_documents_round_trip_reads_it_again_with_its_passages(owner, media):
    from conversations.models import AttachmentChunk
    from tests.attachments import builders
    from tests.attachments.support import attach as attach_document

    conversation = ConversationFactory(owner=owner, title="Docs")
    question = MessageFactory(conversation=conversation, content="Summarise")
    original = attach_document(question, builders.pdf(["Alpha page.", "Beta page."]), "report.pdf")
    data = exported()
    (item,) = data["conversations"][0]["messages"][0]["attachments"]
    assert (item["kind"], item["name"], item["pages"]) == ("document", "report.pdf", 2)
    other = UserFactory(username="bob")
    assert conversations_import_json(data=data, owner=other).conversations_imported == 1
    copy = Attachment.objects.get(owner=other)
    assert (copy.kind, copy.content_type, copy.pages, copy.sha256) == (
        "document",
        "application/pdf",
        2,
        original.sha256,
    )
    assert "Beta page." in copy.text
    assert AttachmentChunk.objects.filter(attachment=copy).count() == original.chunks.count() > 0
