"""One import runs per user: a second upload while one is queued or running is refused on
the import page (409, the upload not kept); other users are not held up by it."""

from __future__ import annotations

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from conversations.models import Conversation, ImportJob
from conversations.transfer import jobs
from tests.support.chatgpt_export import dumps, simple

background = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_upload_dir(settings, tmp_path):
    settings.CHAT_IMPORT_TEMP_DIR = str(tmp_path / "uploads")


def upload(client, data: bytes, name: str = "conversations.json"):
    return client.post(reverse("import"), {"file": SimpleUploadedFile(name, data)})


def uploads_kept() -> list[str]:
    return sorted(os.listdir(jobs.upload_dir()))


@pytest.mark.django_db
@pytest.mark.parametrize("status", [ImportJob.Status.QUEUED, ImportJob.Status.RUNNING])
def test_a_second_import_while_one_is_running_is_refused_inline_and_not_kept(
    owner_client, owner, status
):
    running = ImportJob.objects.create(
        owner=owner, filename="first.zip", status=status, bytes_total=100, bytes_read=40
    )

    response = upload(owner_client, dumps([simple("Second")]))

    assert response.status_code == 409
    page = response.content.decode()
    assert "You already have an import running (first.zip, 40% read)." in page
    assert "This upload was not kept." in page
    assert f'<a href="{running.get_absolute_url()}">See that import</a>' in page
    assert ImportJob.objects.count() == 1
    assert uploads_kept() == []
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_a_job_still_stopping_after_a_cancel_counts_as_running(owner_client, owner):
    ImportJob.objects.create(owner=owner, filename="first.zip", status="cancelled")
    assert upload(owner_client, dumps([simple("Second")])).status_code == 409


@background
def test_another_users_running_import_does_not_hold_up_the_owner(owner_client, stranger):
    ImportJob.objects.create(owner=stranger, filename="theirs.zip", status="running")

    response = upload(owner_client, dumps([simple("Mine")]))

    assert response.status_code == 302
    assert jobs.wait_idle(30)
    assert Conversation.objects.get().title == "Mine"


@background
@pytest.mark.parametrize("status", ["done", "failed"])
def test_once_the_first_has_ended_the_next_is_accepted(owner_client, owner, status):
    ImportJob.objects.create(owner=owner, filename="first.zip", status=status)
    assert upload(owner_client, dumps([simple("Next")])).status_code == 302
    assert jobs.wait_idle(30)
    assert ImportJob.objects.filter(status="done").filter(filename="conversations.json").exists()


@background
def test_a_stale_running_job_left_by_a_dead_process_does_not_block(owner_client, owner):
    dead = ImportJob.objects.create(owner=owner, filename="dead.zip", status="running")
    ImportJob.objects.filter(pk=dead.pk).update(
        updated=dead.updated - jobs.timedelta(seconds=jobs.STALE_AFTER + 5)
    )
    assert upload(owner_client, dumps([simple("Next")])).status_code == 302
    assert jobs.wait_idle(30)
    dead.refresh_from_db()
    assert dead.status == ImportJob.Status.FAILED
    assert "interrupted by a restart" in dead.error


@pytest.mark.django_db
def test_two_uploads_at_once_the_older_job_wins_and_the_other_is_not_kept(owner, monkeypatch):
    """Both pass the first check (two tabs, two workers); the second to create its job sees
    the first's and goes, with its file."""
    inspect = jobs.upload_inspect
    rival: list[ImportJob] = []

    def rival_starts_meanwhile(path: str) -> jobs.Upload:
        rival.append(ImportJob.objects.create(owner=owner, filename="rival.zip"))
        return inspect(path)

    monkeypatch.setattr(jobs, "upload_inspect", rival_starts_meanwhile)
    started: list[int] = []
    monkeypatch.setattr(jobs, "_start", lambda job_id, path: started.append(job_id))

    with pytest.raises(jobs.ImportBusy) as refused:
        jobs.import_job_create(
            owner=owner,
            upload=SimpleUploadedFile("mine.json", dumps([simple("Mine")])),
            requested_by=owner,
        )

    assert refused.value.job == rival[0]
    assert list(ImportJob.objects.values_list("filename", flat=True)) == ["rival.zip"]
    assert started == []
    assert uploads_kept() == []


@pytest.mark.django_db
def test_staff_importing_for_a_user_are_refused_the_same_way(staff_client, owner):
    ImportJob.objects.create(owner=owner, filename="first.zip", status="running")
    response = staff_client.post(
        reverse("admin:conversations_conversation_import"),
        {"username": owner.username, "file": SimpleUploadedFile("c.json", dumps([simple()]))},
    )
    assert response.status_code == 422
    assert "alice already has an import running (first.zip, 0% read)." in (
        response.content.decode()
    )
    assert ImportJob.objects.count() == 1
