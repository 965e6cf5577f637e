"""The files of a ChatGPT export's zip (the images users attached), found by the file id
of an `image_asset_pointer` ("file-service://file-XXX", "sediment://file_XXX") in the
zip member names that carry it ("file-XXX-photo.png", "…/file_XXX-<uuid>.png").

Each one is read with a bound (CHAT_ATTACHMENT_MAX_BYTES: a member that unpacks to more
is not read on), then checked and cleaned as an upload is (`attachment_services`).
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings

from conversations.attachments import services as attachment_services

logger = logging.getLogger(__name__)

_FILE_ID = re.compile(r"^(file[-_][A-Za-z0-9]+)")
IMAGE_POINTER = "image_asset_pointer"


def file_id(pointer: str) -> str | None:
    """The file id of an asset pointer ("file-service://file-AbC" -> "file-AbC")."""
    found = _FILE_ID.match(pointer.rpartition("://")[2])
    return found.group(1) if found else None


def image_pointers(content: dict[str, Any]) -> list[str]:
    """The asset pointers of the images in a message's content parts."""
    parts = content.get("parts")
    pointers = []
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, dict) and part.get("content_type") == IMAGE_POINTER:
            pointer = part.get("asset_pointer")
            if isinstance(pointer, str) and file_id(pointer):
                pointers.append(pointer)
    return pointers


class ZipFiles:
    """A ChatGPT zip's members by file id (one zip, opened by the caller)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            name = PurePosixPath(info.filename).name
            if info.is_dir() or info.filename.startswith("__MACOSX/") or name.endswith(".json"):
                continue
            found = _FILE_ID.match(name)
            if found:
                # The first of a name wins: the zip check refused duplicates already.
                self.members.setdefault(found.group(1), info)

    def prepared(self, pointers: Iterable[str]) -> list[attachment_services.Prepared]:
        """The images `pointers` name that are in the zip and good; the others are left
        out (their "[image]" placeholder stays in the text)."""
        found = []
        for pointer in pointers:
            item = self._prepared(pointer)
            if item is not None:
                found.append(item)
        return found[: settings.CHAT_ATTACHMENTS_PER_MESSAGE]

    def _prepared(self, pointer: str) -> attachment_services.Prepared | None:
        info = self.members.get(file_id(pointer) or "")
        if info is None:
            return None
        limit = settings.CHAT_ATTACHMENT_MAX_BYTES
        if info.file_size > limit:
            return None
        name = attachment_services.clean_name(PurePosixPath(info.filename).name)
        try:
            with self.archive.open(info) as member:
                data = member.read(limit + 1)
            return attachment_services.prepare_data(data, name=name)
        except attachment_services.AttachmentRejected as exc:
            logger.info("ChatGPT import: %s left out: %s", info.filename, exc.user_message)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            logger.info("ChatGPT import: %s cannot be read: %s", info.filename, exc)
        return None
