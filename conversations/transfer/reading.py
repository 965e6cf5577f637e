"""Reading an export file: recognising it (`upload_inspect`) and importing it, the one
pipeline (`file_import`) that the upload page, the admin and `manage.py
import_conversations` all run (the first two through `jobs`).

Accepted files, recognised by their content (not their name):

- a ChatGPT data export `.zip`: its `conversations.json`, or the sharded
  `conversations-000.json`, `conversations-001.json`, … of newer exports;
- one of those JSON files on its own (an array of ChatGPT conversations);
- chatsite's own JSON export (`{"format": "chatsite-export", ...}`).

Nothing is read whole: zip members are read as streams and JSON arrays element by
element (`jsonstream`), so memory stays flat whatever the size of the file. The reading
can be stopped between conversations and after any chunk (`should_stop`).
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings

from conversations import chatlog
from conversations.models import Conversation
from conversations.transfer import chatgpt, chatgpt_files, limits
from conversations.transfer import chatsite as chatsite_json
from conversations.transfer.jsonstream import JSONStream, JSONStreamError
from conversations.transfer.results import (
    ImportFormatError,
    ImportResult,
    report_text,
    skipped,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_SHARD = re.compile(r"^conversations(-\d+)?\.json$")

CHATGPT = "chatgpt"
CHATSITE = "chatsite"


class ImportRefused(ImportFormatError):
    """The file cannot be imported at all; the message says why, for the user."""


class OwnerRequired(ImportRefused):
    """A ChatGPT export, imported without an owner: it names no users to give it to."""


class ImportCancelled(Exception):
    """The job was cancelled while it ran; `result` is what was imported until then.

    Not an ImportFormatError (a ValueError): the importers' own handlers must let it by.
    """

    def __init__(self, result: ImportResult) -> None:
        super().__init__("cancelled")
        self.result = result


OWNER_REQUIRED = (
    "Not a chatsite export but a ChatGPT one, which names no users: its conversations "
    "need an owner."
)


@dataclass(frozen=True)
class Upload:
    """What an uploaded file was recognised as."""

    is_zip: bool
    members: list[str]  # the JSON members to read, in order (zip only)
    total: int  # bytes to read (uncompressed, for a zip)


_NOT_AN_EXPORT = (
    "This file is not an export chatsite can read. Upload the .zip of a ChatGPT data "
    "export, its conversations.json (or conversations-000.json, …), or a chatsite JSON "
    "export."
)


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    found = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and not info.filename.startswith("__MACOSX/")
        and _SHARD.match(PurePosixPath(info.filename).name)
    ]
    shards = [i for i in found if PurePosixPath(i.filename).name != "conversations.json"]
    if shards:
        return sorted(shards, key=lambda i: PurePosixPath(i.filename).name)
    # Several conversations.json (a zip of zips unpacked?): the one nearest the top.
    return sorted(found, key=lambda i: (i.filename.count("/"), i.filename))[:1]


# A zip member smaller than this is not checked for its compression ratio: it cannot be a bomb.
RATIO_FLOOR = 1024 * 1024


def _zip_check(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip that is costly to read before reading it: ImportRefused says why.

    Duplicate member names (which one is read is up to the reader), members declaring more
    than CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES in all, and members compressed more than
    CHAT_IMPORT_MAX_COMPRESSION_RATIO times (a zip bomb). The sizes are those the zip
    declares; what is actually read is counted too (`file_import`).
    """
    seen: set[str] = set()
    for info in archive.infolist():
        if info.filename in seen:
            raise ImportRefused(
                f"The zip holds two files named {report_text(info.filename, 200)!r}; a zip "
                "made that way is refused (which of them is read would be a guess)."
            )
        seen.add(info.filename)
    # Members of other names whose data is the same bytes of the zip: a small zip could
    # then list one member a hundred times as conversations-000.json, -001.json, …
    starts: set[int] = set()
    for m in members:
        if m.header_offset in starts:
            raise ImportRefused(
                f"The zip lists {report_text(m.filename, 200)!r} over the data of another "
                "file; a zip made that way is refused (it would be read again and again)."
            )
        starts.add(m.header_offset)
    limit = settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES
    total = sum(m.file_size for m in members)
    if total > limit:
        raise ImportRefused(
            f"The zip's conversations unpack to {limits.mib(total)}; the most an import reads is "
            f"{limits.mib(limit)} (CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES)."
        )
    ratio_limit = settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size >= RATIO_FLOOR and ratio > ratio_limit:
            raise ImportRefused(
                f"{m.filename} is compressed {ratio:,.0f} times ({limits.mib(m.compress_size)} "
                f"unpacking to {limits.mib(m.file_size)}); more than {ratio_limit} times "
                "(CHAT_IMPORT_MAX_COMPRESSION_RATIO) is refused as a likely zip bomb: no "
                "export compresses that well."
            )


