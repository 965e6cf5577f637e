"""Search over the user's own history: titles and message text, through full-text indexes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse

from conversations.history import search as fulltext
from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply

pytestmark = pytest.mark.django_db


def _search(client, q, **params):
    return client.get(reverse("search"), {"q": q, **params})


def _message_links(html: str) -> list[str]:
    return re.findall(r'<li class="hit" data-hit="message">\s*<a href="([^"]+)"', html)


def test_it_finds_conversations_by_title(owner_client, owner):
    hit = ConversationFactory(owner=owner, title="Sourdough starter schedule")
    ConversationFactory(owner=owner, title="Tax return")
    html = _search(owner_client, "sourdough").content.decode()
    assert f'<a href="{hit.get_absolute_url()}"><mark>Sourdough</mark> starter schedule</a>' in html
    assert "Tax return</a>" not in html.split('class="search-results"')[1]


def test_it_finds_messages_by_their_text_and_links_to_the_message(owner_client, owner):
    question = MessageFactory(conversation__owner=owner, content="How do I prune tomato plants?")
    reply = ReplyFactory(
        conversation=question.conversation,
        parent=question,
        content="Pinch off the suckers that grow between the stem and a branch of tomatoes.",
    )
    MessageFactory(conversation__owner=owner, content="Something unrelated")
    html = _search(owner_client, "Tomato").content.decode()
    url = question.conversation.get_absolute_url()
    # Newest first; the last word also matches as a prefix ("tomato" → "tomatoes").
    assert _message_links(html) == [
        f"{url}?m={reply.pk}#m-{reply.pk}",
        f"{url}?m={question.pk}#m-{question.pk}",
    ]
    assert "How do I prune <mark>tomato</mark> plants?" in html
    assert "a branch of <mark>tomatoes</mark>." in html


def test_every_word_must_match(owner_client, owner):
    both = MessageFactory(conversation__owner=owner, content="red apples and green pears")
    MessageFactory(conversation__owner=owner, content="red cars")
    html = _search(owner_client, "red pears").content.decode()
    assert _message_links(html) == [
        f"{both.conversation.get_absolute_url()}?m={both.pk}#m-{both.pk}"
    ]


def test_search_never_shows_another_users_conversations(owner_client, owner, stranger):
    ConversationFactory(owner=stranger, title="Secret plans")
    MessageFactory(conversation__owner=stranger, content="the secret password is swordfish")
    mine = MessageFactory(conversation__owner=owner, content="my own secret")
    html = _search(owner_client, "secret").content.decode()
    assert "Secret plans" not in html
    assert "swordfish" not in html
    assert _message_links(html) == [
        f"{mine.conversation.get_absolute_url()}?m={mine.pk}#m-{mine.pk}"
    ]
    assert "Nothing found" in _search(owner_client, "swordfish").content.decode()
    page = fulltext.search(user=owner, query="plans password swordfish")
    assert page.conversations == [] and page.messages == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced',
        "*",
        "a*",
        "AND",
        "OR NOT",
        "NEAR(a b)",
        "-minus",
        "col:umn",
        "content:x",
        "title:x",
        "^start",
        "(paren",
        "{curly}",
        "a + b",
        "'; DROP TABLE conversations_message; --",
        "\\",
        "%_%",
        "x" * 5000,
        "ä ö ü ß 日本語",
        "\x00",
    ],
)
def test_special_characters_never_cause_an_error(owner_client, owner, query):
    MessageFactory(conversation__owner=owner, content='AND "quoted" -minus col:umn a+b x')
    response = _search(owner_client, query)
    assert response.status_code == 200
    assert Message.objects.count() == 1


def test_operator_words_are_searched_as_plain_words(owner_client, owner):
    hit = MessageFactory(conversation__owner=owner, content="this AND that")
    MessageFactory(conversation__owner=owner, content="this alone")
    assert _message_links(_search(owner_client, "this AND").content.decode()) == [
        f"{hit.conversation.get_absolute_url()}?m={hit.pk}#m-{hit.pk}"
    ]


def test_markup_in_messages_stays_inert_in_the_results(owner_client, owner):
    MessageFactory(
        conversation__owner=owner,
        conversation__title="<img src=x onerror=alert(1)> title",
        content='<script>alert("xss")</script> payload <mark>fake</mark>',
    )
    html = _search(owner_client, "payload").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt; <mark>payload</mark>" in html
    assert "&lt;mark&gt;fake&lt;/mark&gt;" in html
    assert "<img src=x" not in html
    html = _search(owner_client, "onerror").content.decode()
    assert "&lt;img src=x <mark>onerror</mark>=alert(1)&gt; title" in html


def test_results_come_a_page_at_a_time(owner_client, owner, settings):
    settings.CHAT_SEARCH_PAGE_SIZE = 5
    conversation = ConversationFactory(owner=owner)
    made = [MessageFactory(conversation=conversation, content=f"needle {i}") for i in range(12)]
    newest_first = [f"{conversation.get_absolute_url()}?m={m.pk}#m-{m.pk}" for m in reversed(made)]
    seen: list[str] = []
    for page in (1, 2, 3):
        html = _search(owner_client, "needle", page=page).content.decode()
        seen += _message_links(html)
        assert ('rel="next"' in html) == (page < 3)
        assert ('rel="prev"' in html) == (page > 1)
    assert seen == newest_first
    assert "No more results" in _search(owner_client, "needle", page=4).content.decode()
    for bad in ("0", "-1", "x", "99999999999999999999", "²"):
        assert _search(owner_client, "needle", page=bad).status_code == 200


def test_the_results_page_query_count_is_bounded(
    owner_client, owner, django_assert_max_num_queries
):
    for i in range(30):
        conversation = ConversationFactory(owner=owner, title=f"Bounded {i}")
        MessageFactory(conversation=conversation, content=f"bounded text {i}")
    with django_assert_max_num_queries(5):
        response = _search(owner_client, "bounded")
    html = response.content.decode()
    assert len(_message_links(html)) == 20
    assert html.count('data-hit="conversation"') == 20


def test_an_empty_query_shows_the_search_form_only(owner_client):
    html = _search(owner_client, "   ").content.decode()
    assert 'role="search"' in html
    assert "data-hit=" not in html


def test_search_needs_a_login(client):
    response = client.get(reverse("search"), {"q": "x"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_index_follows_edits_and_deletions(owner, owner_client):
    message = MessageFactory(conversation__owner=owner, content="before")
    Message.objects.filter(pk=message.pk).update(content="after")
    conversation = message.conversation
    conversation.title = "renamed heading"
    conversation.save()
    assert fulltext.search(user=owner, query="before").messages == []
    assert [h.message_id for h in fulltext.search(user=owner, query="after").messages] == [
        message.pk
    ]
    assert [
        h.conversation_id for h in fulltext.search(user=owner, query="heading").conversations
    ] == [conversation.pk]
    conversation.delete()
    assert fulltext.search(user=owner, query="after").messages == []
    assert fulltext.search(user=owner, query="heading").conversations == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="FTS5 is SQLite's")
def test_the_query_is_escaped_for_fts5():
    assert fulltext.fts5_query('say "hi" AND -x') == '"say" """hi""" "AND" "-x"*'
    assert fulltext.fts5_query("trailing space ") == '"trailing" "space"'
    assert fulltext.fts5_query("- * :") == ""


def test_the_sidebar_has_a_search_box(owner_client):
    html = owner_client.get("/").content.decode()
    assert f'action="{reverse("search")}" role="search"' in html
    assert 'name="q"' in html


@pytest.mark.parametrize(
    "query", ["\x00abc", "abc\x00", "ab\x00c", "\x01abc\x1f", "abc\x7f\x00 de"]
)
def test_control_characters_in_a_query_are_dropped_not_an_error(owner_client, owner, query):
    hit = MessageFactory(conversation__owner=owner, content="abc def")
    response = _search(owner_client, query)
    assert response.status_code == 200
    html = response.content.decode()
    assert "\x00" not in html
    assert _message_links(html) == [f"{hit.conversation.get_absolute_url()}?m={hit.pk}#m-{hit.pk}"]


def test_control_characters_never_reach_either_full_text_query():
    # Removed, except whitespace ones (tab, vertical tab...), which still separate words.
    assert fulltext.search_terms("\x00abc de\x07f\x0bg") == ["abc", "def", "g"]
    assert fulltext.fts5_query("\x00abc") == '"abc"*'
    # PostgreSQL: the tsquery text `_search_postgresql` sends (psycopg refuses NUL bytes).
    assert fulltext.postgresql_tsquery("\x00abc de\x00") == "'abc' & 'de':*"
    assert fulltext.postgresql_tsquery("\x00abc d") == "'abc' & 'd':*"
    assert fulltext.postgresql_tsquery("\x00\x01") == ""


def test_results_with_dates_at_the_ends_of_the_calendar_are_shown(owner_client, owner, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # 9999-12-31 23:00 UTC is past year 9999 in Tokyo
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    message = MessageFactory(conversation__owner=owner, conversation__title="far", content="far")
    Conversation.objects.filter(pk=message.conversation_id).update(updated=far)
    Message.objects.filter(pk=message.pk).update(created=far)
    response = _search(owner_client, "far")
    assert response.status_code == 200
    assert response.content.decode().count("31 Dec 9999") == 2


def _hidden_reply(owner):
    """alice's conversation where the reply to find was regenerated: not on the branch shown."""
    question = MessageFactory(conversation__owner=owner, content="How tall is Everest?")
    hidden = ReplyFactory(conversation=question.conversation, parent=question, content="Zanzibar")
    ReplyFactory(conversation=question.conversation, parent=question, content="8849 metres")
    return question.conversation, hidden


