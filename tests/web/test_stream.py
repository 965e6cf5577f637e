"""Replies stream over server-sent events from a real ASGI server (uvicorn), and a reply's
life does not depend on anyone watching it."""

from __future__ import annotations

import html
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.generation import lifecycle
from conversations.models import Message
from conversations.rendering import render_markdown, split_blocks
from tests.support.factories import MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, send
from tests.support.sse import events, http_client, stream_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_reply_streams_in_pieces_as_the_model_produces_them(
    asgi_server, owner_client, fake_openai
):
    tokens = ["Once", " upon", " a", " time", " <there>", " was", " a", " test."]
    fake_openai.script(Reply(tokens=tokens, delay=0.1))
    send(owner_client, "Tell me a story")
    reply = last_reply()
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            received = list(events(response))
    deltas = [(data, t) for event, data, t in received if event == "delta"]
    done = [data for event, data, _ in received if event == "done"]
    # Several pieces, spread over time, not one lump at the end.
    assert len(deltas) >= 4
    assert deltas[-1][1] - deltas[0][1] > 0.3
    text = html.unescape("".join(d for d, _ in deltas))
    assert text == "".join(tokens)
    # Model text is escaped in the stream.
    assert "&lt;there&gt;" in "".join(d for d, _ in deltas)
    assert len(done) == 1
    assert 'data-status="complete"' in done[0]
    assert "Once upon a time" in done[0]
    assert finished(reply).content == "".join(tokens)


def test_closing_the_tab_does_not_stop_the_reply(asgi_server, owner_client, fake_openai):
    tokens = [f"w{i} " for i in range(20)]
    fake_openai.script(Reply(tokens=tokens, delay=0.05))
    send(owner_client, "Keep going without me")
    reply = last_reply()
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply)) as response:
            for event, _, _ in events(response):
                if event == "delta":
                    break  # the browser goes away mid-reply
    reply = finished(reply, timeout=15)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "".join(tokens)
    assert not fake_openai.disconnected.is_set()


def test_the_reply_outlives_the_request_that_started_it(asgi_server, owner_client, fake_openai):
    """Sent through the real ASGI server; the request ends long before the reply does."""
    fake_openai.script(Reply(tokens=["a", "b", "c", "d"], delay=0.2))
    with http_client(asgi_server, owner_client) as http:
        page = http.get("/").text
        token = page.split('"X-CSRFToken": "')[1].split('"')[0]
        response = http.post(
            "/send/",
            data={"content": "Started over ASGI"},
            headers={"HX-Request": "true", "X-CSRFToken": token, "Referer": asgi_server.url},
        )
        assert response.status_code == 200
    reply = last_reply()
    assert reply.status in Message.IN_FLIGHT
    assert finished(reply).content == "abcd"


