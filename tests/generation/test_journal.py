"""The journal of reply events: in memory and in Redis, read from any position, coalesced,
and never a reason for a reply to fail."""

from __future__ import annotations

import asyncio
import html
import os

import pytest
import redis

from conversations.generation import journal
from conversations.generation.journal import Entry, JournalWriter, MemoryJournal, RedisJournal
from conversations.models import Message
from tests.support.engines import REDIS_URL, redis_up
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send
from tests.support.sse import read_stream

needs_redis = pytest.mark.skipif(
    not redis_up() and os.environ.get("CI") != "true", reason=f"needs Redis at {REDIS_URL}"
)


@pytest.fixture(params=["memory", "redis"])
def any_journal(request, settings) -> MemoryJournal | RedisJournal:
    if request.param == "memory":
        return MemoryJournal()
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the journal tests with Redis at {REDIS_URL}")
        pytest.skip(f"needs Redis at {REDIS_URL}")
    return RedisJournal(REDIS_URL)


REPLY = 10**9 + os.getpid()  # an id no test database reaches


def test_entries_are_read_in_order_from_any_position(any_journal):
    async def go() -> None:
        if isinstance(any_journal, MemoryJournal):
            any_journal.open(REPLY)
        await any_journal.append(REPLY, [Entry("phase", 0, phase="loading")])
        await any_journal.append(REPLY, [Entry("text", 3, text="abc"), Entry("text", 5, text="de")])
        entries, position = await any_journal.read(REPLY, journal.START, 1)
        assert [(e.kind, e.at, e.text, e.phase) for e in entries] == [
            ("phase", 0, "", "loading"),
            ("text", 3, "abc", ""),
            ("text", 5, "de", ""),
        ]
        # Nothing new yet: a read from the end waits, then answers empty.
        assert await any_journal.read(REPLY, position, 0.05) == ([], position)
        # A watcher waiting is woken by the next entry, whichever thread writes it.
        waiting = asyncio.ensure_future(any_journal.read(REPLY, position, 5))
        await asyncio.sleep(0.05)
        await any_journal.append(REPLY, [Entry("end", 5, status="complete")])
        entries, _ = await asyncio.wait_for(waiting, 5)
        assert [(e.kind, e.status) for e in entries] == [("end", "complete")]

    try:
        asyncio.run(go())
    finally:
        if isinstance(any_journal, RedisJournal):
            any_journal.sync_client().delete(any_journal.key(REPLY))


def test_the_writer_coalesces_a_burst_and_sends_the_first_piece_at_once(any_journal):
    async def go() -> None:
        if isinstance(any_journal, MemoryJournal):
            any_journal.open(REPLY)
        writer = JournalWriter(any_journal, REPLY)
        writer.text("first ")
        await asyncio.sleep(0.02)  # the first piece went out on its own
        for i in range(200):
            writer.text(f"t{i} ")
        await writer.end("complete")
        entries, _ = await any_journal.read(REPLY, journal.START, 1)
        texts = [e for e in entries if e.kind == "text"]
        assert texts[0].text == "first "
        assert len(texts) <= 3, [len(e.text) for e in texts]
        assert "".join(e.text for e in texts) == "first " + "".join(f"t{i} " for i in range(200))
        assert texts[-1].at == len("".join(e.text for e in texts))
        assert entries[-1].kind == "end"

    try:
        asyncio.run(go())
    finally:
        if isinstance(any_journal, RedisJournal):
            any_journal.sync_client().delete(any_journal.key(REPLY))


@needs_redis
def test_an_ended_replys_stream_expires_and_is_capped():
    redis_journal = RedisJournal(REDIS_URL)

    async def go() -> None:
        await redis_journal.append(REPLY, [Entry("text", 1, text="a")])
        await redis_journal.append(REPLY, [Entry("end", 1, status="complete")])

    try:
        asyncio.run(go())
        ttl = redis_journal.sync_client().ttl(redis_journal.key(REPLY))
        assert 0 < ttl <= journal.ENDED_TTL_SECONDS
    finally:
        redis_journal.sync_client().delete(redis_journal.key(REPLY))


@pytest.mark.django_db(transaction=True)
def test_a_reply_streams_through_redis(asgi_server, owner_client, fake_openai, settings):
    if not redis_up():
        pytest.skip(f"needs Redis at {REDIS_URL}")
    settings.REDIS_URL = REDIS_URL
    tokens = [f"r{i} " for i in range(10)]
    fake_openai.script(Reply(tokens=tokens, first_delay=0.3, delay=0.1))
    send(owner_client, "Through Redis")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    deltas = [data for event, data, _ in received if event == "delta"]
    assert html.unescape("".join(deltas)) == "".join(tokens) and len(deltas) >= 5
    assert received[-1][0] == "done"
    assert finished(reply).status == Message.Status.COMPLETE
    key = RedisJournal(REDIS_URL).key(reply.pk)
    assert redis.Redis.from_url(REDIS_URL).xlen(key) >= 5


@pytest.mark.django_db(transaction=True)
def test_a_reply_whose_redis_is_gone_is_still_written_and_followed_in_the_database(
    asgi_server, owner_client, fake_openai, settings, caplog
):
    # Nothing listens on port 9: every Redis call fails at once.
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    tokens = [f"g{i} " for i in range(8)]
    fake_openai.script(Reply(tokens=tokens, delay=0.05))
    send(owner_client, "No Redis")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply, timeout=20)
    deltas = [data for event, data, _ in received if event == "delta"]
    assert html.unescape("".join(deltas)) == "".join(tokens)
    assert received[-1][0] == "done"
    done = finished(reply)
    assert done.status == Message.Status.COMPLETE and done.content == "".join(tokens)
    # Said once for the reply, not once per token.
    failures = [r for r in caplog.records if "Journal of reply" in r.getMessage()]
    assert len(failures) == 1


@pytest.mark.django_db(transaction=True)
def test_a_slow_model_keeps_its_lease_and_is_never_called_interrupted(
    owner_client, fake_openai, settings
):
    from conversations.generation import lifecycle

    settings.CHAT_STALE_AFTER = 2.0  # a lease renewed every 0.5 s
    settings.CHAT_SAVE_INTERVAL = 0.05
    fake_openai.script(Reply(tokens=["late ", "but ", "here"], first_delay=3.0))
    send(owner_client, "Take your time")
    reply = last_reply()
    for _ in range(30):
        # What another process's sweep would do: this process's runner is not consulted
        # by its row, only by its lease.
        stale = Message.objects.filter(
            pk=reply.pk,
            status__in=Message.IN_FLIGHT,
            updated__lt=lifecycle.timezone.now()
            - lifecycle.timedelta(seconds=settings.CHAT_STALE_AFTER),
        )
        assert not stale.exists()
        if not Message.objects.get(pk=reply.pk).is_in_flight:
            break
        asyncio.run(asyncio.sleep(0.1))
    done = finished(reply)
    assert done.status == Message.Status.COMPLETE and done.content == "late but here"
