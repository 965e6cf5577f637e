"""A reply's thinking over server-sent events: its own events, rendered and sanitized like
the answer, ids that resume both, and the page's <details> block with and without JS."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from conversations.models import Message
from conversations.rendering import render_markdown
from tests.support.engines import REDIS_URL, redis_up
from tests.support.factories import ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send
from tests.support.sse import http_client

pytestmark = pytest.mark.django_db(transaction=True)


def _events(response) -> list[tuple[str, str, str | None]]:
    """(event, data, id) of every event, to the end."""
    out, event, data, event_id = [], "message", [], None
    for line in response.iter_lines():
        if line == "":
            if data:
                out.append((event, "\n".join(data), event_id))
            event, data, event_id = "message", [], None
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith("id:"):
            event_id = line[3:].strip()
    return out


def _read(asgi_server, client, reply, query="", headers=None):
    url = reverse("reply_stream", args=[reply.conversation_id, reply.pk]) + query
    with http_client(asgi_server, client) as http:
        with http.stream("GET", url, headers=headers or {}) as response:
            assert response.status_code == 200
            return _events(response)


def _shown(received, block: str, tail: str) -> str:
    """What the page shows of a lane: its blocks appended, its last tail after them."""
    blocks, last_tail = "", ""
    for event, data, _ in received:
        if event == "reset":
            blocks, last_tail = "", ""
        elif event == block:
            blocks += data
        elif event == tail:
            last_tail = data
    return blocks + last_tail


@pytest.mark.parametrize("journal", ["memory", "redis"])
def test_thinking_streams_in_its_own_events_then_the_answer(
    asgi_server, owner_client, fake_openai, settings, journal
):
    if journal == "redis":
        if not redis_up():
            pytest.skip(f"needs Redis at {REDIS_URL}")
        settings.REDIS_URL = REDIS_URL
    thinking = ["First, ", "*two* and two.\n\n", "Then <b>four</b>."]
    fake_openai.script(
        Reply(reasoning=thinking, tokens=["It is ", "**4**."], first_delay=0.3, delay=0.1)
    )
    send(owner_client, "2+2?")
    reply = last_reply()
    received = _read(asgi_server, owner_client, reply)
    kinds = [event for event, _, _ in received]
    deltas = [data for event, data, _ in received if event == "think-delta"]
    # Live, in pieces, escaped; then the thought's end, then the answer.
    assert len(deltas) >= 2
    assert html.unescape("".join(deltas)) == "".join(thinking)
    assert "&lt;b&gt;" in "".join(deltas)
    assert kinds.index("thought") < kinds.index("delta")
    assert max(i for i, k in enumerate(kinds) if k.startswith("think-")) < kinds.index("thought")
    [thought] = [data for event, data, _ in received if event == "thought"]
    assert re.fullmatch(r"Thought for \d+ s", thought)
    # Rendered like replies, sanitized: the server's HTML, the model's tags as text.
    shown = _shown(received, "think-block", "think-tail")
    assert "<em>two</em>" in shown and "<b>" not in shown and "&lt;b&gt;four" in shown
    # Ids: the answer's length, then the thinking's after a dot.
    ids = [event_id for event, _, event_id in received if event in ("think-delta", "delta")]
    assert ids[0] == f"0.{len(thinking[0])}"
    assert ids[-1] == f"{len('It is **4**.')}.{len(''.join(thinking))}"
    done = received[-1]
    assert done[0] == "done"
    assert '<details class="reasoning">' in done[1] and "Thought for" in done[1]
    assert "<strong>4</strong>" in done[1]
    assert finished(reply).reasoning == "".join(thinking)


@pytest.mark.parametrize("journal", ["memory", "redis"])
def test_a_closing_tag_alone_resets_the_answer_and_the_page_ends_right(
    asgi_server, owner_client, fake_openai, settings, journal
):
    if journal == "redis":
        if not redis_up():
            pytest.skip(f"needs Redis at {REDIS_URL}")
        settings.REDIS_URL = REDIS_URL
    fake_openai.script(
        Reply(
            reasoning=["Okay, ", "the user wants 4."],
            reasoning_format="think_unopened",
            tokens=["Four."],
            first_delay=0.3,
            delay=0.1,
        )
    )
    send(owner_client, "2+2?")
    reply = last_reply()
    received = _read(asgi_server, owner_client, reply)
    kinds = [event for event, _, _ in received]
    # First shown as the answer (nothing said otherwise), then moved, whole.
    assert "delta" in kinds[: kinds.index("reset")]
    assert _shown(received, "think-block", "think-tail") == render_markdown(
        "Okay, the user wants 4."
    )
    assert _shown(received, "block", "tail") == render_markdown("Four.")
    reply = finished(reply)
    assert (reply.reasoning, reply.content) == ("Okay, the user wants 4.", "Four.")
    assert "Four." in received[-1][1] and "the user wants 4." in received[-1][1]


def test_a_reconnect_resumes_the_thinking_from_its_last_event_id(asgi_server, owner_client, owner):
    reply = ReplyFactory(
        conversation__owner=owner,
        status=Message.Status.COMPLETE,
        content="Answer",
        reasoning="abcdefghij",
    )
    received = _read(asgi_server, owner_client, reply, headers={"Last-Event-ID": "0.4"})
    assert html.unescape("".join(d for e, d, _ in received if e == "think-delta")) == "efghij"
    assert html.unescape("".join(d for e, d, _ in received if e == "delta")) == "Answer"
    # The page's own offsets say the same in its query.
    received = _read(asgi_server, owner_client, reply, "?offset=6&roffset=10")
    assert not [e for e, _, _ in received if e in ("delta", "think-delta")]
    # Nonsense in either place means "from the start", never an error.
    received = _read(asgi_server, owner_client, reply, headers={"Last-Event-ID": "x.-3."})
    assert html.unescape("".join(d for e, d, _ in received if e == "think-delta")) == "abcdefghij"


def test_the_page_shows_the_thinking_folded_after_the_reply_without_javascript(
    owner_client, fake_openai
):
    fake_openai.script(Reply(reasoning=["Pondering <i>deeply</i>."], tokens=["Done."]))
    response = send(owner_client, "Think", htmx=False)
    assert response.status_code == 302
    reply = finished(last_reply())
    page = owner_client.get(response["Location"]).content.decode()
    block = page[page.index('<details class="reasoning"') :]
    block = block[: block.index("</details>")]
    # Folded (no "open"), reopened by a click on its summary: no JavaScript needed.
    assert block.startswith('<details class="reasoning">')
    assert f"Thought for {reply.reasoning_seconds} s" in block
    assert "Pondering &lt;i&gt;deeply&lt;/i&gt;." in block and "<i>" not in block
    assert page.index("</details>") < page.index("Done.")


def test_a_page_opened_mid_thought_shows_it_open_and_streams_both_offsets(owner_client, owner):
    reply = ReplyFactory(
        conversation__owner=owner,
        status=Message.Status.STREAMING,
        content="",
        reasoning="Still thinking\n\nabout it",
    )
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert '<details class="reasoning" open>' in page
    assert "offset=0&amp;roffset=24&amp;deltas=0" in page
    assert 'sse-swap="think-block"' in page and 'sse-swap="thought"' in page
    assert render_markdown("Still thinking\n\n") in page


def test_a_reply_without_thinking_has_no_block_once_ended(owner_client, fake_openai):
    send(owner_client, "Plain")
    reply = finished(last_reply())
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert 'class="reasoning"' not in page


def test_a_strangers_thinking_is_never_shown(asgi_server, stranger_client, owner):
    reply = ReplyFactory(conversation__owner=owner, content="x", reasoning="private musing")
    url = reverse("reply_stream", args=[reply.conversation_id, reply.pk])
    with http_client(asgi_server, stranger_client) as http:
        assert http.get(url).status_code == 404
    page = stranger_client.get(reply.conversation.get_absolute_url())
    assert page.status_code == 404 and b"private musing" not in page.content
