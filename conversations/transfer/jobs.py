"""Importing an export file: the one pipeline (`file_import`), and background jobs for uploads.

Accepted files, recognised by their content (not their name):

- a ChatGPT data export `.zip`: its `conversations.json`, or the sharded
  `conversations-000.json`, `conversations-001.json`, … of newer exports;
- one of those JSON files on its own (an array of ChatGPT conversations);
- chatsite's own JSON export (`{"format": "chatsite-export", ...}`).

Nothing is read whole: zip members are read as streams and JSON arrays element by
element (`jsonstream`), so memory stays flat whatever the size of the file.
`file_import` is what the upload page, the admin and `manage.py import_conversations`
all run.

The upload is saved to a temporary file (in CHAT_IMPORT_TEMP_DIR) and an `ImportJob` row
is created; a thread of this process imports it, writing its progress (bytes read, counts)
to the row, which the import page polls. One import runs per user at a time. A job can be
cancelled (`import_job_cancel`): its worker sees it within CANCEL_CHECK_INTERVAL and stops,
keeping what it imported. A job whose thread died with its process stops showing progress:
after `STALE_AFTER` seconds without any it is marked failed ("interrupted by a restart");
each process does that, and removes the uploads no live job uses, when it starts
(`import_startup_sweep`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations import chatlog
from conversations.models import Conversation, ImportJob
from conversations.transfer import chatgpt, limits
from conversations.transfer import chatsite as chatsite_json
from conversations.transfer.jsonstream import JSONStream, JSONStreamError
from conversations.transfer.results import (
    REASON_LIMIT,
    ImportFormatError,
    ImportResult,
    report_text,
    skipped,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile

logger = logging.getLogger(__name__)

# Seconds without progress after which a queued or running job is taken as dead. The
# worker records progress at least every PROGRESS_INTERVAL while it reads.
STALE_AFTER = 60.0
PROGRESS_INTERVAL = 0.5
# How often a running import asks the database whether it was cancelled: between
# conversations and on every chunk read (256 KiB), at most this often.
CANCEL_CHECK_INTERVAL = 0.25
# Skipped entries listed in a job's report; the counts cover all of them.
REPORT_LIMIT = 1000

_SHARD = re.compile(r"^conversations(-\d+)?\.json$")

CHATGPT = "chatgpt"
CHATSITE = "chatsite"


class ImportRefused(ImportFormatError):
    """The file cannot be imported at all; the message says why, for the user."""


class OwnerRequired(ImportRefused):
    """A ChatGPT export, imported without an owner: it names no users to give it to."""


class ImportBusy(ImportRefused):
    """The owner already has an import queued or running; `job` is that one."""

    def __init__(self, message: str, job: ImportJob) -> None:
        super().__init__(message)
        self.job = job


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
            raw=raw, position=position, owner=owner, result=result
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
) -> tuple[str, int]:
    """Import one JSON document; returns (its format, the last entry position)."""
    if stream.first_char() == "[":
        items = stream.array_items()
        return CHATGPT, _import_chatgpt(items, owner=owner, result=result, start=start, check=check)
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
            [header], owner=owner, result=result, start=start, check=check
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


# --- Jobs -------------------------------------------------------------------------------


def _report(result: ImportResult) -> list[dict[str, Any]]:
    return [
        {"entry": s.entry, "title": s.title, "reason": s.reason, "duplicate": s.duplicate}
        for s in result.skipped[:REPORT_LIMIT]
    ]


def _counts(result: ImportResult) -> dict[str, int]:
    return {
        "conversations_imported": result.conversations_imported,
        "messages_imported": result.messages_imported,
        "conversations_skipped": result.conversations_skipped,
        "duplicates": len(result.duplicates),
    }


def _cancelled_text(result: ImportResult) -> str:
    n = result.conversations_imported
    return (
        f"Cancelled after {n} conversation{'' if n == 1 else 's'}. What was imported is kept; "
        "uploading the file again imports the rest."
    )


# --- Where uploads wait -------------------------------------------------------------------

# A job's upload is `job-<id>.upload`; before its job exists, `incoming-<random>.upload`.
_JOB_UPLOAD = re.compile(r"^job-(\d{1,18})\.upload$")
INCOMING_PREFIX = "incoming-"


def upload_dir() -> str:
    """This installation's folder for uploads being imported (created, private)."""
    path = settings.CHAT_IMPORT_TEMP_DIR or os.path.join(
        tempfile.gettempdir(),
        "chatsite-imports-" + hashlib.sha256(str(settings.BASE_DIR).encode()).hexdigest()[:12],
    )
    os.makedirs(path, mode=0o700, exist_ok=True)
    return str(path)


