"""A ChatGPT export's images (the files in its zip) come in as attachments of their
messages, cleaned as uploads are; missing, damaged or oversized ones are left out."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from conversations.models import Attachment, Conversation, Message
from conversations.transfer.chatgpt_files import file_id
from conversations.transfer.jobs import file_import
from tests.support import images
from tests.support.chatgpt_export import ChatGPTConversation, dumps, zipped

pytestmark = pytest.mark.django_db


def image_part(pointer: str) -> dict:
    return {
        "content_type": "image_asset_pointer",
        "asset_pointer": pointer,
        "size_bytes": 1,
        "width": 64,
        "height": 48,
    }


def conversation_with_images(*pointers: str, text: str = "What is this?") -> dict:
    c = ChatGPTConversation("Pictures")
    q = c.add(
        c.system,
        "user",
        content={"content_type": "multimodal_text", "parts": [*map(image_part, pointers), text]},
    )
    c.add(q, "assistant", "A cat.")
    return c.build()


def write(tmp_path, data: bytes) -> str:
    path = tmp_path / "export.zip"
    path.write_bytes(data)
    return str(path)


def test_file_ids_of_old_and_new_pointers():
    assert file_id("file-service://file-AbC123") == "file-AbC123"
    assert file_id("sediment://file_00000000a1b2c3") == "file_00000000a1b2c3"
    assert file_id("https://example.com/x.png") is None


def test_the_zips_images_become_attachments_of_their_messages(owner, tmp_path, media):
    gps_photo = images.jpeg_with_gps(80, 40)
    export = conversation_with_images(
        "file-service://file-Cat123", "sediment://file_00000000beef", "file-service://file-Missing"
    )
    data = zipped(
        {
            "conversations.json": dumps([export]),
            "file-Cat123-cat.png": images.png(64, 48),
            "user-abc/file_00000000beef-7f1e.jpeg": gps_photo,
        }
    )
    source, result = file_import(path=write(tmp_path, data), owner=owner)
    assert (source, result.conversations_imported) == ("chatgpt", 1), result.skipped
    question = Message.objects.get(role="user")
    cat, photo = question.attachments.order_by("id")
    assert (cat.name, cat.content_type, cat.width, cat.height) == (
        "file-Cat123-cat.png",
        "image/png",
        64,
        48,
    )
    assert (photo.name, photo.content_type) == ("file_00000000beef-7f1e.jpeg", "image/jpeg")
    assert cat.owner == owner and cat.conversation == question.conversation
    # Cleaned as an upload is: the photo's GPS is gone, its orientation applied.
    stored = Image.open(io.BytesIO(photo.file.open("rb").read()))
    assert not stored.getexif() and stored.size == (40, 80)
    # The missing one is left out; the text keeps its placeholders.
    assert question.attachments.count() == 2
    assert "What is this?" in question.content


def test_damaged_or_oversized_files_are_left_out_and_the_conversation_kept(
    owner, tmp_path, settings, media
):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 50_000
    noisy = Image.effect_noise((400, 400), 80).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    assert len(out.getvalue()) > 50_000
    export = conversation_with_images(
        "file-service://file-abc123", "file-service://file-Big1", "file-service://file-Svg1"
    )
    data = zipped(
        {
            "conversations.json": dumps([export]),
            "file-Big1-huge.png": out.getvalue(),
            "file-Svg1-evil.png": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        }
    )  # zipped() adds file-abc123-image.png: a PNG header and zeros (damaged)
    _source, result = file_import(path=write(tmp_path, data), owner=owner)
    assert result.conversations_imported == 1
    assert not Attachment.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]
    assert Conversation.objects.get().messages.count() == 2


def test_a_zip_bomb_member_is_read_only_up_to_the_limit(owner, tmp_path, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 100_000
    export = conversation_with_images("file-service://file-Bomb")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", dumps([export]))
        archive.writestr("file-Bomb-x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50_000_000)
    _source, result = file_import(path=write(tmp_path, buffer.getvalue()), owner=owner)
    assert result.conversations_imported == 1 and not Attachment.objects.exists()


def test_a_plain_conversations_json_imports_without_images(owner, tmp_path):
    path = tmp_path / "conversations.json"
    path.write_bytes(dumps([conversation_with_images("file-service://file-Cat123")]))
    _source, result = file_import(path=str(path), owner=owner)
    assert result.conversations_imported == 1 and not Attachment.objects.exists()
