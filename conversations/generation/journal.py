"""The journal of a reply's events: how watchers learn that a reply grew, without polling.

Every generation writes numbered entries — text, reasoning, phase, end — to its reply's
journal; a
watcher reads them from any position, so a page opened mid-reply catches up and then
follows live, in this process or, with REDIS_URL, in any process on any host. The
database stays the truth (the reply is saved as it grows and at its end): a journal that
is gone or broken only makes watchers fall back to reading the database.

- `MemoryJournal` (the default): entries in this process's memory, no extra service.
- `RedisJournal` (REDIS_URL set): one Redis Stream per reply, XADD with a length cap and
  an expiry once the reply has ended, XREAD BLOCK from a watcher's position.

Positions are opaque strings ("0" is the start); entries carry the reply's text length
after them (`at`), which is what clients see as SSE ids, whatever the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings

if TYPE_CHECKING:
    import redis
    import redis.asyncio

logger = logging.getLogger(__name__)

START = "0"
# Entries kept per reply (roughly: Redis trims approximately). Bursts are coalesced into
# one entry (see JournalWriter), so this spans far more than the seconds between saves,
# and a watcher reading from a trimmed start fills the gap from the database.
MAX_ENTRIES = 20_000
# How long an ended reply's stream stays readable, for watchers still catching up.
ENDED_TTL_SECONDS = 120


@dataclass(frozen=True)
class Entry:
    """One event of a reply. `kind` is "text", "reasoning", "rethink", "thought", "phase"
    or "end".

    "reasoning": more of the thinking; its `at` is the reasoning's length after it.
    "rethink": the answer's text so far (`text`, all of it) was reasoning: it moved there
    (the answer starts again from 0; `at` is the reasoning's length after). "thought": the
    answer began after `ms` milliseconds of thinking.
    """

    kind: str
    # The reply's text length after this entry (for "text": the end of `text`).
    at: int
    text: str = ""
    phase: str = ""
    ahead: int = 0
    status: str = ""
    ms: int = 0

    def fields(self) -> dict[str, str]:
        return {
            "k": self.kind,
            "n": str(self.at),
            "t": self.text,
            "p": self.phase,
            "a": str(self.ahead),
            "s": self.status,
            "m": str(self.ms),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Entry:
        return cls(
            kind=fields.get("k", ""),
            at=int(fields.get("n") or 0),
            text=fields.get("t", ""),
            phase=fields.get("p", ""),
            ahead=int(fields.get("a") or 0),
            status=fields.get("s", ""),
            ms=int(fields.get("m") or 0),
        )


class Journal(Protocol):
    async def append(self, reply_id: int, entries: list[Entry]) -> None:
        """Add entries (called by the generating process, in order)."""

    async def read(self, reply_id: int, after: str, timeout: float) -> tuple[list[Entry], str]:
        """Entries after position `after` and the new position; waits up to `timeout`
        for the first. ([], after) on timeout."""

    def known(self, reply_id: int) -> bool:
        """Whether a read can ever return something: False once no journal can have it."""


class _Log:
    """One reply's entries in memory, and the watchers waiting on any loop or thread."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.first = 0  # index of entries[0] since the start (after trimming)
        self.ended = False
        self.lock = threading.Lock()
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()


class MemoryJournal:
    """The journal of the replies this process generates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[int, _Log] = {}

    def open(self, reply_id: int) -> None:
        """Begin a reply's journal (before anyone may watch it)."""
        with self._lock:
            self._logs.setdefault(reply_id, _Log())

    def close(self, reply_id: int) -> None:
        """Forget an ended reply: later watchers read the database, which has it all."""
        with self._lock:
            self._logs.pop(reply_id, None)

    def known(self, reply_id: int) -> bool:
        with self._lock:
            return reply_id in self._logs

    async def append(self, reply_id: int, entries: list[Entry]) -> None:
        with self._lock:
            log = self._logs.get(reply_id)
        if log is None:
            return
        with log.lock:
            log.entries.extend(entries)
            if len(log.entries) > MAX_ENTRIES:
                cut = len(log.entries) - MAX_ENTRIES
                del log.entries[:cut]
                log.first += cut
            log.ended = log.ended or any(entry.kind == "end" for entry in entries)
            waiters, log.waiters = log.waiters, set()
        for loop, future in waiters:
            # A watcher's loop may have closed with its request; the reply goes on.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    async def read(self, reply_id: int, after: str, timeout: float) -> tuple[list[Entry], str]:
        with self._lock:
            log = self._logs.get(reply_id)
        if log is None:
            return [], after
        position = int(after)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with log.lock:
            if position >= log.first + len(log.entries) and not log.ended:
                log.waiters.add((loop, future))
            else:
                future.set_result(None)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return [], after
        finally:
            with log.lock:
                log.waiters.discard((loop, future))
        with log.lock:
            start = max(position - log.first, 0)
            entries = log.entries[start:]
            return entries, str(log.first + len(log.entries))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisJournal:
    """The journal in Redis Streams: every process writes and reads the same one."""

    def __init__(self, url: str) -> None:
        self.url = url
        # redis.asyncio clients are bound to the event loop they were made on.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    @staticmethod
    def key(reply_id: int) -> str:
        return f"{settings.REDIS_KEY_PREFIX}:reply:{reply_id}"

    @staticmethod
    def stop_channel() -> str:
        return f"{settings.REDIS_KEY_PREFIX}:stop"

    def client(self) -> redis.asyncio.Redis:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(
                self.url, decode_responses=True, health_check_interval=30
            )
            self._clients[loop] = client
        return client

    def sync_client(self) -> redis.Redis:
        import redis

        with self._lock:
            if self._sync is None:
                self._sync = redis.Redis.from_url(
                    self.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
                )
            return self._sync

    def known(self, reply_id: int) -> bool:
        return True

    async def append(self, reply_id: int, entries: list[Entry]) -> None:
        key = self.key(reply_id)
        async with self.client().pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(key, entry.fields(), maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
                if entry.kind == "end":
                    pipe.expire(key, ENDED_TTL_SECONDS)
            await pipe.execute()

    async def read(self, reply_id: int, after: str, timeout: float) -> tuple[list[Entry], str]:
        key = self.key(reply_id)
        answer: Any = await self.client().xread(
            {key: after}, count=1000, block=max(int(timeout * 1000), 1)
        )
        entries: list[Entry] = []
        position = after
        for _stream, items in answer or []:
            for entry_id, fields in items:
                entries.append(Entry.from_fields(fields))
                position = entry_id
        return entries, position

    def publish_stop(self, reply_id: int) -> bool:
        """Tell whichever process generates `reply_id` to stop it now."""
        try:
            return bool(self.sync_client().publish(self.stop_channel(), str(reply_id)))
        except Exception:
            logger.warning("Could not send Stop through Redis; the database flag will do")
            return False

    async def listen_for_stops(self, stop: Any) -> None:
        """Call `stop(reply_id)` for every Stop published, for as long as the loop runs."""
        while True:
            try:
                async with self.client().pubsub() as pubsub:
                    await pubsub.subscribe(self.stop_channel())
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            with contextlib.suppress(ValueError):
                                stop(int(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Listening for Stop in Redis failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)


memory = MemoryJournal()
_redis: dict[str, RedisJournal] = {}


def current() -> MemoryJournal | RedisJournal:
    """The journal of this deployment: Redis with REDIS_URL, else this process's memory."""
    url = settings.REDIS_URL
    if not url:
        return memory
    journal = _redis.get(url)
    if journal is None:
        journal = _redis.setdefault(url, RedisJournal(url))
    return journal


class JournalWriter:
    """What a generation writes to its journal: text coalesced, in order, never blocking it.

    The first text after a pause goes out at once (the time to first token); what comes
    within the next COALESCE_SECONDS is sent as one entry, so a model that answers in a
    burst costs a few events, not one per token, and a fast one costs every watcher
    about 30 wake-ups a second (smooth to the eye) rather than one per token. The end is
    sent at once. A journal that fails is logged and skipped: watchers then read the
    database, and the reply goes on.
    """

    COALESCE_SECONDS = 0.03

    def __init__(self, journal: MemoryJournal | RedisJournal, reply_id: int) -> None:
        self._journal = journal
        self._reply_id = reply_id
        self._length = 0
        self._reasoning_length = 0
        self._text: list[str] = []
        self._kind = "text"  # what `_text` holds: "text" or "reasoning"
        self._pending: list[Entry] = []
        self._ended = False
        self._end_seen = asyncio.Event()
        self._broken = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._send())

    def text(self, piece: str) -> None:
        self._gather("text")
        self._text.append(piece)
        self._length += len(piece)
        self._wake.set()

    def reasoning(self, piece: str) -> None:
        if not piece:
            return
        self._gather("reasoning")
        self._text.append(piece)
        self._reasoning_length += len(piece)
        self._wake.set()

    def rethink(self, moved: str) -> None:
        """The answer so far, `moved`, was reasoning (see `Entry`)."""
        self._take_text()
        self._reasoning_length += len(moved)
        self._length = 0
        self._pending.append(Entry("rethink", self._reasoning_length, text=moved))
        self._wake.set()

    def thought(self, took: timedelta) -> None:
        """The answer begins: the thinking took `took`."""
        self._take_text()
        ms = max(round(took.total_seconds() * 1000), 0)
        self._pending.append(Entry("thought", self._length, ms=ms))
        self._wake.set()

    def _gather(self, kind: str) -> None:
        # Coalesced pieces are of one kind: a change of kind sends what was gathered.
        if kind != self._kind:
            self._take_text()
            self._kind = kind

    def phase(self, phase: str, ahead: int) -> None:
        self._take_text()
        self._pending.append(Entry("phase", self._length, phase=phase, ahead=ahead))
        self._wake.set()

    async def end(self, status: str) -> None:
        """Send what is left, then the end; return once it is sent (or failed)."""
        self._take_text()
        self._pending.append(Entry("end", self._length, status=status))
        self._ended = True
        self._end_seen.set()
        self._wake.set()
        with contextlib.suppress(Exception):
            await asyncio.shield(self._task)

    def _take_text(self) -> None:
        if self._text:
            at = self._length if self._kind == "text" else self._reasoning_length
            self._pending.append(Entry(self._kind, at, text="".join(self._text)))
            self._text = []

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._take_text()
            batch, self._pending = self._pending, []
            if batch and not self._broken:
                try:
                    await self._journal.append(self._reply_id, batch)
                except Exception:
                    # Once per reply, not once per token: the rest goes to the database only.
                    self._broken = True
                    logger.warning(
                        "Journal of reply %s failed; its watchers read the database",
                        self._reply_id,
                        exc_info=True,
                    )
            if self._ended and not self._pending and not self._text:
                return
            # Gather what comes next into one entry, unless the end comes first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._end_seen.wait(), self.COALESCE_SECONDS)
