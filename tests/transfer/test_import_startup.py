"""At start-up (a process's first request) the imports a dead process left are marked
failed, "interrupted by a restart", and their uploads removed; a live process's jobs and
uploads, and uploads still being written, are left alone."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import ImportJob
from conversations.transfer import jobs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_upload_dir(settings, tmp_path):
    settings.CHAT_IMPORT_TEMP_DIR = str(tmp_path / "uploads")


@pytest.fixture
def fresh_process(monkeypatch):
    """As if this process had not served a request yet."""
    monkeypatch.setattr(jobs, "_swept", jobs.threading.Event())


def job(owner, status: str, *, seconds_ago: float = 0) -> ImportJob:
    created = ImportJob.objects.create(owner=owner, filename=f"{status}.zip", status=status)
    ImportJob.objects.filter(pk=created.pk).update(
        updated=timezone.now() - timedelta(seconds=seconds_ago)
    )
    return created


def upload_file(name: str, *, seconds_ago: float = 0) -> str:
    path = os.path.join(jobs.upload_dir(), name)
    with open(path, "wb") as f:
        f.write(b"[]")
    when = time.time() - seconds_ago
    os.utime(path, (when, when))
    return path


STALE = jobs.STALE_AFTER + 10


def test_the_first_request_marks_a_dead_processs_jobs_failed_as_interrupted_by_a_restart(
    client, owner, fresh_process
):
    running = job(owner, "running", seconds_ago=STALE)
    queued = job(owner, "queued", seconds_ago=STALE)
    live = job(owner, "running")  # another process is importing it right now

    client.get("/accounts/login/")

    for dead in (running, queued):
        dead.refresh_from_db()
        assert dead.status == ImportJob.Status.FAILED
        assert dead.error.startswith("The import was interrupted by a restart of the server.")
    live.refresh_from_db()
    assert live.status == ImportJob.Status.RUNNING


def test_the_first_request_removes_uploads_no_live_job_reads(client, owner, fresh_process):
    dead = job(owner, "running", seconds_ago=STALE)
    live = job(owner, "running")
    ended = job(owner, "done")
    dead_upload = upload_file(f"job-{dead.pk}.upload", seconds_ago=STALE)
    live_upload = upload_file(f"job-{live.pk}.upload", seconds_ago=STALE)
    ended_upload = upload_file(f"job-{ended.pk}.upload")
    gone_upload = upload_file("job-999999.upload")  # its job was deleted
    left_incoming = upload_file("incoming-abc.upload", seconds_ago=STALE)
    being_written = upload_file("incoming-def.upload")  # another process, mid-upload
    not_ours = upload_file("notes.txt", seconds_ago=STALE)

    client.get("/accounts/login/")

    for removed in (dead_upload, ended_upload, gone_upload, left_incoming):
        assert not os.path.exists(removed), removed
    for kept in (live_upload, being_written, not_ours):
        assert os.path.exists(kept), kept


def test_it_sweeps_once_per_process_not_on_every_request(client, owner, fresh_process):
    client.get("/accounts/login/")
    later = job(owner, "running", seconds_ago=STALE)
    upload = upload_file(f"job-{later.pk}.upload", seconds_ago=STALE)

    client.get("/accounts/login/")

    assert os.path.exists(upload)
    assert ImportJob.objects.get(pk=later.pk).status == ImportJob.Status.RUNNING


def test_a_job_running_in_this_process_keeps_its_upload_however_quiet(owner, monkeypatch):
    quiet = job(owner, "running", seconds_ago=STALE)
    upload = upload_file(f"job-{quiet.pk}.upload", seconds_ago=STALE)
    monkeypatch.setattr(jobs, "_alive_here", lambda: [quiet.pk])

    assert jobs.import_uploads_sweep() == []
    jobs.import_jobs_expire()

    assert os.path.exists(upload)
    assert ImportJob.objects.get(pk=quiet.pk).status == ImportJob.Status.RUNNING


def test_a_failing_sweep_does_not_break_the_request(client, fresh_process, monkeypatch):
    def broken() -> list[str]:
        raise OSError("disk gone")

    monkeypatch.setattr(jobs, "import_uploads_sweep", broken)
    assert client.get("/accounts/login/").status_code == 200


def test_uploads_wait_in_a_private_folder_of_this_installation(settings):
    settings.CHAT_IMPORT_TEMP_DIR = ""
    folder = jobs.upload_dir()
    assert os.path.basename(folder).startswith("chatsite-imports-")
    assert os.stat(folder).st_mode & 0o077 == 0