def _job_upload_path(job_id: int) -> str:
    return os.path.join(upload_dir(), f"job-{job_id}.upload")


def _active(jobs: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
    """Queued, running, or cancelled but not yet stopped (see ImportJob.active)."""
    return jobs.filter(
        Q(status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING])
        | Q(status=ImportJob.Status.CANCELLED, error="")
    )


def _busy_message(job: ImportJob, *, owner: User, requested_by: User) -> str:
    who = "You already have" if owner == requested_by else f"{owner.get_username()} already has"
    return (
        f"{who} an import running ({report_text(job.filename, 200)}, "
        f"{job.percent}% read). One import runs at a time: wait for it to finish, or cancel it, "
        "then upload this file again. This upload was not kept."
    )


def import_job_create(*, owner: User, upload: UploadedFile[Any], requested_by: User) -> ImportJob:
    """Save `upload` to a temporary file, check it, and start importing it for `owner`.

    Raises ImportRefused (and keeps nothing) when the file cannot be an export, and
    ImportBusy (a refusal too) when the owner already has an import queued or running.
    Refused rather than queued: a queue would hold the upload on disk for as long as the
    other import takes, and show a job that is not moving; importing again later only
    adds what is new, so the user loses nothing by being told at once, and sees why.
    """
    import_jobs_expire(owner=owner)
    running = _active(ImportJob.objects.filter(owner=owner)).first()
    if running is not None:
        raise ImportBusy(_busy_message(running, owner=owner, requested_by=requested_by), running)
    fd, path = tempfile.mkstemp(prefix=INCOMING_PREFIX, suffix=".upload", dir=upload_dir())
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in upload.chunks(1024 * 1024):
                out.write(chunk)
        inspected = upload_inspect(path)
        job = ImportJob.objects.create(
            owner=owner,
            requested_by=requested_by,
            filename=(upload.name or "upload")[:255],
            bytes_total=inspected.total,
        )
        # Two uploads at once (two tabs, two workers): the older job wins, the other goes.
        earlier = _active(ImportJob.objects.filter(owner=owner, pk__lt=job.pk)).first()
        if earlier is not None:
            job.delete()
            raise ImportBusy(
                _busy_message(earlier, owner=owner, requested_by=requested_by), earlier
            )
        job_path = _job_upload_path(job.pk)
        os.replace(path, job_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    _start(job.pk, job_path)
    return job


def import_job_cancel(*, job: ImportJob) -> bool:
    """Ask `job` to stop; False when it had already ended.

    Its worker (in whichever process runs it) sees the status within a fraction of a
    second and stops, keeping what it imported and saying how far it got. Callers check
    who may cancel it (the owner, through the selector; staff, in the admin).
    """
    return bool(
        ImportJob.objects.filter(
            pk=job.pk, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
        ).update(status=ImportJob.Status.CANCELLED, updated=timezone.now())
    )


_threads: dict[int, threading.Thread] = {}
_lock = threading.Lock()


def _start(job_id: int, path: str) -> None:
    thread = threading.Thread(
        target=import_job_run, args=(job_id, path), name=f"import-{job_id}", daemon=True
    )
    with _lock:
        _threads[job_id] = thread
    thread.start()


def import_job_run(job_id: int, path: str) -> None:
    """The worker: import the file at `path` for job `job_id`, then delete the file."""
    try:
        job = ImportJob.objects.select_related("owner").get(pk=job_id)
        jobs = ImportJob.objects.filter(pk=job_id)
        running = jobs.filter(status=ImportJob.Status.RUNNING)
        cancelled = jobs.filter(status=ImportJob.Status.CANCELLED)
        started = jobs.filter(status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.RUNNING, updated=timezone.now()
        )
        if not started:  # cancelled before it began
            cancelled.update(error=_cancelled_text(ImportResult()), updated=timezone.now())
            return
        last = 0.0
        last_check = time.monotonic()

        def progress(read: int, total: int, result: ImportResult) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL:
                last = now
                jobs.update(
                    bytes_read=read, bytes_total=total, updated=timezone.now(), **_counts(result)
                )

        def should_stop() -> bool:
            nonlocal last_check
            now = time.monotonic()
            if now - last_check < CANCEL_CHECK_INTERVAL:
                return False
            last_check = now
            return cancelled.exists()

        try:
            source, result = file_import(
                path=path, owner=job.owner, on_progress=progress, should_stop=should_stop
            )
        except ImportCancelled as stop:
            cancelled.update(
                report=_report(stop.result),
                error=_cancelled_text(stop.result),
                updated=timezone.now(),
                **_counts(stop.result),
            )
            return
        except ImportRefused as exc:
            error = report_text(str(exc), REASON_LIMIT)
            running.update(status=ImportJob.Status.FAILED, error=error, updated=timezone.now())
            return
        finished = {
            "source": source,
            "report": _report(result),
            "bytes_read": job.bytes_total,
            "updated": timezone.now(),
            **_counts(result),
        }
        if not running.update(status=ImportJob.Status.DONE, **finished):
            # Cancelled as the last conversation went in: it stopped, having read it all.
            cancelled.update(error=_cancelled_text(result), **finished)
    except Exception:
        logger.exception("import job %s failed", job_id)
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED,
            error="The import stopped on an unexpected error (it is in the server log). "
            "What was imported before it is kept; uploading the file again imports the rest.",
            updated=timezone.now(),
        )
    finally:
        with _lock:
            _threads.pop(job_id, None)
        with contextlib.suppress(OSError):
            os.unlink(path)
        close_old_connections()
        connection.close()


