"""A reply's life when things go wrong: database errors and dropped connections mid-reply,
servers that died, stops from other processes, odd model output. Nothing is lost."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from conversations.generation import lifecycle
from conversations.generation.runner import runner
from conversations.models import Conversation, Message
from tests.support.factories import MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send

pytestmark = pytest.mark.django_db(transaction=True)


def _fail_first(monkeypatch, name: str, times: int = 1) -> list[int]:
    """Make lifecycle.<name> raise OperationalError on its first `times` calls."""
    real = getattr(lifecycle, name)
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("database is locked (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, name, flaky)
    return calls


def test_a_database_error_at_the_end_does_not_lose_the_reply(
    owner_client, fake_openai, monkeypatch
):
    calls = _fail_first(monkeypatch, "record_end", times=2)
    fake_openai.script(Reply(tokens=["all", " of", " this", " text"]))
    send(owner_client, "Save me")
    reply = finished(last_reply(), timeout=15)
    assert len(calls) == 3
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "all of this text"
    events = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == reply.pk]
    assert [e["status"] for e in events] == ["complete"]


def test_a_database_error_while_streaming_does_not_stop_the_saving(
    owner_client, fake_openai, monkeypatch, settings
):
    settings.CHAT_SAVE_INTERVAL = 0.05
    calls = _fail_first(monkeypatch, "save_progress")
    fake_openai.script(Reply(tokens=[f"s{i} " for i in range(30)], delay=0.04))
    send(owner_client, "Keep saving")
    reply = last_reply()
    lengths = set()
    while runner.get(reply.pk) is not None:
        lengths.add(len(Message.objects.get(pk=reply.pk).content))
        time.sleep(0.02)
    assert len(calls) > 5
    # Saves went on after the failed one: several lengths between empty and complete.
    assert len(lengths - {0, len("".join(f"s{i} " for i in range(30)))}) >= 3
    assert finished(reply).status == Message.Status.COMPLETE


def test_a_nul_character_from_the_model_is_dropped_not_fatal(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["Hello", " wor\x00ld"]))
    send(owner_client, "NUL please")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Hello world"


def test_a_reply_orphaned_by_a_dead_server_does_not_block_the_conversation(
    owner_client, owner, fake_openai, settings
):
    question = MessageFactory(conversation__owner=owner, content="Before the crash")
    orphan = ReplyFactory(
        conversation=question.conversation,
        parent=question,
        content="Half",
        status=Message.Status.STREAMING,
    )
    Message.objects.filter(pk=orphan.pk).update(
        updated=timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER + 1)
    )
    response = send(owner_client, "After the crash", question.conversation)
    assert response.status_code == 200
    finished(last_reply())
    orphan.refresh_from_db()
    assert orphan.status == Message.Status.INTERRUPTED
    assert orphan.content == "Half"
    events = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == orphan.pk]
    assert [(e["status"], e["text"]) for e in events] == [("interrupted", "Half")]


def test_stop_from_another_process_stops_the_generator_within_a_tick(
    owner_client, fake_openai, settings
):
    settings.CHAT_SAVE_INTERVAL = 0.1
    fake_openai.script(Reply(tokens=["w "] * 100, first_delay=0.2, delay=0.3))
    send(owner_client, "Stop me from elsewhere")
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).content:
        time.sleep(0.02)
    # What another worker's Stop does: it cannot reach this process's task.
    asked = time.monotonic()
    Message.objects.filter(pk=reply.pk).update(stop_requested=True)
    assert fake_openai.disconnected.wait(5)
    assert time.monotonic() - asked < 1.5
    reply = finished(reply)
    assert reply.status == Message.Status.STOPPED
    assert not reply.stop_requested
    events = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == reply.pk]
    # Logged once, by the generator, with exactly the saved text.
    assert [(e["status"], e["text"]) for e in events] == [("stopped", reply.content)]


def test_stop_of_a_reply_nobody_generates_any_more_ends_it_at_once(owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner, content="Orphan", status="streaming")
    # Silent for longer than a generator's heartbeat: nobody is writing it.
    Message.objects.filter(pk=reply.pk).update(updated=timezone.now() - timedelta(seconds=20))
    started = time.monotonic()
    response = owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    assert response.status_code == 200
    assert time.monotonic() - started < 1
    reply.refresh_from_db()
    assert reply.status == Message.Status.STOPPED
    assert reply.content == "Orphan"
    assert 'data-status="stopped"' in response.content.decode()
    events = [e for e in log_events(django_settings.CHAT_LOG_FILE) if e["message"] == reply.pk]
    assert [(e["status"], e["text"]) for e in events] == [("stopped", "Orphan")]


def test_an_unanswered_stop_request_ends_the_reply_after_waiting(owner):
    """Recent progress, but no process answers the stop request: ended after `wait`."""
    reply = ReplyFactory(conversation__owner=owner, content="Quiet", status="streaming")
    started = time.monotonic()
    reply = lifecycle.reply_stop(reply=reply, wait=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert reply.status == Message.Status.STOPPED
    assert reply.content == "Quiet"


def test_the_saver_recovers_when_the_database_drops_its_connection(
    owner_client, fake_openai, settings
):
    from django.db import connection

    settings.CHAT_SAVE_INTERVAL = 0.05
    tokens = [f"c{i} " for i in range(40)]
    fake_openai.script(Reply(tokens=tokens, delay=0.04))
    send(owner_client, "Survive a database restart")
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).content:
        time.sleep(0.01)

    # What a database restart does to the generation thread's open connection.
    def drop_connection() -> None:
        if connection.connection is not None:
            connection.connection.close()

    # On the runner's DB thread, where the reply's connection lives.
    runner.spawn(lambda: runner.db(drop_connection)).result(timeout=10)
    broken_at = len(Message.objects.get(pk=reply.pk).content)
    lengths = set()
    while runner.get(reply.pk) is not None:
        lengths.add(len(Message.objects.get(pk=reply.pk).content))
        time.sleep(0.02)
    full = len("".join(tokens))
    # Saving went on after the broken connection, before the final save.
    assert {n for n in lengths if broken_at < n < full}
    assert finished(reply).content == "".join(tokens)


def test_nul_in_a_providers_error_is_stored_without_it(owner_client, fake_openai):
    fake_openai.script(Reply(status=400, error_message="bad\x00request"))
    send(owner_client, "NUL in the error")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "badrequest" in reply.error


def test_a_sweep_rolled_back_with_a_refused_retry_is_not_logged(owner_client, owner, settings):
    q1 = MessageFactory(conversation__owner=owner)
    failed = ReplyFactory(conversation=q1.conversation, parent=q1, status=Message.Status.ERROR)
    q2 = MessageFactory(conversation=q1.conversation)
    orphan = ReplyFactory(
        conversation=q1.conversation, parent=q2, content="Half", status="streaming"
    )
    Message.objects.filter(pk=orphan.pk).update(
        updated=timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER + 1)
    )
    url = reverse("retry", args=[failed.conversation_id, failed.pk])
    assert owner_client.post(url, **HTMX).status_code == 400

    def orphan_events() -> list[dict]:
        events = log_events(django_settings.CHAT_LOG_FILE)
        return [e for e in events if e["message"] == orphan.pk]

    assert orphan_events() == []
    orphan.refresh_from_db()
    assert orphan.status == Message.Status.STREAMING  # rolled back with the refused retry
    lifecycle.replies_interrupt_stale()  # the next sweep records it, once
    lifecycle.replies_interrupt_stale()
    assert [e["status"] for e in orphan_events()] == ["interrupted"]


def test_the_database_never_lags_the_stream_by_more_than_the_save_interval(
    owner_client, fake_openai, settings
):
    settings.CHAT_SAVE_INTERVAL = 0.2
    fake_openai.script(Reply(tokens=[f"t{i} " for i in range(40)], delay=0.05))
    send(owner_client, "Watch the saves")
    reply = last_reply()
    live = None
    while live is None:
        live = runner.get(reply.pk)
    shown_at: list[tuple[float, int]] = []  # when each length was first visible to watchers
    saved_at: list[tuple[float, int]] = []
    while not live.snapshot().done:
        shown_at.append((time.monotonic(), len(live.snapshot().text)))
        saved_at.append((time.monotonic(), len(Message.objects.get(pk=reply.pk).content)))
        time.sleep(0.01)
    worst = 0.0
    for seen, length in shown_at:
        stored = next((t for t, n in saved_at if n >= length and t >= seen), None)
        if stored is not None:
            worst = max(worst, stored - seen)
    # Text seen by a watcher reaches the database within one interval (plus slack).
    assert worst < 0.2 + 0.25, worst
    assert finished(reply).status == Message.Status.COMPLETE


def test_stop_before_the_model_answers_closes_the_request(owner_client, fake_openai):
    fake_openai.script(Reply(first_delay=3))
    send(owner_client, "Slow start")
    fake_openai.wait_for_requests(1)
    reply = last_reply()
    owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    assert fake_openai.disconnected.wait(5)
    assert finished(reply).status == Message.Status.STOPPED
    assert Conversation.objects.get().messages.count() == 2


@pytest.mark.skipif(
    "sqlite" in django_settings.DATABASES["default"]["ENGINE"],
    reason="a server database's connections (SQLite's is never closed by another end)",
)
def test_a_db_thread_connection_closed_while_idle_does_not_fail_the_next_reply(
    owner_client, fake_openai
):
    from django.db import connection

    fake_openai.script(Reply(tokens=["warm"]))
    send(owner_client, "Open the DB threads' connections")
    finished(last_reply())
    every_thread = threading.Barrier(4, timeout=10)

    # What a database restart or an idle timeout does to each DB thread's connection.
    def drop_connection() -> None:
        connection.ensure_connection()
        every_thread.wait()  # one job on each of the runner's DB threads at once
        connection.connection.close()

    async def drop_everywhere() -> None:
        await asyncio.gather(*(runner.db(drop_connection) for _ in range(4)))

    runner.spawn(drop_everywhere).result(timeout=20)
    fake_openai.script(Reply(tokens=["Still ", "here."]))
    send(owner_client, "And now?")
    reply = finished(last_reply())
    assert (reply.status, reply.content) == (Message.Status.COMPLETE, "Still here.")
