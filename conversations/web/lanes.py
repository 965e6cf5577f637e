"""Requests' synchronous work on a few long-lived threads, each with its database connection.

Django runs each ASGI request's synchronous parts (sync views, the session and user
lookups) on a thread of that request's own: a thread started for the request, which
opens a new database connection, closes it at the end and is joined by yet another
thread. On a 2-core machine that was a fifth of a reply's server time (the send's POST
and the stream's GET each paid it). Here each request is given one of a few lanes — a
thread that lives as long as the process and keeps its connection (CONN_MAX_AGE) — for
all its synchronous work, as asgiref's ThreadSensitiveContext allows: one request, one
thread, as Django expects.

A request goes to a lane with no work in progress, the one with the fewest requests on
it. When every lane is working (a slow page, a burst), it gets a thread of its own as
before: a request never waits for a lane.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.db import connections

from conversations.web.bodylimit import ASGIApp, Receive, Scope, Send

LANES = 8


class Lane(ThreadPoolExecutor):
    """One thread; counts the calls it was given and has finished, and its requests."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        # Each counter is written by one thread only: no lock needed to read a difference.
        self.given = 0
        self.finished = 0
        self.requests = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.given += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any]) -> None:
        self.finished += 1

    @property
    def working(self) -> bool:
        return self.given > self.finished


class RequestLanes:
    """ASGI middleware: run each HTTP request's synchronous work on a lane (see above)."""

    def __init__(self, app: ASGIApp, lanes: int = LANES) -> None:
        self.app = app
        self.lanes = [Lane(f"request-{i}") for i in range(lanes)]

    def pick(self) -> Lane | None:
        idle = [lane for lane in self.lanes if not lane.working]
        if not idle:
            return None
        return min(idle, key=lambda lane: lane.requests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = self.pick()
        if lane is None:
            await self.app(scope, receive, send)
            return
        lane.requests += 1
        try:
            async with ThreadSensitiveContext(executor=lane):
                await self.app(scope, receive, send)
        finally:
            lane.requests -= 1

    def close(self) -> None:
        """Close the lanes' database connections and end their threads (tests; shutdown)."""
        for lane in self.lanes:
            done = threading.Event()

            def close_all(done: threading.Event = done) -> None:
                connections.close_all()
                done.set()

            lane.submit(close_all)
            done.wait(5)
            lane.shutdown(wait=True)