INTERRUPTED = (
    "The import was interrupted by a restart of the server. What was imported before is "
    "kept; upload the file again to import the rest."
)


def _alive_here() -> list[int]:
    with _lock:
        return [job_id for job_id, thread in _threads.items() if thread.is_alive()]


def import_jobs_expire(*, owner: User | None = None) -> int:
    """Mark queued or running jobs that have shown no progress for STALE_AFTER as failed.

    Their worker died with its process (a restart): nothing will finish them. A cancelled
    job whose worker died before saying where it stopped is given its last counts.
    """
    alive = _alive_here()
    stale_before = timezone.now() - timedelta(seconds=STALE_AFTER)
    stale = _active(ImportJob.objects.filter(updated__lt=stale_before)).exclude(pk__in=alive)
    if owner is not None:
        stale = stale.filter(owner=owner)
    for job in stale.filter(status=ImportJob.Status.CANCELLED).only("conversations_imported"):
        ended = ImportResult(conversations_imported=job.conversations_imported)
        ImportJob.objects.filter(pk=job.pk, error="").update(error=_cancelled_text(ended))
    return stale.filter(status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]).update(
        status=ImportJob.Status.FAILED, error=INTERRUPTED, updated=timezone.now()
    )


def import_uploads_sweep() -> list[str]:
    """Delete the uploads in `upload_dir()` that no live job will read; returns their names.

    Safe with several processes sharing the folder: a job's upload is kept while the job is
    queued or running and its worker alive (here, or showing progress within STALE_AFTER,
    wherever it runs); an upload that has no job yet is kept while it is younger than
    STALE_AFTER (another process may be writing it or checking it right now).
    """
    folder = upload_dir()
    alive = set(_alive_here())
    fresh = timezone.now() - timedelta(seconds=STALE_AFTER)
    live_jobs = set(
        _active(ImportJob.objects.filter(updated__gte=fresh)).values_list("pk", flat=True)
    )
    removed = []
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        match = _JOB_UPLOAD.match(name)
        if match is not None:
            if int(match[1]) in alive or int(match[1]) in live_jobs:
                continue
        elif name.startswith(INCOMING_PREFIX):
            with contextlib.suppress(OSError):
                if time.time() - os.path.getmtime(full) < STALE_AFTER:
                    continue
        else:
            continue  # not ours
        with contextlib.suppress(FileNotFoundError):
            os.unlink(full)
            removed.append(name)
    return removed


_swept = threading.Event()


def import_startup_sweep(**_: Any) -> None:
    """Once per process, on its first request: end dead processes' jobs, remove their uploads.

    Connected to `request_started` (apps.py): every web worker does it when it starts
    serving, and the rules above leave other live workers' jobs and uploads alone.
    """
    if _swept.is_set():
        return
    _swept.set()
    try:
        import_jobs_expire()
        import_uploads_sweep()
    except Exception:
        # A sweep must never break the request that happened to come first.
        logger.exception("import start-up sweep failed")


def wait_idle(timeout: float) -> bool:
    """Wait for every import thread of this process to end (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_threads.values())
        if not threads:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        threads[0].join(remaining)
