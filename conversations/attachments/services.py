"""Writes of attachments: check and prepare uploads (nothing is saved unless all are
good), save them with their message, copy them to an edited message, delete files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from conversations.attachments import documents, images
from conversations.attachments.errors import AttachmentRejected as AttachmentRejected
from conversations.models import Attachment, AttachmentChunk, Message, attachment_storage

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

logger = logging.getLogger(__name__)

NAME_CHARS = 255
CAPTION_CHARS = 300
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".bmp", ".svg", ".tif", ".tiff"}


@dataclass(frozen=True)
class Prepared:
    """An upload checked and ready to save: what is stored and what is recorded of it."""

    kind: str
    name: str
    content_type: str
    data: bytes
    extension: str
    caption: str = ""
    width: int | None = None
    height: int | None = None
    text: str = ""
    pages: int | None = None
    # The extracted document whose passages are saved with it.
    document: documents.Document | None = None


def clean_name(name: str) -> str:
    """The file's own name, without any folder, NUL or control character, shortened."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if len(base) > NAME_CHARS:
        suffix = PurePosixPath(base).suffix[:16]
        base = base[: NAME_CHARS - len(suffix)] + suffix
    return base or "attachment"


def prepare(uploads: Sequence[UploadedFile[Any]], captions: Sequence[str] = ()) -> list[Prepared]:
    """Check and prepare every upload, or raise `AttachmentRejected` for the first bad one.

    At most CHAT_ATTACHMENTS_PER_MESSAGE files of at most CHAT_ATTACHMENT_MAX_BYTES each;
    each must be an image (`images.read_image`) or a document `documents` reads. Nothing
    is written: the caller saves them all (`attachments_save`) or none.
    """
    count_limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if len(uploads) > count_limit:
        raise AttachmentRejected(
            f"That is {len(uploads)} files; a message can carry at most {count_limit}."
        )
    prepared = []
    for index, upload in enumerate(uploads):
        name = clean_name(upload.name or "")
        caption = clean_caption(captions[index]) if index < len(captions) else ""
        prepared.append(_prepare_one(upload, name=name, caption=caption))
    return prepared


def _read(upload: UploadedFile[Any], name: str) -> bytes:
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise AttachmentRejected(
            f"“{name}” is {upload.size / 2**20:.1f} MiB; the largest attachment is "
            f"{limit / 2**20:.0f} MiB."
        )
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise AttachmentRejected(f"“{name}” is larger than {limit / 2**20:.0f} MiB.")
    if not data:
        raise AttachmentRejected(f"“{name}” is empty.")
    return bytes(data)


def _prepare_one(upload: UploadedFile[Any], *, name: str, caption: str) -> Prepared:
    return prepare_data(_read(upload, name), name=name, caption=caption)


def prepare_data(data: bytes, *, name: str, caption: str = "") -> Prepared:
    """One file's bytes checked and prepared as an upload is (an import's, say), or
    `AttachmentRejected`. `name` and `caption` are cleaned by the caller."""
    if len(data) > settings.CHAT_ATTACHMENT_MAX_BYTES:
        limit = settings.CHAT_ATTACHMENT_MAX_BYTES
        raise AttachmentRejected(f"“{name}” is larger than {limit / 2**20:.0f} MiB.")
    if not data:
        raise AttachmentRejected(f"“{name}” is empty.")
    head = data[:4096]
    if images.looks_like_image(head):
        image = images.read_image(data, name=name)
        return Prepared(
            kind=Attachment.Kind.IMAGE,
            name=name,
            content_type=image.content_type,
            data=image.data,
            extension=image.extension,
            caption=caption,
            width=image.width,
            height=image.height,
        )
    prepared = _document(data, name=name, head=head, caption=caption)
    if prepared is None:
        raise AttachmentRejected(
            f"“{name}” is not a file this site takes: attach an image "
            f"({images.ACCEPTED}) or a document ({documents.SUPPORTED})."
        )
    return prepared


