"""A running import can be cancelled by its owner (the job page) or staff (the admin): it
stops within a fraction of a second, keeps what it imported and says how far it got."""

from __future__ import annotations

import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from conversations.models import Conversation, ImportJob
from conversations.transfer import jobs, reading
from conversations.transfer.jsonstream import JSONStream
from conversations.transfer.results import ImportResult
from tests.support.chatgpt_export import dumps, simple
from tests.support.helpers import HTMX

# The import runs in a thread of its own, which must see the rows the test wrote.
background = pytest.mark.django_db(transaction=True)

# A cancelled import must have stopped this soon after the request (it checks 4 times a
# second); reading the rest of the files below would take tens of seconds.
STOPS_WITHIN = 2.0


@pytest.fixture(autouse=True)
def _own_upload_dir(settings, tmp_path):
    settings.CHAT_IMPORT_TEMP_DIR = str(tmp_path / "uploads")


@pytest.fixture
def slow_reads(monkeypatch):
    """Each 256 KiB chunk takes 20 ms more to read (a slow disk, a busy CPU): a member of
    100 MiB then takes 8 s, and a cancel has to be seen inside it."""
    read = JSONStream._read

    def slow(self):
        time.sleep(0.02)
        return read(self)

    monkeypatch.setattr(JSONStream, "_read", slow)


def many_conversations(count: int) -> bytes:
    return dumps([simple(f"Conversation {i}") for i in range(count)])


