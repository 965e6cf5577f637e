"""Users export their own conversations and import exports into their own account only."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx2
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, ImportJob, Message
from conversations.transfer import chatsite as chatsite_json
from conversations.transfer import export, jobs
from tests.support.chatgpt_export import dumps, simple, zipped
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.helpers import HTMX

# The import runs in a thread of its own, which must see the rows the test wrote.
background = pytest.mark.django_db(transaction=True)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def upload(client, data: bytes, name: str = "conversations.json", url: str | None = None):
    return client.post(
        url or reverse("import"), {"file": SimpleUploadedFile(name, data)}, follow=False
    )


def finished_job(response) -> ImportJob:
    assert response.status_code == 302, response.content[:500]
    assert jobs.wait_idle(30)
    return ImportJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


@pytest.fixture
def alice_conversation(owner):
    conv = ConversationFactory(owner=owner, title="Alice's plans")
    question = MessageFactory(conversation=conv, content="What should I plant?")
    ReplyFactory(conversation=conv, parent=question, content="Tomatoes, in May.")
    return conv


@pytest.fixture
def mallory_conversation(stranger):
    conv = ConversationFactory(owner=stranger, title="Mallory's secrets")
    MessageFactory(conversation=conv, content="The password is swordfish")
    return conv


# --- Export ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_user_downloads_one_conversation_as_markdown(owner_client, alice_conversation):
    response = owner_client.get(reverse("export", args=[alice_conversation.pk, "markdown"]))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/markdown")
    disposition = response["Content-Disposition"]
    assert disposition.startswith(
        f'attachment; filename="chatsite-conversation-{alice_conversation.pk}-'
    )
    assert disposition.endswith('.md"')
    text = body(response).decode()
    assert "# Alice's plans" in text
    assert "## You\n\nWhat should I plant?" in text
    assert "Tomatoes, in May." in text


@pytest.mark.django_db
def test_a_user_downloads_one_conversation_as_json(owner_client, alice_conversation):
    response = owner_client.get(reverse("export", args=[alice_conversation.pk, "json"]))
    assert response["Content-Disposition"].endswith('.json"')
    document = json.loads(body(response))
    assert document["format"] == "chatsite-export"
    assert [c["title"] for c in document["conversations"]] == ["Alice's plans"]
    assert len(document["conversations"][0]["messages"]) == 2


@pytest.mark.django_db
def test_all_conversations_export_holds_only_the_users_own(
    owner_client, alice_conversation, mallory_conversation, owner
):
    ConversationFactory(owner=owner, title="Second of Alice")
    for fmt in ("markdown", "json"):
        response = owner_client.get(reverse("export_all", args=[fmt]))
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith(
            'attachment; filename="chatsite-conversations-'
        )
        text = body(response).decode()
        assert "Alice's plans" in text
        assert "Second of Alice" in text
        assert "Mallory" not in text
        assert "swordfish" not in text


@pytest.mark.django_db
def test_a_stranger_cannot_export_anothers_conversation(stranger_client, alice_conversation):
    for fmt in ("markdown", "json"):
        response = stranger_client.get(reverse("export", args=[alice_conversation.pk, fmt]))
        assert response.status_code == 404


@pytest.mark.django_db
def test_an_unknown_export_format_is_a_404(owner_client, alice_conversation):
    assert owner_client.get(reverse("export_all", args=["csv"])).status_code == 404
    url = reverse("export", args=[alice_conversation.pk, "xml"])
    assert owner_client.get(url).status_code == 404


@pytest.mark.django_db
def test_exports_need_a_login(client, alice_conversation):
    response = client.get(reverse("export_all", args=["json"]))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_the_json_export_imports_again_elsewhere(owner_client, alice_conversation, stranger):
    document = body(owner_client.get(reverse("export_all", args=["json"])))
    result = chatsite_json.conversations_import_json(data=document, owner=stranger)
    assert result.conversations_imported == 1
    copy = Conversation.objects.get(owner=stranger)
    assert copy.title == "Alice's plans"
    question, reply = copy.messages.all()
    assert reply.parent == question
    assert reply.content == "Tomatoes, in May."


@pytest.mark.django_db
def test_the_chat_page_links_to_exports_and_to_the_import_page(owner_client, alice_conversation):
    html = owner_client.get(alice_conversation.get_absolute_url()).content.decode()
    assert reverse("export", args=[alice_conversation.pk, "markdown"]) in html
    assert reverse("export", args=[alice_conversation.pk, "json"]) in html
    assert reverse("import") in html
    html = owner_client.get(reverse("import")).content.decode()
    assert reverse("export_all", args=["markdown"]) in html
    assert reverse("export_all", args=["json"]) in html


# --- The import page ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_import_page_has_a_file_form_that_works_without_javascript(owner_client):
    response = owner_client.get(reverse("import"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert f'action="{reverse("import")}"' in html
    assert 'type="file"' in html


@pytest.mark.django_db
def test_the_import_page_query_count_is_bounded(owner_client, owner, django_assert_max_num_queries):
    for i in range(15):
        ImportJob.objects.create(owner=owner, filename=f"f{i}.zip", status="done")
    with django_assert_max_num_queries(5):
        owner_client.get(reverse("import"))


@background
def test_an_upload_is_imported_into_the_uploaders_account_with_a_report(
    owner_client, owner, stranger
):
    entries = [simple("Trip to Rome", turns=2), simple("Broken"), simple("Recipes", turns=1)]
    del entries[1]["mapping"]
    job = finished_job(upload(owner_client, dumps(entries)))
    assert job.owner == owner
    assert job.status == ImportJob.Status.DONE
    assert job.source == "chatgpt"
    assert (job.conversations_imported, job.messages_imported) == (2, 6)
    assert job.conversations_skipped == 1
    assert job.bytes_read == job.bytes_total == len(dumps(entries))
    assert set(Conversation.objects.filter(owner=owner).values_list("title", flat=True)) == {
        "Trip to Rome",
        "Recipes",
    }
    assert not Conversation.objects.filter(owner=stranger).exists()

    html = owner_client.get(job.get_absolute_url()).content.decode()
    assert "Imported 2 conversations with 6 messages from ChatGPT" in html
    assert "Broken" in html
    assert "no &quot;mapping&quot; of messages" in html
    assert "every 1s" not in html  # finished: no more polling


@background
def test_uploading_the_same_zip_twice_adds_nothing_the_second_time(owner_client):
    data = zipped(
        {
            "conversations-000.json": dumps([simple("One"), simple("Two")]),
            "conversations-001.json": dumps([simple("Three")]),
        }
    )
    first = finished_job(upload(owner_client, data, "export.zip"))
    rows = (Conversation.objects.count(), Message.objects.count())
    second = finished_job(upload(owner_client, data, "export.zip"))
    assert first.conversations_imported == 3
    assert (Conversation.objects.count(), Message.objects.count()) == rows
    assert (second.conversations_imported, second.messages_imported) == (0, 0)
    assert second.duplicates == 3
    html = owner_client.get(second.get_absolute_url()).content.decode()
    assert "already imported" in html


@background
def test_a_chatsite_json_export_imports_through_the_page_into_the_uploader(
    owner_client, owner, stranger, mallory_conversation
):
    # Mallory's export, uploaded by Alice: it becomes Alice's, whatever owner it names.
    document = "".join(export.export_json(Conversation.objects.filter(owner=stranger)))
    job = finished_job(upload(owner_client, document.encode(), "chatsite.json"))
    assert job.status == ImportJob.Status.DONE
    assert job.source == "chatsite"
    assert job.conversations_imported == 1
    copy = Conversation.objects.get(owner=owner)
    assert copy.title == "Mallory's secrets"
    assert Conversation.objects.filter(owner=stranger).count() == 1


@background
def test_a_large_upload_goes_through_despite_the_post_size_limit(owner_client, settings):
    entries = [simple(f"Padded {i} " + "p" * 30_000) for i in range(100)]
    data = dumps(entries)
    assert len(data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    job = finished_job(upload(owner_client, data))
    assert job.conversations_imported == 100


@pytest.mark.django_db
def test_a_file_over_the_import_limit_is_refused_in_words(owner_client, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 1000
    response = upload(owner_client, dumps([simple("x" * 2000)]))
    assert response.status_code == 413
    assert "the largest import is" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.json", "The file is empty."),
        (b"just some notes", "notes.txt", "not an export chatsite can read"),
        (b"PK\x03\x04garbage", "broken.zip", "The zip file cannot be read"),
        (zipped({"readme.txt": b"hi"}), "other.zip", "The zip has no conversations.json"),
    ],
)
def test_a_bad_upload_gets_a_clear_error_on_the_form(owner_client, data, name, message):
    response = upload(owner_client, data, name)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_posting_without_a_file_asks_for_one(owner_client):
    response = owner_client.post(reverse("import"), {})
    assert response.status_code == 422
    assert "Choose a file to import." in response.content.decode()


@background
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"some": "object"}', "not an export chatsite can read"),
        (b'[{"title": "cut off', "Not valid JSON"),
        (b"[1, 2, 3]", "not an export chatsite can read"),
    ],
)
def test_a_file_found_wrong_while_importing_fails_the_job_with_the_reason(
    owner_client, data, message
):
    job = finished_job(upload(owner_client, data))
    assert job.status == ImportJob.Status.FAILED
    assert message in job.error
    html = owner_client.get(job.get_absolute_url()).content.decode()
    assert "The import failed." in html
    assert message in html


@pytest.mark.django_db
def test_a_running_job_polls_and_works_without_javascript(owner_client, owner):
    job = ImportJob.objects.create(
        owner=owner, filename="big.zip", status="running", bytes_read=250, bytes_total=1000
    )
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 1s"' in page
    assert '<progress max="100" value="25"' in page
    assert '<meta http-equiv="refresh"' in page  # in <noscript>
    fragment = owner_client.get(job.get_absolute_url(), **HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="job"')
    assert 'hx-trigger="every 1s"' in fragment
    assert "<meta" not in fragment


@pytest.mark.django_db
def test_a_job_whose_worker_died_shows_as_interrupted(owner_client, owner):
    job = ImportJob.objects.create(owner=owner, filename="big.zip", status="running")
    ImportJob.objects.filter(pk=job.pk).update(
        updated=timezone.now() - timedelta(seconds=jobs.STALE_AFTER + 5)
    )
    html = owner_client.get(job.get_absolute_url()).content.decode()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "interrupted" in job.error
    assert "every 1s" not in html


@pytest.mark.django_db
def test_a_stranger_cannot_see_anothers_import_job(stranger_client, owner):
    job = ImportJob.objects.create(owner=owner, filename="private.zip")
    assert stranger_client.get(job.get_absolute_url()).status_code == 404
    assert stranger_client.get(job.get_absolute_url(), **HTMX).status_code == 404
    assert "private.zip" not in stranger_client.get(reverse("import")).content.decode()


# --- Admin: import on behalf of a user --------------------------------------------------


@background
def test_staff_import_a_file_into_another_users_account(staff_client, staff, owner):
    changelist = staff_client.get(reverse("admin:conversations_conversation_changelist"))
    url = reverse("admin:conversations_conversation_import")
    assert url in changelist.content.decode()
    response = staff_client.post(
        url,
        {
            "username": "alice",
            "file": SimpleUploadedFile("conversations.json", dumps([simple("For Alice")])),
        },
    )
    assert response.status_code == 302
    assert jobs.wait_idle(30)
    job = ImportJob.objects.get()
    assert job.owner == owner
    assert job.requested_by == staff
    assert Conversation.objects.get().owner == owner
    page = staff_client.get(response["Location"]).content.decode()
    assert "Imported 1 conversation with 4 messages" in page
    assert "alice" in page


@pytest.mark.django_db
def test_the_admin_import_form_reports_an_unknown_user_and_a_bad_file(staff_client):
    url = reverse("admin:conversations_conversation_import")
    assert staff_client.get(url).status_code == 200
    response = staff_client.post(
        url, {"username": "nobody", "file": SimpleUploadedFile("c.json", b"[]")}
    )
    assert response.status_code == 422
    assert "There is no user" in response.content.decode()
    response = staff_client.post(
        url, {"username": "sam", "file": SimpleUploadedFile("c.json", b"hello")}
    )
    assert response.status_code == 422
    assert "not an export chatsite can read" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_the_admin_import_is_for_staff_only(owner_client):
    response = owner_client.get(reverse("admin:conversations_conversation_import"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- Over real HTTP, served as ASGI by uvicorn ------------------------------------------


def test_over_asgi_an_upload_imports_and_the_export_streams_it_back(asgi_server, owner_client):
    cookies = {
        "sessionid": owner_client.cookies["sessionid"].value,
        "csrftoken": "a" * 32,
    }
    with httpx2.Client(base_url=asgi_server.url, cookies=cookies, timeout=30) as http:
        data = zipped({"conversations.json": dumps([simple("Over ASGI", turns=2)])})
        response = http.post(
            reverse("import"),
            data={"csrfmiddlewaretoken": "a" * 32},
            files={"file": ("export.zip", data, "application/zip")},
        )
        assert response.status_code == 302, response.text[:300]
        assert jobs.wait_idle(30)
        job_page = http.get(response.headers["location"])
        assert "Imported 1 conversation with 4 messages from ChatGPT" in job_page.text
        with http.stream("GET", reverse("export_all", args=["json"])) as export:
            assert export.status_code == 200
            assert export.headers["content-disposition"].startswith("attachment;")
            document = json.loads(b"".join(export.iter_bytes()))
    assert [c["title"] for c in document["conversations"]] == ["Over ASGI"]
    assert len(document["conversations"][0]["messages"]) == 4