def _document(data: bytes, *, name: str, head: bytes, caption: str) -> Prepared | None:
    """The document in `data`, None if it is not one `documents` reads.

    A file named as an image (".png"…) that is not one is no document either: an SVG or
    an HTML page in disguise is refused, not read as text.
    """
    if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
        return None
    if not documents.is_document(name, head):
        return None
    document = documents.read_document(data, name=name)
    return Prepared(
        kind=Attachment.Kind.DOCUMENT,
        name=name,
        content_type=document.content_type,
        data=data,
        extension=PurePosixPath(name).suffix.lower()[:10],
        caption=caption,
        text=document.text,
        pages=document.pages,
        document=document,
    )


def clean_caption(caption: str) -> str:
    return "".join(ch for ch in caption.strip() if ch.isprintable())[:CAPTION_CHARS]


def attachments_save(*, message: Message, prepared: Iterable[Prepared]) -> list[Attachment]:
    """Store the files and record them as `message`'s attachments (in the caller's transaction).

    If one cannot be stored, the files already written are deleted and the error raised:
    the caller's transaction then leaves nothing of the message behind.
    """
    conversation = message.conversation
    saved: list[Attachment] = []
    try:
        for item in prepared:
            attachment = Attachment(
                owner_id=conversation.owner_id,
                conversation=conversation,
                message=message,
                kind=item.kind,
                name=item.name,
                content_type=item.content_type,
                size=len(item.data),
                sha256=hashlib.sha256(item.data).hexdigest(),
                width=item.width,
                height=item.height,
                caption=item.caption,
                text=item.text,
                pages=item.pages,
            )
            # `name` only gives the suffix: attachment_path picks a random file name.
            attachment.file.save(f"upload{item.extension}", ContentFile(item.data), save=False)
            saved.append(attachment)
            if item.kind == Attachment.Kind.IMAGE:
                # Made once here: a thread's thumbnails are then read, never decoded again.
                thumb = images.thumbnail_of(item.data, content_type=item.content_type)
                attachment.file.storage.save(
                    images.thumbnail_name(attachment.file.name or ""), ContentFile(thumb)
                )
            attachment.save()
            if item.document is not None:
                documents.save_chunks(attachment, item.document)
    except BaseException:
        files_delete(a.file.name or "" for a in saved)
        raise
    remember(message, saved)
    return saved


def remember(message: Message, attachments: list[Attachment]) -> None:
    """Give `message` its attachments as if prefetched: showing and logging it just sent
    costs no query."""
    found = message.attachments.all()
    found._result_cache = list(attachments)
    found._prefetch_done = True  # type: ignore[attr-defined]
    cache = getattr(message, "_prefetched_objects_cache", {})
    message._prefetched_objects_cache = {**cache, "attachments": found}  # type: ignore[attr-defined]


def attachments_copy(*, source: Message, target: Message) -> list[Attachment]:
    """Give `target` (an edited question) the attachments of `source`: the same stored
    files (same conversation: deleting it deletes them once), passages and all."""
    copies = []
    for copy in source.attachments.all():
        chunks = list(copy.chunks.all())
        copy.pk = None
        copy.message = target
        copy.save()
        AttachmentChunk.objects.bulk_create(
            AttachmentChunk(
                attachment=copy,
                index=chunk.index,
                page_from=chunk.page_from,
                page_to=chunk.page_to,
                text=chunk.text,
            )
            for chunk in chunks
        )
        copies.append(copy)
    remember(target, copies)
    return copies


def files_delete(names: Iterable[str]) -> None:
    """Delete stored files by name (each once), with their thumbnails; one that cannot be
    deleted is logged."""
    storage = attachment_storage()
    for name in sorted(set(names)):
        if not name:
            continue
        for stored in (name, images.thumbnail_name(name)):
            try:
                storage.delete(stored)
            except Exception:
                logger.exception("Could not delete the attachment file %s", stored)


def file_delete_after(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """post_delete of an Attachment, however it goes (a conversation, a user, in the
    admin): its file is deleted once the deletion is committed, unless another row (an
    edited question's copy) still holds it."""
    name = instance.file.name or ""
    if not name:
        return

    def delete() -> None:
        if not Attachment.objects.filter(file=name).exists():
            files_delete([name])

    transaction.on_commit(delete)