def test_a_result_opens_the_branch_that_holds_the_message(owner_client, owner):
    conversation, hidden = _hidden_reply(owner)
    assert "Zanzibar" not in owner_client.get(conversation.get_absolute_url()).content.decode()
    [link] = _message_links(_search(owner_client, "zanzibar").content.decode())
    assert link == f"{conversation.get_absolute_url()}?m={hidden.pk}#m-{hidden.pk}"
    response = owner_client.get(link.replace("&amp;", "&"))
    # The branch holding the message is shown, at the message...
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="m-{hidden.pk}"' in html
    assert "Zanzibar" in html and "8849 metres" not in html
    # ...and a message sent from this page follows it.
    assert f'name="after" value="{hidden.pk}"' in html
    # A GET changes nothing: the saved branch is still the other one.
    conversation.refresh_from_db()
    assert conversation.current_id is None
    assert "8849 metres" in owner_client.get(conversation.get_absolute_url()).content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_message_sent_from_a_result_follows_the_branch_shown(owner_client, owner, fake_openai):
    fake_openai.script(Reply(tokens=["Yes."]))
    conversation, hidden = _hidden_reply(owner)
    response = owner_client.post(
        reverse("send", args=[conversation.pk]),
        {"content": "Is it an island?", "after": str(hidden.pk)},
        **HTMX,
    )
    assert response.status_code == 200
    question = Message.objects.get(content="Is it an island?")
    assert question.parent_id == hidden.pk
    finished(last_reply())
    # From now on that branch is the one shown.
    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "Zanzibar" in html and "Is it an island?" in html and "8849 metres" not in html


