"""Reads of attachments: one of the user's, and what a message shows or sends."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from conversations.models import Attachment

if TYPE_CHECKING:
    from django.contrib.auth.models import User

THUMBNAIL_SIDE = 320


def attachment_get(*, user: User, conversation_id: int, attachment_id: int) -> Attachment:
    """The user's attachment `attachment_id` of conversation `conversation_id`, else
    Attachment.DoesNotExist (the same for one that does not exist and one of another user)."""
    return Attachment.objects.get(
        pk=attachment_id, conversation_id=conversation_id, owner=user, conversation__owner=user
    )


def attachment_bytes(attachment: Attachment) -> bytes:
    """The stored file's bytes."""
    with attachment.file.storage.open(attachment.file.name or "", "rb") as handle:
        return bytes(handle.read())


def thumbnail(attachment: Attachment) -> bytes:
    """A small PNG (or JPEG, for photos) of a stored image, made from the stored file
    (already cleaned and bounded at upload)."""
    with Image.open(io.BytesIO(attachment_bytes(attachment)), formats=("PNG", "JPEG")) as image:
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if attachment.content_type == "image/jpeg":
            image.convert("RGB").save(out, format="JPEG", quality=85)
        else:
            image.save(out, format="PNG")
        return out.getvalue()
