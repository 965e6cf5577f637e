"""Requests' synchronous work runs on a few long-lived threads that keep their connections.

The middleware is driven with a small ASGI app of its own: each "request" runs a sync
function the way Django runs a sync view (thread-sensitive `sync_to_async`) and reports
the thread it ran on and the database connection it used.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connection

from conversations.web.lanes import RequestLanes

pytestmark = pytest.mark.django_db(transaction=True)


def _where() -> tuple[str, int]:
    connection.ensure_connection()
    return threading.current_thread().name, id(connection.connection)


class Recorder:
    """An ASGI app whose requests run `work` (default: `_where`) as a sync view would."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.work: Any = _where
        # Set for a request that, once its sync work is done, stays open (a stream).
        self.hold: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # As Django's ASGIHandler does: a context of the request's own, inside the lane's.
        async with ThreadSensitiveContext():
            self.seen.append(await sync_to_async(self.work)())
        if self.hold is not None:
            await self.hold.wait()


async def _request(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app({"type": "http"}, receive, send)


def test_requests_one_after_another_share_a_lane_and_its_connection():
    inner = Recorder()
    lanes = RequestLanes(inner, lanes=2)
    try:
        for _ in range(3):
            asyncio.run(_request(lanes))
    finally:
        lanes.close()
    threads = {thread for thread, _ in inner.seen}
    connections = {conn for _, conn in inner.seen}
    assert len(threads) == 1 and threads.pop().startswith("request-"), inner.seen
    # Django's own way opens and closes a connection per request, on a thread per request.
    assert len(connections) == 1, inner.seen


def test_a_request_goes_to_an_idle_lane_not_one_holding_an_open_stream():
    inner = Recorder()
    lanes = RequestLanes(inner, lanes=2)

    async def scenario() -> None:
        inner.hold = held = asyncio.Event()
        stream = asyncio.create_task(_request(lanes))
        while not inner.seen:
            await asyncio.sleep(0.01)
        inner.hold = None
        await _request(lanes)
        assert not stream.done()
        assert inner.seen[1][0] != inner.seen[0][0], inner.seen
        assert sorted(lane.requests for lane in lanes.lanes) == [0, 1]
        held.set()
        await stream
        assert [lane.requests for lane in lanes.lanes] == [0, 0]

    try:
        asyncio.run(scenario())
    finally:
        lanes.close()


def test_when_every_lane_is_working_a_request_gets_a_thread_of_its_own_and_does_not_wait():
    inner = Recorder()
    lanes = RequestLanes(inner, lanes=1)
    release = threading.Event()

    def slow() -> tuple[str, int]:
        release.wait(10)
        return _where()

    async def scenario() -> None:
        inner.work = slow
        busy = asyncio.create_task(_request(lanes))
        while not lanes.lanes[0].working:
            await asyncio.sleep(0.01)
        inner.work = _where
        await asyncio.wait_for(_request(lanes), 5)
        assert not busy.done()
        release.set()
        await busy

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        lanes.close()
    overflow, slowest = inner.seen
    assert slowest[0].startswith("request-0"), inner.seen
    assert not overflow[0].startswith("request-"), inner.seen


def test_other_scopes_pass_through_untouched():
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    lanes = RequestLanes(app, lanes=1)
    try:
        asyncio.run(lanes({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
        assert calls == ["lifespan"]
        assert lanes.lanes[0].given == 0
        assert lanes.lanes[0].requests == 0
    finally:
        lanes.close()


def test_closing_the_lanes_closes_their_connections_and_ends_their_threads():
    inner = Recorder()
    lanes = RequestLanes(inner, lanes=1)
    asyncio.run(_request(lanes))
    held: list[Any] = []
    lanes.lanes[0].submit(lambda: held.append(connection.connection)).result(5)
    lanes.close()
    assert held[0] is not None
    with pytest.raises(Exception, match="closed"):
        held[0].execute("select 1")
    with pytest.raises(RuntimeError):
        lanes.lanes[0].submit(_where)
