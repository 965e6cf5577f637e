"""A reasoning model's thinking: saved apart from the answer as it grows, kept however the
reply ends, carried by both journals, followed by watchers in the database too."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from conversations.generation import journal, lifecycle
from conversations.generation.journal import Entry, JournalWriter, MemoryJournal, RedisJournal
from conversations.generation.runner import runner
from conversations.generation.watch import ReplyWatch
from conversations.models import Message
from tests.generation.test_journal import REPLY, any_journal  # noqa: F401 - a fixture
from tests.support.factories import ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send

pytestmark = pytest.mark.django_db(transaction=True)

THOUGHTS = ["Two ", "and two ", "make four."]


@pytest.mark.parametrize(
    "form", ["reasoning_content", "reasoning", "reasoning_details", "think", "think_unopened"]
)
def test_a_reply_keeps_its_thinking_apart_from_its_answer(owner_client, fake_openai, form):
    fake_openai.script(
        Reply(reasoning=THOUGHTS, reasoning_format=form, tokens=["It is ", "4."], delay=0.05)
    )
    send(owner_client, "2+2?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "It is 4."
    assert reply.reasoning == "".join(THOUGHTS)
    assert reply.reasoning_started is not None and reply.reasoning_ended is not None
    assert reply.reasoning_started <= reply.reasoning_ended <= reply.updated
    # Three pieces of 50 ms, the last of the thinking's included, before the answer began.
    took = reply.reasoning_ended - reply.reasoning_started
    assert timedelta(milliseconds=50) <= took < timedelta(seconds=3)
    assert reply.reasoning_seconds == 1
    assert reply.reasoning_tokens == 3
    assert reply.completion_tokens == 5


def test_thinking_is_saved_as_it_grows(owner_client, fake_openai, settings):
    settings.CHAT_SAVE_INTERVAL = 0.1
    fake_openai.script(
        Reply(reasoning=["Hmm. "] * 5, tokens=["ok"], stall_after=2, stall=1.0, delay=0.01)
    )
    send(owner_client, "Think slowly")
    reply = last_reply()
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline and not seen:
        row = Message.objects.get(pk=reply.pk)
        seen = row.reasoning
        time.sleep(0.02)
    # Saved mid-thought: the stall holds the rest back.
    assert seen == "Hmm. Hmm. "
    assert row.status == Message.Status.STREAMING and row.content == ""
    assert finished(reply).reasoning == "Hmm. " * 5


def test_a_reply_stopped_while_thinking_keeps_its_thinking(owner_client, fake_openai, settings):
    settings.CHAT_SAVE_INTERVAL = 0.1
    fake_openai.script(Reply(reasoning=[f"step {i}. " for i in range(100)], delay=0.05))
    send(owner_client, "Think for ever")
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).reasoning:
        time.sleep(0.02)
    owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    assert fake_openai.disconnected.wait(5)
    reply = finished(reply)
    assert reply.status == Message.Status.STOPPED
    assert reply.reasoning.startswith("step 0. step 1.")
    assert reply.content == ""
    # Thinking that never reached an answer ended with the reply.
    assert reply.reasoning_ended is not None and reply.reasoning_started is not None


def test_a_reply_that_fails_keeps_its_thinking_and_its_answer_so_far(owner_client, fake_openai):
    fake_openai.script(Reply(reasoning=["Deep ", "thought"], tokens=["Half", " an"], break_after=3))
    send(owner_client, "Break")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "broke" in reply.error
    assert (reply.reasoning, reply.content) == ("Deep thought", "Half")


def test_the_chat_log_line_has_the_thinkings_length_and_tokens_not_its_text(
    owner_client, fake_openai
):
    fake_openai.script(Reply(reasoning=["secret ", "musing"], tokens=["Answer"]))
    send(owner_client, "Log it")
    reply = finished(last_reply())
    [event] = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == reply.pk]
    assert event["reasoning_chars"] == len("secret musing")
    assert event["reasoning_tokens"] == 2
    assert "musing" not in str(event)
    assert event["text"] == "Answer"


def test_the_writer_sends_thinking_rethink_and_thought_in_order(any_journal):  # noqa: F811
    async def go() -> None:
        if isinstance(any_journal, MemoryJournal):
            any_journal.open(REPLY)
        writer = JournalWriter(any_journal, REPLY)
        writer.text("Okay, ")
        writer.text("so")
        writer.rethink("Okay, so")  # a </think> with no <think>: that was thinking
        writer.reasoning(" four.")
        writer.thought(timedelta(milliseconds=1500))
        writer.text("4")
        await writer.end("complete")
        entries, _ = await any_journal.read(REPLY, journal.START, 1)
        assert [(e.kind, e.at, e.text, e.ms) for e in entries] == [
            ("text", 8, "Okay, so", 0),
            ("rethink", 8, "Okay, so", 0),
            ("reasoning", 14, " four.", 0),
            ("thought", 0, "", 1500),
            ("text", 1, "4", 0),
            ("end", 1, "", 0),
        ]

    try:
        asyncio.run(go())
    finally:
        if isinstance(any_journal, RedisJournal):
            any_journal.sync_client().delete(any_journal.key(REPLY))


def test_an_entry_survives_its_fields():
    entry = Entry("thought", 3, ms=2400)
    assert Entry.from_fields(entry.fields()) == entry


def test_a_watcher_of_the_database_alone_sees_thinking_grow_and_a_rethink(owner):
    """No journal knows the reply (another process without Redis): the database is polled."""
    started = timezone.now()
    reply = ReplyFactory(
        conversation__owner=owner,
        status=Message.Status.STREAMING,
        content="",
        reasoning="Let me",
        reasoning_started=started,
    )

    async def watch() -> list:
        watcher = ReplyWatch(reply)
        updates = [await watcher.next(1)]
        await asyncio.to_thread(
            Message.objects.filter(pk=reply.pk).update,
            reasoning="Let me see",
            updated=timezone.now(),
        )
        updates.append(await watcher.next(2))
        await asyncio.to_thread(
            Message.objects.filter(pk=reply.pk).update,
            content="Four",
            reasoning_ended=started + timedelta(seconds=2),
            status=Message.Status.COMPLETE,
        )
        updates.append(await watcher.next(2))
        return updates

    first, grew, ended = asyncio.run(watch())
    assert (first.reasoning, first.text, first.done) == ("Let me", "", False)
    assert (grew.reasoning, grew.reasoning_at, grew.text) == (" see", 10, "")
    assert (ended.text, ended.reasoning, ended.thought_ms, ended.done) == ("Four", "", 2000, True)

    # A reply whose answer so far proved to be thinking: replaced whole.
    other = ReplyFactory(
        conversation__owner=owner, status=Message.Status.STREAMING, content="Hmm ok"
    )

    async def rethink() -> object:
        watcher = ReplyWatch(other)
        await watcher.next(1)
        await asyncio.to_thread(
            Message.objects.filter(pk=other.pk).update,
            content="",
            reasoning="Hmm ok",
            updated=timezone.now(),
        )
        return await watcher.next(2)

    update = asyncio.run(rethink())
    assert update.rethink and (update.reasoning, update.text) == ("Hmm ok", "")


def test_a_reply_interrupted_by_a_restart_keeps_its_thinking(owner_client, fake_openai, settings):
    # No periodic save comes before the exit: the thinking kept is the process's own.
    settings.CHAT_SAVE_INTERVAL = 60
    fake_openai.script(
        Reply(reasoning=["Mulling ", "it over."], tokens=["x"], stall_after=2, stall=3.0)
    )
    send(owner_client, "Think, then restart")
    reply = last_reply()
    deadline = time.monotonic() + 10
    while (live := runner.get(reply.pk)) is None or live.snapshot().reasoning != "Mulling it over.":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert Message.objects.get(pk=reply.pk).reasoning == ""  # not saved yet
    # What the server does when it exits cleanly (a deploy) with the reply still thinking.
    assert lifecycle.replies_interrupt_live() == 1
    row = Message.objects.get(pk=reply.pk)
    assert row.status == Message.Status.INTERRUPTED
    assert (row.reasoning, row.content) == ("Mulling it over.", "")
    reply = finished(reply)
    assert reply.status == Message.Status.INTERRUPTED and reply.reasoning == "Mulling it over."