def whitespace_bomb(tmp_path, megabytes: int) -> bytes:
    """A ChatGPT export zip whose one member is `[`, `megabytes` MiB of spaces, then one
    conversation: a few hundred KiB to upload."""
    path = tmp_path / "bomb.zip"
    spaces = b" " * (1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as member:
            member.write(b"[")
            for _ in range(megabytes):
                member.write(spaces)
            member.write(dumps([simple("After the spaces")])[1:])
    return path.read_bytes()


def start(client, data: bytes, name: str) -> ImportJob:
    response = client.post(reverse("import"), {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 302, response.content[:500]
    return ImportJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def cancel_and_time(client, job: ImportJob, **headers) -> tuple[object, float]:
    began = time.monotonic()
    response = client.post(reverse("import_job", args=[job.pk]), **headers)
    assert jobs.wait_idle(10)
    return response, time.monotonic() - began


@background
def test_the_owner_cancels_between_conversations_and_what_was_imported_stays(owner_client, owner):
    job = start(owner_client, many_conversations(5000), "conversations.json")
    wait_until(lambda: Conversation.objects.filter(owner=owner).count() >= 3)

    response, took = cancel_and_time(owner_client, job)

    assert response.status_code == 302
    assert response["Location"] == reverse("import_job", args=[job.pk])
    assert took < STOPS_WITHIN
    job.refresh_from_db()
    kept = Conversation.objects.filter(owner=owner).count()
    assert job.status == ImportJob.Status.CANCELLED
    assert 3 <= kept < 5000
    assert job.conversations_imported == kept
    assert job.error.startswith(f"Cancelled after {kept} conversations.")
    page = owner_client.get(response["Location"]).content.decode()
    assert f"Cancelled after {kept} conversations." in page
    assert "Cancel the import" not in page


@background
def test_a_cancel_stops_inside_one_long_member_within_a_second_or_two(
    owner_client, owner, settings, tmp_path, slow_reads
):
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 1_000_000  # past the zip-bomb check
    job = start(owner_client, whitespace_bomb(tmp_path, 100), "bomb.zip")
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).bytes_read > 0)

    response, took = cancel_and_time(owner_client, job, **HTMX)

    assert took < STOPS_WITHIN
    assert response.status_code == 200  # htmx: the job's fragment
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    assert 0 < job.bytes_read < 100 * 1024 * 1024
    assert job.error.startswith("Cancelled after 0 conversations.")
    assert not Conversation.objects.exists()
    assert not list((tmp_path / "uploads").iterdir())  # the upload is gone


@background
def test_a_stranger_cannot_cancel_someone_elses_import(
    owner_client, stranger_client, owner, settings, tmp_path, slow_reads
):
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 1_000_000
    job = start(owner_client, whitespace_bomb(tmp_path, 100), "bomb.zip")
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).bytes_read > 0)

    for headers in ({}, HTMX):
        response = stranger_client.post(reverse("import_job", args=[job.pk]), **headers)
        assert response.status_code == 404
    assert stranger_client.get(reverse("import_job", args=[job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING

    cancel_and_time(owner_client, job)  # the owner can, and the test ends quickly
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.CANCELLED


@background
def test_the_running_job_page_has_a_cancel_button_that_works_without_javascript(
    owner_client, settings, tmp_path, slow_reads
):
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 1_000_000
    job = start(owner_client, whitespace_bomb(tmp_path, 100), "bomb.zip")
    url = reverse("import_job", args=[job.pk])

    page = owner_client.get(url).content.decode()

    assert f'<form method="post" action="{url}" class="job-cancel"' in page
    assert "csrfmiddlewaretoken" in page
    assert "Cancel the import" in page
    cancel_and_time(owner_client, job)


@pytest.mark.django_db
def test_cancelling_a_finished_import_changes_nothing(owner_client, owner):
    job = ImportJob.objects.create(
        owner=owner, filename="done.json", status=ImportJob.Status.DONE, conversations_imported=4
    )
    response = owner_client.post(reverse("import_job", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.error == ""
    assert "Cancel the import" not in owner_client.get(response["Location"]).content.decode()


@pytest.mark.django_db
def test_the_job_page_answers_get_and_post_only(owner_client, owner):
    job = ImportJob.objects.create(owner=owner, filename="x.json", status=ImportJob.Status.DONE)
    for method in ("put", "delete", "patch"):
        assert getattr(owner_client, method)(reverse("import_job", args=[job.pk])).status_code == (
            405
        )


@background  # the worker closes its database connection when it ends
def test_a_job_cancelled_before_its_worker_began_ends_at_once(owner, tmp_path):
    job = ImportJob.objects.create(
        owner=owner, filename="x.json", status=ImportJob.Status.CANCELLED
    )
    upload = tmp_path / "x.upload"
    upload.write_bytes(many_conversations(3))

    jobs.import_job_run(job.pk, str(upload))

    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    assert job.error.startswith("Cancelled after 0 conversations.")
    assert not Conversation.objects.exists()
    assert not upload.exists()


@pytest.mark.django_db
def test_a_cancelled_job_whose_worker_died_is_given_its_last_count(owner):
    job = ImportJob.objects.create(
        owner=owner,
        filename="x.json",
        status=ImportJob.Status.CANCELLED,
        conversations_imported=1,
    )
    ImportJob.objects.filter(pk=job.pk).update(
        updated=job.updated - jobs.timedelta(seconds=jobs.STALE_AFTER + 1)
    )
    assert ImportJob.objects.get(pk=job.pk).stopping

    jobs.import_jobs_expire(owner=owner)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    assert job.error.startswith("Cancelled after 1 conversation.")
    assert job.finished


def test_file_import_stops_when_asked_and_says_what_it_imported(tmp_path, db, owner):
    path = tmp_path / "conversations.json"
    path.write_bytes(many_conversations(50))
    asked = 0

    def stop_after_ten() -> bool:
        nonlocal asked
        asked += 1
        return Conversation.objects.count() >= 10

    with pytest.raises(jobs.ImportCancelled) as stopped:
        jobs.file_import(path=str(path), owner=owner, should_stop=stop_after_ten)

    assert isinstance(stopped.value.result, ImportResult)
    assert stopped.value.result.conversations_imported == 10
    assert Conversation.objects.count() == 10


@background
def test_a_cancel_that_meets_a_refusal_ends_stopped_with_the_reason(owner, tmp_path, monkeypatch):
    job = ImportJob.objects.create(owner=owner, filename="x.json")
    upload = tmp_path / "x.upload"
    upload.write_bytes(b"not json")

    def cancelled_then_refused(path: str) -> jobs.Upload:
        jobs.import_job_cancel(job=job)
        raise jobs.ImportRefused("This file is not an export.")

    monkeypatch.setattr(reading, "upload_inspect", cancelled_then_refused)

    jobs.import_job_run(job.pk, str(upload))

    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    assert job.error == "This file is not an export."
    assert job.finished
