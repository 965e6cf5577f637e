"""The local model server: one per machine and model settings, shared by every web worker.

Started by the first web process that needs the local model
(`python -m conversations.llm.backends.local_server --socket PATH --model FILE ...`); a lock file
beside the socket makes sure only one runs. It owns the first-come first-served queue
of generations (so all web workers share it and each waiter hears how many are ahead)
and supervises the engine process (`conversations.llm.backends.local_engine`) that runs llama.cpp.
When the engine dies — a native crash, an out-of-memory kill — the replies it was
writing end with an error that says so, the engine is started again, and queued
replies go on. This process itself runs no native code.

Web processes talk to it over a Unix socket, one connection per request, JSON lines:

    {"op": "hello"}                      kept open while the web process lives
    {"op": "generate", "messages": [...], "temperature": ..., "max_tokens": ...}
        -> {"ev": "queued", "ahead": 1}, {"ev": "loading"}, {"ev": "text", ...},
           then one of {"ev": "end", ...}, {"ev": "too_long", ...}, {"ev": "error", ...},
           {"ev": "crashed", "message": "..."}; closing the connection stops it
    {"op": "count", "messages": [...]}   -> {"ev": "count", "tokens": 42, "window": 4096}
    {"op": "info"}                       -> {"ev": "info", "pid": ..., "restarts": ..., ...}

It exits `--keep-alive` seconds after the last web process has closed its "hello"
connection, and on SIGTERM or SIGINT.

Only the standard library is imported here: no Django, no llama.cpp.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .local_engine import exit_description

logger = logging.getLogger("chatsite.local_server")

# Requests carry whole conversations: generous, but bounded.
LINE_LIMIT = 64 * 1024 * 1024
TERMINAL = frozenset({"end", "too_long", "error", "crashed"})


@dataclass(eq=False)
class Job:
    """One generation: queued here, then running in the engine until it says it ended."""

    request: dict[str, Any]
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    rid: int = 0
    ahead: int = -1
    running_in: Engine | None = None
    finished: bool = False
    cancelled: bool = False


@dataclass(eq=False)
class Engine:
    process: asyncio.subprocess.Process
    started: float
    # Requests sent to it and not answered yet: generations and count/info futures.
    jobs: dict[int, Job] = field(default_factory=dict)
    asks: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    async def send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        if stdin is None:
            return
        try:
            stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
            await stdin.drain()
        except (ConnectionError, RuntimeError):
            pass  # it died: its reader notices and ends what it had


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = max(1, args.slots)
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: set[Job] = set()
        self.engine: Engine | None = None
        self._engine_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.restarts = 0
        self._quick_crashes = 0
        self.clients = 0
        self._shutdown_timer: asyncio.TimerHandle | None = None
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- The engine process -------------------------------------------------------------

    async def engine_up(self) -> Engine:
        async with self._engine_lock:
            if self.engine is not None:
                return self.engine
            if self._quick_crashes:
                # It died right after starting: don't spin, wait a little longer each time.
                await asyncio.sleep(min(0.25 * 2**self._quick_crashes, 5.0))
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "conversations.llm.backends.local_engine",
                "serve",
                "--model",
                self.args.model,
                "--context",
                str(self.args.context),
                "--threads",
                str(self.args.threads),
                "--slots",
                str(self.slots),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            engine = self.engine = Engine(process, time.monotonic())
            self._background(self._read_engine(engine))
            return engine

    async def _read_engine(self, engine: Engine) -> None:
        stdout = engine.process.stdout
        while stdout is not None:
            try:
                line = await stdout.readline()
            except (ValueError, ConnectionError):
                line = b""
            if not line:
                break
            try:
                event = json.loads(line)
                rid = int(event.pop("id"))
            except (ValueError, KeyError, TypeError):
                continue
            ask = engine.asks.pop(rid, None)
            if ask is not None:
                if not ask.done():
                    ask.set_result(event)
                continue
            job = engine.jobs.get(rid)
            if job is not None:
                job.events.put_nowait(event)
                if event.get("ev") in TERMINAL:
                    self._job_done(engine, job)
        # Its output ended: it is dying. Killed only if it lingers — killing a process
        # that has just ended would reap it first and lose how it ended.
        try:
            returncode = await asyncio.wait_for(engine.process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                engine.process.kill()
            returncode = await engine.process.wait()
        await self._engine_died(engine, returncode)

    async def _engine_died(self, engine: Engine, returncode: int) -> None:
        if self.engine is engine:
            self.engine = None
        if self.stopped.is_set():
            return
        how = exit_description(returncode)
        lived = time.monotonic() - engine.started
        self._quick_crashes = self._quick_crashes + 1 if lived < 2 else 0
        self.restarts += 1
        logger.error("The local model's engine %s; it is started again.", how)
        message = (
            f"The local model stopped unexpectedly: its process {how}. It has been "
            "restarted; the text so far is kept, retry to get a full reply."
        )
        for job in list(engine.jobs.values()):
            job.events.put_nowait({"ev": "crashed", "message": message})
            self._job_done(engine, job)
        for ask in engine.asks.values():
            if not ask.done():
                ask.set_result({"ev": "error", "message": f"the engine {how}"})
        engine.asks.clear()
        if self.waiting:
            await self._dispatch()

    # --- The queue ----------------------------------------------------------------------

    def _job_done(self, engine: Engine, job: Job) -> None:
        engine.jobs.pop(job.rid, None)
        job.finished = True
        if job in self.running:
            self.running.discard(job)
            self._background(self._dispatch())

    async def _dispatch(self) -> None:
        while self.waiting and len(self.running) < self.slots:
            job = self.waiting.popleft()
            self.running.add(job)
            try:
                engine = await self.engine_up()
            except OSError as exc:
                self.running.discard(job)
                job.finished = True
                job.events.put_nowait({"ev": "error", "message": f"cannot start: {exc}"})
                continue
            job.rid, job.running_in = next(self._ids), engine
            engine.jobs[job.rid] = job
            await engine.send({**job.request, "op": "generate", "id": job.rid})
            if job.cancelled:  # Stop came while the engine was being started
                await engine.send({"op": "cancel", "id": job.rid})
        for position, job in enumerate(self.waiting):
            if job.ahead != position:
                job.ahead = position
                job.events.put_nowait({"ev": "queued", "ahead": position})

    async def _cancel(self, job: Job) -> None:
        if job.finished:
            return
        job.cancelled = True
        if job in self.waiting:
            self.waiting.remove(job)
            job.finished = True
            await self._dispatch()
        elif job.running_in is not None:
            # Its slot is freed when the engine says it has stopped (within a token).
            await job.running_in.send({"op": "cancel", "id": job.rid})

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        engine = await self.engine_up()
        rid = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        engine.asks[rid] = answer
        await engine.send({**request, "id": rid})
        return await answer

    # --- Clients ------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line) if line else None
            if not isinstance(request, dict):
                return
            op = request.get("op")
            if op == "hello":
                await self._hold(reader)
            elif op == "generate":
                await self._generate(request, reader, writer)
            elif op in ("count", "info"):
                answer = await self._ask({"op": op, "messages": request.get("messages", [])})
                if op == "info":
                    answer.update(
                        restarts=self.restarts,
                        queued=len(self.waiting),
                        running=len(self.running),
                        server_pid=os.getpid(),
                    )
                    if self.engine is not None:
                        answer["pid"] = self.engine.process.pid
                await _write(writer, answer)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that went away, or sent what is not a request
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        self.clients += 1
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        try:
            while await reader.read(4096):
                pass
        finally:
            self.clients -= 1
            if self.clients == 0:
                self.schedule_shutdown()

    def schedule_shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        self._shutdown_timer = loop.call_later(self.args.keep_alive, self.stopped.set)

    async def _generate(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        job = Job(request=request)
        self.waiting.append(job)
        await self._dispatch()
        # Anything from the client after its request, or its closing, means Stop.
        gone = asyncio.create_task(reader.read(1))
        try:
            while True:
                event_wait = asyncio.create_task(job.events.get())
                await asyncio.wait({event_wait, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not event_wait.done():
                    event_wait.cancel()
                    return
                event = event_wait.result()
                await _write(writer, event)
                if event.get("ev") in TERMINAL:
                    return
        finally:
            gone.cancel()
            await self._cancel(job)

    async def stop(self) -> None:
        engine = self.engine
        if engine is not None and engine.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                engine.process.kill()
            await engine.process.wait()


async def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
    await writer.drain()


async def _serve(args: argparse.Namespace) -> None:
    socket_path = Path(args.socket)
    lock = open(socket_path.with_suffix(".lock"), "a")  # noqa: SIM115 (held for our lifetime)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another web worker started it first: that one serves
    # The lock was free, so a socket file left here is a dead server's.
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = Server(args)
    listener = await asyncio.start_unix_server(
        server.handle, path=str(socket_path), limit=LINE_LIMIT
    )
    os.chmod(socket_path, 0o600)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopped.set)
    server.schedule_shutdown()  # if the web process that started us never says hello
    try:
        await server.stopped.wait()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        await server.stop()
        lock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--keep-alive", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(format="chatsite local model server: %(message)s", level=logging.INFO)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