def test_reopening_while_it_streams_shows_the_text_so_far_then_continues_live(
    asgi_server, owner_client, fake_openai
):
    tokens = [f"p{i} " for i in range(12)]
    fake_openai.script(Reply(tokens=tokens, delay=0.1))
    send(owner_client, "Long one")
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).content:
        time.sleep(0.02)
    time.sleep(0.2)
    with http_client(asgi_server, owner_client) as http:
        page = http.get(f"/c/{reply.conversation_id}/").text
        assert 'data-status="streaming"' in page
        assert 'aria-busy="true"' in page
        assert "Stop</button>" in page
        start = page.index(f'id="m-{reply.pk}"')
        blocks = page[page.index('class="md-blocks"', start) :]
        shown_blocks = blocks[blocks.index(">") + 1 : blocks.index('</div><div class="md-tail"')]
        tail = page[page.index('class="md-tail"', start) :]
        shown_tail = tail[tail.index(">") + 1 : tail.index("</div></div>")]
        url = page[start:].split('sse-connect="')[1].split('"')[0]
        offset = int(html.unescape(url).split("?offset=", 1)[1].split("&")[0])
        # The page shows the text so far, rendered (finished blocks, then the open one);
        # the stream goes on from its length.
        so_far = "".join(tokens)[:offset]
        finished_part, open_part = split_blocks(so_far)
        assert 0 < offset < len("".join(tokens))
        assert shown_blocks.rstrip("\n") == render_markdown(finished_part)
        assert shown_tail == render_markdown(open_part)
        with http.stream("GET", html.unescape(url).replace("deltas=0", "deltas=1")) as response:
            received = list(events(response))
    rest = "".join(data for event, data, _ in received if event == "delta")
    # What the page showed plus what streamed afterwards is the whole reply, once.
    assert so_far + html.unescape(rest) == "".join(tokens)
    # The open block is re-rendered whole (a paragraph with no blank line is one open
    # block), and `done` brings the finished reply.
    text, tails = so_far, []
    for event, data, _ in received:
        text += html.unescape(data) if event == "delta" else ""
        tails += [(text, data)] if event == "tail" else []
    assert tails and all(data == render_markdown(text) for text, data in tails)
    assert received[-1][0] == "done" and render_markdown("".join(tokens)) in received[-1][1]
    finished(reply)


def test_a_reconnect_resumes_from_last_event_id(asgi_server, owner_client, fake_openai):
    tokens = ["one ", "two ", "three ", "four "]
    fake_openai.script(Reply(tokens=tokens, delay=0.15))
    send(owner_client, "Count")
    reply = last_reply()
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply)) as response:
            first = next((d for e, d, _ in events(response) if e == "delta"))
        with http.stream(
            "GET", stream_url(reply), headers={"Last-Event-ID": str(len(first))}
        ) as response:
            rest = "".join(d for e, d, _ in events(response) if e == "delta")
    assert first + rest == "".join(tokens)
    finished(reply)


def test_two_tabs_watching_one_reply_never_start_two_generations(
    asgi_server, owner_client, fake_openai
):
    fake_openai.script(Reply(tokens=["x", "y", "z"], delay=0.1))
    send(owner_client, "Shared")
    reply = last_reply()
    with http_client(asgi_server, owner_client) as a, http_client(asgi_server, owner_client) as b:
        with a.stream("GET", stream_url(reply)) as ra, b.stream("GET", stream_url(reply)) as rb:
            text_a = "".join(d for e, d, _ in events(ra) if e == "delta")
            text_b = "".join(d for e, d, _ in events(rb) if e == "delta")
    assert text_a == text_b == "xyz"
    assert len(fake_openai.requests) == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


def test_the_stream_of_a_finished_reply_ends_at_once(asgi_server, owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner, content="All done")
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply)) as response:
            received = [(e, d) for e, d, _ in events(response)]
    assert received[0] == ("delta", "All done")
    assert received[-1][0] == "done"
    assert 'data-status="complete"' in received[-1][1]


def test_a_reply_left_streaming_by_a_dead_server_shows_as_interrupted(
    owner_client, owner, settings
):
    question = MessageFactory(conversation__owner=owner, content="Before the crash")
    reply = ReplyFactory(
        conversation=question.conversation,
        parent=question,
        content="Partial before the cra",
        status=Message.Status.STREAMING,
    )
    # Recent progress: still believed to be streaming (maybe by another worker).
    page = owner_client.get(question.conversation.get_absolute_url()).content.decode()
    assert 'data-status="streaming"' in page
    # No progress for longer than CHAT_STALE_AFTER: interrupted, text kept.
    Message.objects.filter(pk=reply.pk).update(
        updated=timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER + 1)
    )
    page = owner_client.get(question.conversation.get_absolute_url()).content.decode()
    assert 'data-status="interrupted"' in page
    assert "Partial before the cra" in page
    assert "Retry</button>" in page
    # Reads never write: the page only showed it; the sweep records it, text kept.
    reply.refresh_from_db()
    assert reply.status == Message.Status.STREAMING
    assert lifecycle.replies_interrupt_stale() == 1
    reply.refresh_from_db()
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content == "Partial before the cra"


