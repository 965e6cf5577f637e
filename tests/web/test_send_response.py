"""What a send answers an htmx POST with: what changed, no more.

The question and the pending reply (in a new chat, the conversation around them), and the
sidebar entry of the conversation moved to the top, out of band — not the whole sidebar,
and the sidebar queried once at most. The out-of-band pieces are applied here the way
htmx applies them, to the sidebar the page showed before the send: the result must be the
sidebar a fresh page shows after it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.helpers import finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)

# The shape of the sidebar's query (history/sidebar.py): a user's conversations by recency.
# A page of a user's conversations in sidebar order (by name, or by position in a values query).
SIDEBAR_QUERY = re.compile(
    r'FROM "conversations_conversation" WHERE .*"owner_id" = .* ORDER BY '
    r'("conversations_conversation"\."updated"|\d+) DESC.* LIMIT'
)


def _midnight() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def _ago(group: str, rank: int) -> datetime:
    """A time in `group` (rank: how far down it, in steps that keep the order)."""
    now, midnight = timezone.now(), _midnight()
    if group == "Today":
        return max(midnight + timedelta(microseconds=100 - rank), now - timedelta(seconds=rank))
    start = {"Yesterday": 1, "Previous 7 days": 3, "Previous 30 days": 10, "Older": 60}[group]
    return midnight - timedelta(days=start - 1) - timedelta(minutes=1 + rank)


def _conversations(owner, groups: list[str]) -> list[Conversation]:
    """One conversation (a question and its reply) per entry, newest first."""
    made = []
    for rank, group in enumerate(groups):
        conversation = ConversationFactory(owner=owner, title=f"Chat {rank}")
        question = MessageFactory(conversation=conversation)
        ReplyFactory(conversation=conversation, parent=question)
        Conversation.objects.filter(pk=conversation.pk).update(updated=_ago(group, rank))
        made.append(Conversation.objects.get(pk=conversation.pk))
    return made


def _sidebar_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if SIDEBAR_QUERY.search(q["sql"])]


# --- Applying the out-of-band pieces as htmx does --------------------------------------

NAV = re.compile(r'<nav id="sidebar-list".*?</nav>', re.S)
OOB = re.compile(r'<(li|ul|nav)\b[^>]*\bhx-swap-oob="([^"]*)"[^>]*>.*?</\1>', re.S)


def _parse(html: str) -> ET.Element:
    element = ET.fromstring(html)  # noqa: S314 (our own server's HTML, in a test)
    for node in element.iter():
        node.text = node.text.strip() or None if node.text else None
        node.tail = node.tail.strip() or None if node.tail else None
    return element


def _nav(page_html: str) -> ET.Element:
    return _parse(NAV.search(page_html).group(0))


def _apply(nav: ET.Element, response_html: str) -> tuple[ET.Element, int]:
    """The sidebar after htmx's out-of-band swaps of the response; and how many there were.

    A swap whose target is missing fails here, as htmx reports it on the console.
    """
    pieces = 0
    for match in OOB.finditer(response_html):
        pieces += 1
        piece = _parse(match.group(0))
        how = piece.attrib.pop("hx-swap-oob")
        if match.group(1) == "nav":
            assert how == "true"
            nav = piece
            continue
        ul = nav.find("ul")
        assert ul is not None, f"no list to swap {how!r} into"
        if match.group(1) == "ul":
            assert how == "afterbegin:#sidebar-list > ul", how
            for index, child in enumerate(list(piece)):
                ul.insert(index, child)
            continue
        targets = [li for li in ul if li.get("id") == piece.get("id")]
        assert len(targets) == 1, f"{how} {piece.get('id')}: {len(targets)} targets"
        index = list(ul).index(targets[0])
        ul.remove(targets[0])
        if how == "true":
            ul.insert(index, piece)
        else:
            assert how == "delete", how
    return nav, pieces


def _entries(nav: ET.Element) -> list[str]:
    return [ET.tostring(li, encoding="unicode") for li in nav.iter("li") if li.get("id")]


def _send_and_compare(owner_client, conversation: Conversation | None):
    before = owner_client.get(conversation.get_absolute_url() if conversation else "/")
    with CaptureQueriesContext(connection) as captured:
        response = send(owner_client, "Hello again", conversation)
    assert response.status_code == 200, response.content
    # Read now: the next request clears the connection's log.
    queries = list(captured.captured_queries)
    finished(last_reply())
    html = response.content.decode()
    moved = conversation or Conversation.objects.latest("id")
    patched, pieces = _apply(_nav(before.content.decode()), html)
    fresh = _nav(owner_client.get(moved.get_absolute_url()).content.decode())
    return html, queries, patched, fresh, pieces


# --- What the POST costs -----------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 100])
def test_a_message_in_a_conversation_costs_one_sidebar_query_and_one_entry(
    owner_client, owner, fake_openai, django_assert_max_num_queries, count
):
    conversations = _conversations(owner, ["Older"] * count)
    target = conversations[len(conversations) // 2]
    # The send itself (session, user, limits, locks, the branch, inserts) and one sidebar
    # query; before, the sidebar was also rendered whole: 10.6 KB with 100 conversations.
    with django_assert_max_num_queries(17) as captured:
        response = send(owner_client, "Hello", target)
    finished(last_reply())
    assert response.status_code == 200
    assert len(_sidebar_queries(captured.captured_queries)) == 1, captured.captured_queries
    html = response.content.decode()
    assert html.count("<article") == 2
    assert 'data-status="pending"' in html
    # The moved entry alone (plus, at most, the one that lost or gained a heading).
    assert 1 <= html.count("data-conversation=") <= 2
    assert f'data-conversation="{target.pk}" aria-current="page"' in html
    assert len(html) < 3_000, len(html)


@pytest.mark.parametrize("count", [0, 100])
def test_the_first_message_of_a_chat_renders_the_conversation_and_its_entry_only(
    owner_client, owner, fake_openai, django_assert_max_num_queries, count
):
    _conversations(owner, ["Today"] * count)
    owner_client.get("/")  # a process's first request also sweeps old imports: not counted
    with CaptureQueriesContext(connection) as queries:
        response = send(owner_client, "What is new?")
    finished(last_reply())
    assert response.status_code == 200
    # Before: 13 queries, the sidebar twice (for a page context and for the sidebar).
    assert len(_sidebar_queries(queries.captured_queries)) == 1, queries.captured_queries
    assert len(queries.captured_queries) <= 11, len(queries.captured_queries)
    conversation = Conversation.objects.latest("id")
    html = response.content.decode()
    assert response["HX-Retarget"] == "#chat"
    assert response["HX-Push-Url"] == conversation.get_absolute_url()
    assert 'id="conversation-header"' in html
    assert html.count("<article") == 2
    assert 'data-status="pending"' in html
    assert 'id="composer"' in html
    assert f'data-conversation="{conversation.pk}" aria-current="page"' in html
    # The new entry, and at most the old top one (which lost its "Today" heading).
    assert 1 <= html.count("data-conversation=") <= 2
    # The composer is most of it (with its file input and the chips' template).
    assert len(html) < 8_000, len(html)


def test_the_response_does_not_grow_with_the_sidebar(owner, owner_client, fake_openai):
    sizes = []
    for count in (2, 100):
        Conversation.objects.filter(owner=owner).delete()
        conversations = _conversations(owner, ["Yesterday"] * count)
        response = send(owner_client, "Hello", conversations[1])
        finished(last_reply())
        html = response.content.decode()
        # Ids, times and CSRF tokens differ in length; the content does not.
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        sizes.append(len(re.sub(r"\d+", "", html)))
    assert sizes[0] == sizes[1], sizes


def test_one_sidebar_query_per_message_in_a_conversation(owner, owner_client, fake_openai):
    conversations = _conversations(owner, ["Today", "Today", "Yesterday", "Older"])
    with CaptureQueriesContext(connection) as queries:
        response = send(owner_client, "Hello", conversations[2])
    finished(last_reply())
    assert response.status_code == 200
    assert len(_sidebar_queries(queries.captured_queries)) == 1, queries.captured_queries


def test_a_refused_message_renders_the_composer_without_the_sidebar(
    owner, owner_client, fake_openai
):
    conversations = _conversations(owner, ["Today"] * 5)
    with CaptureQueriesContext(connection) as queries:
        response = send(owner_client, "   ", conversations[0])
    assert response.status_code == 422
    assert not _sidebar_queries(queries.captured_queries)
    html = response.content.decode()
    assert 'id="composer"' in html
    assert "data-conversation=" not in html
    assert Message.objects.count() == 10


# --- What the user sees: the sidebar after the swaps is the sidebar of a fresh page -----


@pytest.mark.parametrize(
    ("groups", "index", "pieces"),
    [
        # Already on top, in Today: only its own entry, re-sent in place.
        (["Today", "Today", "Yesterday"], 0, 1),
        # On top but from yesterday: it now says Today, and the next one Yesterday.
        (["Yesterday", "Yesterday", "Older"], 0, 2),
        # In the middle and first of its group: the next of that group takes the heading,
        # the old top entry (Today) loses it.
        (["Today", "Today", "Yesterday", "Yesterday", "Older"], 2, 4),
        # The last of its group, under a top entry of another group (which keeps its own).
        (["Yesterday", "Previous 7 days", "Older"], 1, 2),
        # The last entry.
        (["Today", "Previous 30 days", "Older", "Older"], 3, 3),
        # The only conversation: the list of one entry.
        (["Older"], 0, 1),
    ],
)
def test_a_message_moves_its_conversation_to_the_top_of_the_sidebar(
    owner, owner_client, fake_openai, groups, index, pieces
):
    conversations = _conversations(owner, groups)
    html, queries, patched, fresh, sent = _send_and_compare(owner_client, conversations[index])
    assert _entries(patched) == _entries(fresh)
    assert ET.tostring(patched) == ET.tostring(fresh)
    assert sent == pieces, html
    assert len(_sidebar_queries(queries)) == 1


@pytest.mark.parametrize(
    ("groups", "pieces"),
    [
        ([], 1),  # "No conversations yet." becomes the list
        (["Today", "Today"], 2),  # the old top entry loses its "Today"
        (["Previous 7 days", "Older"], 1),
    ],
)
def test_the_first_message_of_a_chat_puts_it_on_top_of_the_sidebar(
    owner, owner_client, fake_openai, groups, pieces
):
    _conversations(owner, groups)
    html, queries, patched, fresh, sent = _send_and_compare(owner_client, None)
    assert ET.tostring(patched) == ET.tostring(fresh)
    assert sent == pieces, html
    assert len(_sidebar_queries(queries)) == 1


def test_a_conversation_from_beyond_the_first_page_is_added_on_top(
    owner, owner_client, fake_openai, settings
):
    settings.CHAT_SIDEBAR_LIMIT = 3
    conversations = _conversations(owner, ["Today", "Yesterday", "Older", "Older", "Older"])
    html, _queries, patched, fresh, sent = _send_and_compare(owner_client, conversations[4])
    # Not shown before: nothing to remove; the page keeps the entries it had below it.
    assert 'hx-swap-oob="delete"' not in html
    assert _entries(patched)[:3] == _entries(fresh)
    assert len(_entries(patched)) == 4
    assert sent == 2  # the entry, and "Today" leaving the old top one


def test_the_moved_entry_is_marked_current_and_keeps_its_title(owner, owner_client, fake_openai):
    conversations = _conversations(owner, ["Today", "Today"])
    Conversation.objects.filter(pk=conversations[1].pk).update(title="Tom & <Jerry>")
    conversation = Conversation.objects.get(pk=conversations[1].pk)
    html, _queries, patched, _fresh, _sent = _send_and_compare(owner_client, conversation)
    first = patched.find("ul")[0]
    link = first.find("a")
    assert link.get("aria-current") == "page"
    assert link.text == "Tom & <Jerry>"
    assert first.find("h2").text == "Today"
    assert "Tom &amp; &lt;Jerry&gt;" in html
