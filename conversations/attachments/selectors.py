"""Reads of attachments: one of the user's, and what a message shows or sends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conversations.attachments import images
from conversations.models import Attachment

if TYPE_CHECKING:
    from django.contrib.auth.models import User


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
    """The thumbnail of a stored image: the one made at upload, or for a file stored
    without one (before thumbnails were kept), made now from the image."""
    storage = attachment.file.storage
    try:
        with storage.open(images.thumbnail_name(attachment.file.name or ""), "rb") as handle:
            return bytes(handle.read())
    except OSError:  # none kept (FileNotFoundError), or a store that cannot say
        return images.thumbnail_of(
            attachment_bytes(attachment), content_type=attachment.content_type
        )
