"""Documents attached as the upload will attach them: read, stored, split into passages."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile

from conversations.attachments.documents import read_document, save_chunks
from conversations.models import Attachment, Message


def attach(message: Message, data: bytes, name: str) -> Attachment:
    document = read_document(data, name=name)
    attachment = Attachment.objects.create(
        owner=message.conversation.owner,
        conversation=message.conversation,
        message=message,
        kind=Attachment.Kind.DOCUMENT,
        file=ContentFile(data, name=name),
        name=name,
        content_type=document.content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    save_chunks(attachment, document)
    return attachment
