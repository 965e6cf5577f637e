"""The chat page: no-model mode, what it shows, and that it stays cheap as data grows."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.helpers import HTMX, finished, last_reply, send


@pytest.fixture
def no_model(settings):
    """Remote only (LLM_BACKEND=openai), and no key or server: nothing can answer."""
    settings.LLM_BACKEND = "openai"
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""


@pytest.mark.django_db
def test_with_no_model_configured_the_page_says_how_to_configure_one(owner_client, no_model):
    html = owner_client.get(reverse("chat")).content.decode()
    assert "No language model is configured" in html
    assert "OPENAI_API_KEY" in html and "OPENAI_BASE_URL" in html


@pytest.mark.django_db(transaction=True)
def test_with_no_model_a_send_keeps_the_message_and_saves_an_explaining_error(
    owner_client, no_model
):
    response = send(owner_client, "Is anyone there?")
    assert response.status_code == 200
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "No language model is configured" in reply.error
    assert Message.objects.get(role=Message.Role.USER).content == "Is anyone there?"
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "Is anyone there?" in page
    assert 'data-status="error"' in page


@pytest.mark.django_db
def test_with_a_model_configured_there_is_no_banner(owner_client):
    assert "No language model is configured" not in owner_client.get("/").content.decode()


@pytest.mark.django_db
def test_the_page_marks_every_message_with_role_and_status(owner_client, owner):
    question = MessageFactory(conversation__owner=owner, content="Q <b>bold</b>")
    ReplyFactory(conversation=question.conversation, parent=question, content="A")
    ReplyFactory(conversation=question.conversation, status=Message.Status.STOPPED, content="B")
    html = owner_client.get(question.conversation.get_absolute_url()).content.decode()
    assert 'data-role="user" data-status="complete"' in html
    assert 'data-role="assistant" data-status="complete"' in html
    assert 'data-role="assistant" data-status="stopped"' in html
    assert "Q &lt;b&gt;bold&lt;/b&gt;" in html
    assert 'aria-label="Message"' in html
    assert ">Send</button>" in html


@pytest.mark.django_db
def test_the_sidebar_is_ordered_by_last_activity(owner_client, owner):
    old = ConversationFactory(owner=owner, title="Old one")
    new = ConversationFactory(owner=owner, title="New one")
    html = owner_client.get("/").content.decode()
    assert html.index("New one") < html.index("Old one")
    Conversation.objects.filter(pk=old.pk).update(updated=new.updated.replace(year=2099))
    html = owner_client.get("/").content.decode()
    assert html.index("Old one") < html.index("New one")


@pytest.mark.django_db
def test_nothing_is_loaded_from_outside_the_app(owner_client, owner):
    MessageFactory(conversation__owner=owner)
    for url in ("/", owner.conversations.get().get_absolute_url(), reverse("login")):
        html = owner_client.get(url).content.decode()
        for marker in ('src="http', "src='http", 'href="http', 'src="//', 'href="//'):
            assert marker not in html, (url, marker)
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert "/static/django_htmx/ext/hx-sse-2.min.js" in html


@pytest.mark.django_db
def test_static_files_are_served_by_the_app(client):
    for path in (
        "/static/chatsite/chat.js",
        "/static/chatsite/chat.css",
        "/static/django_htmx/htmx-2.min.js",
    ):
        response = client.get(path)
        assert response.status_code == 200, path


def _fill(owner, conversations: int, messages: int) -> Conversation:
    last = None
    for _ in range(conversations):
        last = ConversationFactory(owner=owner)
        for _ in range(messages // 2):
            q = MessageFactory(conversation=last)
            ReplyFactory(conversation=last, parent=q)
    return last


@pytest.mark.django_db
@pytest.mark.parametrize(("conversations", "messages"), [(1, 2), (40, 30)])
def test_the_chat_page_query_count_does_not_grow_with_data(
    owner_client, owner, django_assert_max_num_queries, conversations, messages
):
    conversation = _fill(owner, conversations, messages)
    with django_assert_max_num_queries(6):
        response = owner_client.get(conversation.get_absolute_url())
    assert response.status_code == 200
    assert response.content.decode().count("<article") == messages


@pytest.mark.django_db
@pytest.mark.parametrize("conversations", [1, 60])
def test_the_new_chat_page_and_sidebar_query_count_does_not_grow(
    owner_client, owner, django_assert_max_num_queries, conversations
):
    _fill(owner, conversations, 2)
    with django_assert_max_num_queries(3):
        response = owner_client.get("/")
    assert response.status_code == 200
    assert response.content.decode().count("data-conversation=") == conversations


@pytest.mark.django_db
def test_the_sidebar_is_capped(owner_client, owner, settings):
    settings.CHAT_SIDEBAR_LIMIT = 5
    _fill(owner, 8, 0)
    assert owner_client.get("/").content.decode().count("data-conversation=") == 5


def test_every_setting_read_from_the_environment_is_in_env_example():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    settings_py = (root / "chatsite" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', settings_py))
    example = (root / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE))
    assert read
    assert read <= listed, read - listed


@pytest.mark.django_db
def test_older_conversations_are_reached_page_by_page(owner_client, owner, settings, stranger):
    settings.CHAT_SIDEBAR_LIMIT = 3
    _fill(owner, 7, 0)
    _fill(stranger, 2, 0)
    # Same last activity for several: the cursor must still neither skip nor repeat.
    Conversation.objects.filter(
        owner=owner, pk__in=list(owner.conversations.values_list("pk", flat=True)[:4])
    ).update(updated=owner.conversations.first().updated)
    expected = [c.pk for c in owner.conversations.order_by("-updated", "-id")]

    html = owner_client.get("/").content.decode()
    seen = [int(x) for x in re.findall(r'data-conversation="(\d+)"', html)]
    while 'class="older"' in html:
        url = html_lib.unescape(re.search(r'class="older"><a href="([^"]+)"', html).group(1))
        html = owner_client.get(url, **HTMX).content.decode()
        seen += [int(x) for x in re.findall(r'data-conversation="(\d+)"', html)]
    assert seen == expected


@pytest.mark.django_db
def test_older_conversations_work_without_javascript_and_ignore_a_bad_cursor(
    owner_client, owner, settings, django_assert_max_num_queries
):
    settings.CHAT_SIDEBAR_LIMIT = 2
    _fill(owner, 5, 0)
    first = owner_client.get("/").content.decode()
    url = html_lib.unescape(re.search(r'class="older"><a href="([^"]+)"', first).group(1))
    with django_assert_max_num_queries(3):
        page = owner_client.get(url)
    assert page.status_code == 200
    assert "<html" in page.content.decode()
    assert 'id="composer"' in page.content.decode()
    for bad in ("nonsense", "-", "²-1", "9" * 40 + "-1", "9" * 18 + "-1"):
        response = owner_client.get(reverse("older_conversations"), {"before": bad})
        assert response.status_code == 200
        assert response.content.decode().count("data-conversation=") == 2


@pytest.mark.django_db
def test_a_malformed_base_url_breaks_no_page(owner_client, client, settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:abc/v1"
    assert client.get(reverse("login")).status_code == 200
    assert owner_client.get("/").status_code == 200


@pytest.mark.django_db
def test_the_page_says_which_remote_model_and_server_answer(staff_client, fake_openai):
    html = staff_client.get(reverse("chat")).content.decode()
    assert "Model: <strong>fake-model</strong>" in html
    assert fake_openai.base_url.rstrip("/") in html
    assert "sk-test-key" not in html


@pytest.mark.django_db
def test_favicon_ico_points_at_the_app_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("chatsite/favicon.svg")
