"""Hostile files end in a precise reason for the user, never in a crash or a silent "Done"."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from conversations.models import Conversation, ImportJob
from conversations.transfer import jobs
from conversations.transfer.jsonstream import JSONStream, JSONStreamError
from conversations.transfer.results import ImportResult, skipped
from tests.support.chatgpt_export import dumps, simple

background = pytest.mark.django_db(transaction=True)


def finished_job(client, data: bytes, name: str = "export.json") -> ImportJob:
    response = client.post(reverse("import"), {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 302, response.content[:500]
    assert jobs.wait_idle(30)
    return ImportJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def chatsite_export(conversations: object) -> bytes:
    return json.dumps(
        {"format": "chatsite-export", "version": 1, "conversations": conversations}
    ).encode()


@background
def test_a_skipped_title_with_a_lone_surrogate_and_nul_does_not_break_the_job_page(owner_client):
    # \ud800 is a lone surrogate (not encodable as UTF-8), \u0000 a NUL.
    data = chatsite_export([{"title": "Bad \ud800 and \u0000 title", "messages": []}])

    job = finished_job(owner_client, data)

    assert job.status == ImportJob.Status.DONE, job.error
    assert job.conversations_skipped == 1
    title = job.report[0]["title"]
    assert "\x00" not in title
    assert title == "Bad \ufffd and  title"
    page = owner_client.get(job.get_absolute_url())
    assert page.status_code == 200
    assert "Bad \ufffd and  title" in page.content.decode()


def test_skipped_entries_are_sanitised_in_the_text_report_too():
    result = ImportResult()
    result.skipped.append(skipped(1, {"title": "x\ud800\x00y" + "z" * 10_000}, "bad\ud800"))
    s = result.skipped[0]
    assert s.title.startswith("x\ufffdy") and len(s.title) <= 300
    assert s.reason == "bad\ufffd"
    "\n".join(result.report()).encode("utf-8")


@background
def test_a_number_of_5000_digits_is_a_reason_not_a_crash(owner_client):
    conversation = simple("Huge number")
    data = dumps([conversation]).replace(b"[", b"[" + b"1" * 5000 + b", ", 1)

    job = finished_job(owner_client, data, "conversations.json")

    assert job.status == ImportJob.Status.FAILED
    assert "digits" in job.error
    assert "unexpected" not in job.error


def test_the_stream_reader_names_too_many_digits(tmp_path):
    stream = JSONStream(io.BytesIO(b"[" + b"7" * 5000 + b"]"))
    with pytest.raises(JSONStreamError, match=r"more than \d+ digits"):
        list(stream.array_items())


@background
def test_100000_deep_nesting_is_reported_as_too_deeply_nested(owner_client):
    data = b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]"

    job = finished_job(owner_client, data, "conversations.json")

    assert job.status == ImportJob.Status.FAILED
    assert "too deeply nested" in job.error
    assert "recursion" not in job.error


@background
@pytest.mark.parametrize("value", [5, "all of them", {"a": 1}, None, True])
def test_a_chatsite_export_whose_conversations_is_not_a_list_is_refused(owner_client, value):
    job = finished_job(owner_client, chatsite_export(value))

    assert job.status == ImportJob.Status.FAILED
    assert '"conversations" must be a list' in job.error
    assert not Conversation.objects.exists()