def upload_inspect(path: str) -> Upload:
    """Recognise the file at `path` from its first bytes (and a zip's directory).

    Raises ImportRefused, with a message for the user, when it cannot be imported.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise ImportRefused("The file is empty." if not head else "The file has no content.")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                members = _zip_members(archive)
                _zip_check(archive, members)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportRefused(f"The zip file cannot be read: {exc}.") from exc
        if not members:
            raise ImportRefused(
                "The zip has no conversations.json (nor conversations-000.json, …): is it "
                "a ChatGPT data export?"
            )
        return Upload(True, [m.filename for m in members], sum(m.file_size for m in members))
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] not in (b"[", b"{"):
        raise ImportRefused(_NOT_AN_EXPORT)
    most = settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES
    if size > most:
        raise ImportRefused(
            f"The file is {limits.mib(size)}; the most an import reads is {limits.mib(most)} "
            "(CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES)."
        )
    return Upload(False, [], size)


# --- Running an import ----------------------------------------------------------------


Progress = Callable[[int, int, ImportResult], None]


def _log(conversation: Conversation, messages: int) -> None:
    chatlog.log_import(conversation, username=conversation.owner.get_username(), messages=messages)


def _import_chatgpt(
    items: Iterable[Any],
    *,
    owner: User | None,
    result: ImportResult,
    start: int,
    check: Callable[[], None],
    files: chatgpt_files.ZipFiles | None = None,
) -> int:
    if owner is None:
        raise OwnerRequired(OWNER_REQUIRED)
    position = start
    for position, raw in enumerate(items, start=start + 1):
        check()
        problem = limits.entry_problem(raw)
        if problem is not None:
            result.skipped.append(skipped(position, raw, problem))
            continue
        before = result.messages_imported
        conversation = chatgpt.conversation_import(
            raw=raw, position=position, owner=owner, result=result, files=files
        )
        if conversation is not None:
            _log(conversation, result.messages_imported - before)
    return position


def _import_stream(
    stream: JSONStream,
    *,
    owner: User | None,
    result: ImportResult,
    start: int,
    check: Callable[[], None],
    files: chatgpt_files.ZipFiles | None = None,
) -> tuple[str, int]:
    """Import one JSON document; returns (its format, the last entry position)."""
    if stream.first_char() == "[":
        items = stream.array_items()
        return CHATGPT, _import_chatgpt(
            items, owner=owner, result=result, start=start, check=check, files=files
        )
    members = stream.object_members(stream=chatsite_json.STREAMED)

    def imported(conversation: Conversation, messages: int) -> None:
        _log(conversation, messages)
        check()

    try:
        header, last = chatsite_json.document_import(
            members, owner=owner, result=result, start=start, on_imported=imported
        )
    except ImportFormatError as exc:
        # An object with "conversations" but another "format": not ours, say what is.
        wrong = str(exc) == chatsite_json.NOT_CHATSITE
        raise ImportRefused(_NOT_AN_EXPORT if wrong else str(exc)) from exc
    if last is not None:
        return CHATSITE, last
    if "mapping" in header:
        # One ChatGPT conversation on its own.
        return CHATGPT, _import_chatgpt(
            [header], owner=owner, result=result, start=start, check=check, files=files
        )
    raise ImportRefused(_NOT_AN_EXPORT)


def file_import(
    *,
    path: str,
    owner: User | None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, ImportResult]:
    """Import the export at `path`; returns (format, result). The one way files are imported.

    The upload page, the admin (both through `import_job_create`) and `manage.py
    import_conversations` come here. Conversations go to `owner`; with None, a chatsite
    export's go to the users they were exported by, and a ChatGPT export (which names
    none) raises OwnerRequired before anything is imported.

    Each conversation is imported in a transaction of its own, so an error part-way
    (ImportRefused, raised for a file that turns out unreadable) keeps what came before.
    `should_stop` is asked between conversations and after every chunk read (so within a
    fraction of a second even inside one huge member); when it answers True the import
    stops with ImportCancelled, which carries what was imported.
    """
    upload = upload_inspect(path)
    if upload.is_zip and owner is None:
        raise OwnerRequired(OWNER_REQUIRED)
    result = ImportResult()
    done = 0  # bytes of the members already read

    most = settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES

    def check() -> None:
        if should_stop is not None and should_stop():
            raise ImportCancelled(result)

    def progress(read: int) -> None:
        check()
        # What is read, not what the zip declares: a member may unpack to more.
        if done + read > most:
            raise ImportRefused(
                f"The file holds more than {limits.mib(most)} of JSON, the most an import "
                "reads (CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES); the conversations before that "
                "point are imported."
            )
        if on_progress is not None:
            on_progress(done + read, upload.total, result)

    def stream(file: IO[bytes]) -> JSONStream:
        return JSONStream(file, max_value_bytes=limits.conversation_limit(), on_read=progress)

    source = CHATGPT
    position = 0
    try:
        if not upload.is_zip:
            with open(path, "rb") as f:
                source, position = _import_stream(
                    stream(f), owner=owner, result=result, start=0, check=check
                )
        else:
            with zipfile.ZipFile(path) as archive:
                files = chatgpt_files.ZipFiles(archive)
                for name in upload.members:
                    member: IO[bytes]
                    with archive.open(name) as member:
                        try:
                            source, position = _import_stream(
                                stream(member),
                                owner=owner,
                                result=result,
                                start=position,
                                check=check,
                                files=files,
                            )
                        except (JSONStreamError, ImportRefused) as exc:
                            raise ImportRefused(f"{name}: {exc}") from exc
                    done += archive.getinfo(name).file_size
    except JSONStreamError as exc:
        raise ImportRefused(str(exc)) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ImportRefused(f"The zip file is damaged: {exc}.") from exc
    except (NotImplementedError, RuntimeError) as exc:
        # Encrypted members, or a compression method Python cannot read.
        raise ImportRefused(f"The zip file cannot be read: {exc}.") from exc
    # An array of things that are not conversations at all: the wrong file, not a bad entry.
    if (
        source == CHATGPT
        and result.skipped
        and not result.conversations_imported
        and all(s.reason in (chatgpt.NO_MAPPING, chatgpt.NOT_AN_OBJECT) for s in result.skipped)
    ):
        raise ImportRefused(_NOT_AN_EXPORT)
    return source, result
