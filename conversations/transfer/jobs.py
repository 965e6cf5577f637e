"""Background jobs for uploads: each export uploaded is imported by a thread of the
process that received it, through `reading.file_import`.

The upload is saved to a temporary file (in CHAT_IMPORT_TEMP_DIR) and an `ImportJob` row
is created; the thread imports it, writing its progress (bytes read, counts) to the row,
which the import page polls. One import runs per user at a time. A job can be cancelled
(`import_job_cancel`): its worker sees it within CANCEL_CHECK_INTERVAL and stops, keeping
what it imported. A job whose thread died with its process stops showing progress: after
`STALE_AFTER` seconds without any it is marked failed ("interrupted by a restart"); each
process does that, and removes the uploads no live job uses, when it starts
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
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations.models import ImportJob
from conversations.transfer.reading import (
    ImportCancelled,
    ImportRefused,
    OwnerRequired,
    Upload,
    file_import,
    upload_inspect,
)
from conversations.transfer.results import REASON_LIMIT, ImportResult, report_text

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile

# Callers import these from here too (the views, the admin, the command).
__all__ = [
    "ImportBusy",
    "ImportCancelled",
    "ImportRefused",
    "OwnerRequired",
    "Upload",
    "file_import",
    "import_job_cancel",
    "import_job_create",
    "import_jobs_expire",
    "import_startup_sweep",
    "upload_inspect",
    "wait_idle",
]

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


class ImportBusy(ImportRefused):
    """The owner already has an import queued or running; `job` is that one."""

    def __init__(self, message: str, job: ImportJob) -> None:
        super().__init__(message)
        self.job = job


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
            if not running.update(
                status=ImportJob.Status.FAILED, error=error, updated=timezone.now()
            ):
                # Cancelled as it met the problem: it has stopped, and says why.
                cancelled.filter(error="").update(error=error, updated=timezone.now())
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