def test_the_stream_of_a_reply_from_a_dead_server_ends_as_interrupted(
    asgi_server, owner_client, owner, settings
):
    settings.CHAT_STALE_AFTER = 0.3
    reply = ReplyFactory(conversation__owner=owner, content="Half", status=Message.Status.STREAMING)
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply)) as response:
            received = [(e, d) for e, d, _ in events(response)]
    assert received[-1][0] == "done"
    assert 'data-status="interrupted"' in received[-1][1]


def test_a_stop_from_another_process_is_seen_by_the_generator(owner_client, fake_openai):
    """Another worker marks the reply stopped in the database; this one stops generating."""
    fake_openai.script(Reply(tokens=["s"] * 200, delay=0.05))
    send(owner_client, "Two workers")
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).content:
        time.sleep(0.02)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STOPPED)
    assert fake_openai.disconnected.wait(5)
    reply = finished(reply)
    assert reply.status == Message.Status.STOPPED
    assert 0 < len(reply.content) < 200


def test_the_reply_is_saved_as_it_grows(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=[f"g{i} " for i in range(30)], delay=0.05))
    send(owner_client, "Grow")
    reply = last_reply()
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = Message.objects.get(pk=reply.pk)
        seen.add(len(current.content))
        if current.status == Message.Status.COMPLETE:
            break
        time.sleep(0.03)
    # The database held several intermediate lengths, not just empty then complete.
    assert len(seen - {0}) >= 3
    finished(reply)


def test_htmx_send_response_connects_the_reply_to_its_stream(owner_client, fake_openai):
    response = send(owner_client, "Wire it up")
    reply = last_reply()
    html_text = response.content.decode()
    stream = f"/c/{reply.conversation_id}/m/{reply.pk}/stream/?offset=0&amp;deltas=0"
    assert f'sse-connect="{stream}"' in html_text
    # The page shows finished blocks (appended) and the open one (replaced); `delta`
    # events are for other clients, so the page asks for none.
    assert 'sse-swap="block" hx-swap="beforeend"' in html_text
    assert 'sse-swap="tail" hx-swap="innerHTML"' in html_text
    assert 'sse-close="done"' in html_text
    # Not read out at every re-render: the announcer says when the reply ends.
    assert 'aria-live="off" aria-busy="true"' in html_text
    finished(reply)
    page = owner_client.get(f"/c/{reply.conversation_id}/", **HTMX).content.decode()
    assert "sse-connect" not in page
    assert 'aria-live="polite" aria-busy="false"' in page


def test_a_reply_orphaned_by_a_dead_server_is_recorded_by_the_sweep_on_its_schedule(
    owner, settings, monkeypatch
):
    """Every process that generates sweeps orphaned replies every CHAT_SWEEP_INTERVAL."""
    from conversations.generation.runner import Runner

    reply = ReplyFactory(conversation__owner=owner, content="Half", status=Message.Status.STREAMING)
    Message.objects.filter(pk=reply.pk).update(
        updated=timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER + 1)
    )
    schedule = Runner()  # a runner of its own, so the schedule starts in this test
    monkeypatch.setattr(lifecycle, "runner", schedule)
    settings.CHAT_SWEEP_INTERVAL = 0.05
    lifecycle.start_sweeping()
    lifecycle.start_sweeping()  # once per process, however often it is asked
    try:
        deadline = time.monotonic() + 5
        while Message.objects.get(pk=reply.pk).status != Message.Status.INTERRUPTED:
            assert time.monotonic() < deadline, "the sweep never ran"
            time.sleep(0.02)
    finally:
        schedule.cancel_every(lifecycle.SWEEP)
    reply.refresh_from_db()
    assert reply.content == "Half" and reply.error == lifecycle.INTERRUPTED_ERROR
