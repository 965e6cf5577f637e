"""Where replies are generated: one event loop in a thread of its own, per process.

A reply must outlive the request that asked for it (the tab may close; under ASGI with
sync middleware a request's event loop can even die with the request), so generation
never runs on a request's loop. Requests only start, stop and watch generations here.
Watchers follow a reply through its journal (`generation.journal`), not through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.db import DatabaseError, connection

T = TypeVar("T")
P = ParamSpec("P")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    text: str
    status: str
    done: bool
    reasoning: str = ""


class LiveReply:
    """The in-memory state of a reply being generated here: for Stop, and for whoever
    waits in this process for its end (watchers follow its journal instead)."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self._text = ""
        self._reasoning = ""
        self._status = "pending"
        self._done = False
        # Set by Stop: a generation that had not begun yet ends as stopped at once.
        self.stop_requested = False
        self._cond = threading.Condition()
        # Coroutines awaiting the end (`ended`), on whichever loop they run.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def snapshot(self) -> Snapshot:
        with self._cond:
            return Snapshot(self._text, self._status, self._done, self._reasoning)

    def update(
        self,
        *,
        text: str | None = None,
        status: str | None = None,
        done: bool = False,
        reasoning: str | None = None,
    ) -> None:
        with self._cond:
            if text is not None:
                self._text = text
            if reasoning is not None:
                self._reasoning = reasoning
            if status is not None:
                self._status = status
            self._done = self._done or done
            waiters = []
            if done:
                self._cond.notify_all()
                waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A waiter's loop may have closed with its request; the reply has ended anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def wait_done(self, timeout: float) -> bool:
        """Block a thread until the reply has ended (or the timeout passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done, timeout)

    async def ended(self, timeout: float) -> bool:
        """Wait, without holding a thread, until the reply has ended (or the timeout passes)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._done:
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            # Gave up or cancelled (the client went away): nothing to wake any more.
            with self._cond, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _new_loop() -> asyncio.AbstractEventLoop:
    # uvloop where it is installed (uvicorn[standard]), as the server's own loop: it wakes
    # for a streamed token for a fraction of asyncio's pure-Python selector loop's CPU.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: dict[int, LiveReply] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Follow-up work started with spawn() (a conversation's automatic title) and not done.
        self._extra = 0
        # Work repeated on a schedule (every()), by name, and its tasks (kept referenced).
        self._schedules: set[str] = set()
        self._repeating: dict[str, asyncio.Task[None]] = {}
        # Database work for generations runs off the loop (see _executor).
        self._db: ThreadPoolExecutor | None = None
        self._kept: dict[str, asyncio.Task[None]] = {}

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = _new_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="chat-generation", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def start(
        self, message_id: int, generate: Callable[[LiveReply], Coroutine[Any, Any, None]]
    ) -> LiveReply:
        """Start generating a reply unless it is already being generated here."""
        loop = self._ensure_loop()
        with self._lock:
            live = self._live.get(message_id)
            if live is not None:
                return live
            live = LiveReply(message_id)
            self._live[message_id] = live

        def create() -> None:
            task = loop.create_task(generate(live))
            self._tasks[message_id] = task
            task.add_done_callback(done)

        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                logger.error("Generation of reply %s failed", message_id, exc_info=task.exception())
            if task.cancelled() and not live.snapshot().done:
                # Cancelled before its first step, so its own clean-up never ran: run it
                # again; seeing stop_requested, it records the reply as stopped.
                create()
                return
            self._forget(message_id)

        loop.call_soon_threadsafe(create)
        return live

    def _forget(self, message_id: int) -> None:
        with self._lock:
            self._tasks.pop(message_id, None)
            self._live.pop(message_id, None)

    def get(self, message_id: int) -> LiveReply | None:
        with self._lock:
            return self._live.get(message_id)

    def cancel(self, message_id: int) -> bool:
        """Ask a generation to stop; it closes its request to the model server and saves."""
        with self._lock:
            live = self._live.get(message_id)
            loop = self._loop
        if live is None or loop is None:
            return False
        live.stop_requested = True

        def cancel() -> None:
            task = self._tasks.get(message_id)
            if task is not None:
                task.cancel()

        loop.call_soon_threadsafe(cancel)
        return True

    def active(self) -> list[int]:
        with self._lock:
            return list(self._live)

    def spawn(self, make: Callable[[], Coroutine[Any, Any, T]]) -> Future[T]:
        """Run a follow-up coroutine (not a reply: no LiveReply, no Stop) on the loop.

        `make` is called on the loop. An exception is logged. `wait_idle` waits for it too,
        so nothing spawned outlives a test or a clean shutdown unnoticed.
        """
        loop = self._ensure_loop()
        with self._lock:
            self._extra += 1

        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), loop)

        def done(future: Future[T]) -> None:
            with self._lock:
                self._extra -= 1
            if not future.cancelled() and future.exception() is not None:
                logger.error("Background task failed", exc_info=future.exception())

        future.add_done_callback(done)
        return future

    def every(self, seconds: float, fn: Callable[[], object], *, name: str) -> None:
        """Run `fn` on the DB thread every `seconds` while the process lives; once per name.

        Not follow-up work: `wait_idle` does not wait for it; `cancel_every` ends it.
        """
        with self._lock:
            if name in self._schedules:
                return
            self._schedules.add(name)
        loop = self._ensure_loop()

        async def repeat() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await self.db(fn)
                except Exception:
                    logger.exception("Scheduled %s failed; trying again later", name)

        def begin() -> None:
            self._repeating[name] = loop.create_task(repeat())

        loop.call_soon_threadsafe(begin)

    def cancel_every(self, name: str) -> None:
        """End the schedule `name` (see `every`)."""
        with self._lock:
            self._schedules.discard(name)
            loop = self._loop
        if loop is not None:

            def cancel() -> None:
                task = self._repeating.pop(name, None)
                if task is not None:
                    task.cancel()

            loop.call_soon_threadsafe(cancel)

    def keep(self, name: str, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `make()` on the loop for as long as the process lives; once per name."""
        with self._lock:
            if name in self._schedules:
                return
            self._schedules.add(name)
        loop = self._ensure_loop()

        def begin() -> None:
            self._kept[name] = loop.create_task(make())

        loop.call_soon_threadsafe(begin)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no generation (nor spawned task) runs here (tests and shutdown use it)."""
        deadline = time.monotonic() + timeout
        while self.active() or self._extra:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._db is None:
                # SQLite writes one at a time whatever we do: one thread, no lock waits.
                # A server database takes the saves of many replies side by side.
                workers = 1 if connection.vendor == "sqlite" else 4
                self._db = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat-db")
            return self._db

    async def db(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), functools.partial(fn, *args, **kwargs))


runner = Runner()


def release_connection() -> None:
    """After a unit of work on a DB thread: keep an SQLite connection, close any other.

    Opening an SQLite connection (Django registers its SQL functions on each) costs more
    than the queries of a short reply, and there is one DB thread to keep it. A server
    database's connections are closed: its several DB threads would otherwise hold them
    idle between replies, and a database cannot be dropped while they are open.
    """
    if connection.vendor != "sqlite":
        connection.close()


def _drop_if_unusable() -> None:
    # A server database's connection held open between two jobs of this thread may have
    # been closed meanwhile (a restart, an idle timeout, the other end): one round trip
    # tells, rather than failing the job (a reply's start) on its first query.
    open_on_server = connection.vendor != "sqlite" and connection.connection is not None
    if open_on_server and not connection.is_usable():
        connection.close()


def on_db_thread(fn: Callable[P, T]) -> Callable[P, T]:
    """For work on the runner's DB thread: after a database error, drop the connection.

    Nothing else on that thread would ever close a broken connection (a database restart,
    an idle timeout), and every later call would fail the same way.
    """

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        _drop_if_unusable()
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connection.close()
            raise

    return call