@pytest.mark.django_db(transaction=True)
def test_an_after_that_is_not_a_message_of_the_conversation_is_ignored(
    owner_client, owner, stranger, fake_openai
):
    fake_openai.script(Reply(tokens=["Yes."]))
    conversation, _hidden = _hidden_reply(owner)
    strangers = MessageFactory(conversation__owner=stranger)
    shown_leaf = Message.objects.filter(conversation=conversation).latest("created", "id")
    owner_client.post(
        reverse("send", args=[conversation.pk]),
        {"content": "Elsewhere?", "after": str(strangers.pk)},
        **HTMX,
    )
    question = Message.objects.get(content="Elsewhere?")
    # It follows the saved branch, as if no `after` had been sent.
    assert question.conversation_id == conversation.pk
    assert question.parent_id == shown_leaf.pk
    finished(last_reply())


def test_a_result_on_the_shown_branch_changes_nothing(owner_client, owner):
    conversation, hidden = _hidden_reply(owner)
    question = hidden.parent
    response = owner_client.get(conversation.get_absolute_url(), {"m": question.pk})
    assert response.status_code == 200
    assert 'name="after"' not in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.current_id is None
    assert "8849 metres" in owner_client.get(conversation.get_absolute_url()).content.decode()


def test_a_message_id_not_of_the_conversation_is_ignored(owner_client, owner, stranger):
    conversation, _hidden = _hidden_reply(owner)
    strangers = MessageFactory(conversation__owner=stranger, content="mallory's secret")
    elsewhere = MessageFactory(conversation__owner=owner, content="another of alice's")
    for m in (strangers.pk, elsewhere.pk, "x", "", "-1", "99999999999999999999", "²", 0):
        response = owner_client.get(conversation.get_absolute_url(), {"m": m})
        assert response.status_code == 200
        html = response.content.decode()
        assert "8849 metres" in html
        assert "mallory's secret" not in html and "another of alice's" not in html
    conversation.refresh_from_db()
    assert conversation.current_id is None


def test_a_stranger_gets_404_for_the_conversation_even_with_their_own_message(
    stranger_client, owner, stranger
):
    conversation, hidden = _hidden_reply(owner)
    mine = MessageFactory(conversation__owner=stranger)
    for m in (hidden.pk, mine.pk):
        response = stranger_client.get(conversation.get_absolute_url(), {"m": m})
        assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.current_id is None


def test_a_result_does_not_switch_away_from_a_reply_being_written(owner_client, owner):
    conversation, hidden = _hidden_reply(owner)
    question = MessageFactory(conversation=conversation, content="And K2?")
    writing = ReplyFactory(conversation=conversation, parent=question, status="streaming")
    Conversation.objects.filter(pk=conversation.pk).update(current=writing)
    response = owner_client.get(conversation.get_absolute_url(), {"m": hidden.pk})
    assert response.status_code == 200
    assert f'id="m-{writing.pk}"' in response.content.decode()  # still on screen
    assert "Zanzibar" not in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.current_id == writing.pk
