"""A fake OpenAI-compatible HTTP server for the test suite (stdlib only).

It speaks the Chat Completions API on 127.0.0.1 the way OpenAI does (SSE over
HTTP/1.1 chunked transfer encoding, OpenAI's JSON error shape), so the real
``openai`` client and its SSE parser are exercised end to end::

    fake = FakeOpenAI()
    fake.start()
    fake.script(Reply(tokens=["Hi", "!"], delay=0.01), Reply(status=429))
    client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    ...
    fake.stop()

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``,
``GET /v1/models/{id}``; anything else gets OpenAI's 404 error JSON.

Schema helpers (:func:`validate_request`, :func:`validate_chunk`, ...) check
bodies against OpenAI's official OpenAPI schemas, extracted into
``tests/support/fixtures/openai_chat_schemas.json``; they need ``jsonschema`` and
``referencing``, imported lazily so the server itself stays stdlib-only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import select
import socket
import socketserver
import string
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCHEMAS_PATH = FIXTURES / "openai_chat_schemas.json"
STREAMS_DIR = FIXTURES / "openai-streams"

DEFAULT_MODELS = ["gpt-4o-mini", "gpt-4o"]
SYSTEM_FINGERPRINT = "fp_fake0penai"
_SLICE = 0.02  # seconds; granularity of sleeps while watching the socket for EOF
_DEFAULT: Any = object()  # "use the per-status default" marker

# status -> (type, code, default message); modelled on real OpenAI error bodies.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}


@dataclass
class Reply:
    """How the fake answers one chat completion request.

    Streaming: ``first_delay`` is slept after the response headers, before the
    role chunk; ``delay`` before each content chunk. ``break_after=N`` shuts the
    TCP connection down after N content chunks (no finish chunk, no ``[DONE]``,
    no terminating HTTP chunk); ``stall_after=N`` sleeps ``stall`` seconds after
    N content chunks, then goes on. ``status != 200`` sends OpenAI's JSON error
    (``error_message``, or a realistic per-status message when empty) after
    ``first_delay``. ``raw`` replays recorded SSE bytes verbatim, one HTTP chunk
    per SSE event, whatever the request's ``stream``; there every event but a
    final ``[DONE]`` counts as a content chunk for delay/break_after/stall_after.

    ``reasoning`` pieces are streamed before the tokens, each a content chunk, where
    ``reasoning_format`` says: ``"reasoning_content"`` (DeepSeek, older vLLM),
    ``"reasoning"`` (newer vLLM), ``"reasoning_details"`` (a list of ``reasoning.text``
    objects), ``"openrouter"`` (``reasoning`` and the same text in ``reasoning_details``,
    as OpenRouter sends it), ``"summary"`` (``reasoning.summary`` details), ``"think"``
    (``<think>…</think>`` in the content, as llama.cpp sends it) or ``"think_unopened"``
    (only the closing tag, as DeepSeek-R1 distills do). Usage then counts them as
    ``completion_tokens_details.reasoning_tokens``.

    Non-streaming: the response comes after ``first_delay + delay * len(tokens)``
    (plus ``stall`` if ``stall_after`` is set); ``break_after`` drops the
    connection without any response.
    """

    tokens: list[str] = field(
        default_factory=lambda: ["Hello", " from", " the", " fake", " model."]
    )
    delay: float = 0.0
    first_delay: float = 0.0
    status: int = 200
    error_message: str = ""
    break_after: int | None = None
    stall_after: int | None = None
    stall: float = 0.0
    finish_reason: str = "stop"
    model: str | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reasoning: list[str] = field(default_factory=list)
    reasoning_format: str = "reasoning_content"

    def reasoning_deltas(self) -> list[dict[str, Any]]:
        """The deltas that carry ``reasoning`` (before the tokens), in ``reasoning_format``."""
        form = self.reasoning_format
        if not self.reasoning:
            return []
        if form in ("think", "think_unopened"):
            opening = ["<think>"] if form == "think" else []
            return [{"content": piece} for piece in [*opening, *self.reasoning, "</think>\n\n"]]
        deltas: list[dict[str, Any]] = []
        for piece in self.reasoning:
            if form in ("reasoning_content", "reasoning"):
                deltas.append({"content": None, form: piece})
                continue
            kind, key = (
                ("reasoning.summary", "summary")
                if form == "summary"
                else ("reasoning.text", "text")
            )
            details = [{"type": kind, key: piece, "format": "unknown", "index": 0}]
            delta: dict[str, Any] = {"content": "", "reasoning_details": details}
            if form == "openrouter":
                delta["reasoning"] = piece
            deltas.append(delta)
        return deltas


def load_stream(name: str) -> bytes:
    """Return a recorded OpenAI SSE stream from ``tests/support/fixtures/openai-streams``.

    ``name`` may be the full file name or a unique prefix of it (e.g. ``"e2aad469"``).
    """
    matches = sorted(p for p in STREAMS_DIR.glob("*.bin") if p.name.startswith(name))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected exactly one recording matching {name!r}, got {matches}")
    return matches[0].read_bytes()


def iter_sse_data(raw: bytes) -> Iterator[str]:
    """Yield the ``data`` payload of each SSE event in ``raw`` (``"[DONE]"`` included)."""
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [ln[5:].lstrip(b" ") for ln in block.split(b"\n") if ln.startswith(b"data:")]
        if lines:
            yield b"\n".join(lines).decode("utf-8")


def count_prompt_tokens(messages: Any) -> int:
    """Deterministic stand-in for prompt tokens: whitespace-separated words of all message texts."""
    words = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


def _has_image_parts(messages: list[Any]) -> bool:
    return any(
        isinstance(message, dict)
        and isinstance(message.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in message["content"])
        for message in messages
    )


def _usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _random_id(prefix: str, length: int = 29) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_body(
    status: int, message: str = "", *, model: str = "", key: str = "", code: Any = _DEFAULT
) -> dict[str, Any]:
    """OpenAI's error JSON for ``status`` (type/code picked like the real API)."""
    default_type = "invalid_request_error" if status < 500 else "server_error"
    err_type, default_code, default_message = _ERRORS.get(status, (default_type, None, "Error."))
    text = message or default_message.format(model=model or "unknown", key=key or "sk-***")
    code = default_code if code is _DEFAULT else code
    return {"error": {"message": text, "type": err_type, "param": None, "code": code}}


class RequestHeaders(dict[str, str]):
    """A ``dict`` of request headers with case-insensitive lookups (keys stored lower-case)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        """Case-insensitive ``dict.get``."""
        return super().get(key.lower(), default)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind's socket.getfqdn(), which can stall on bad DNS setups.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Stay quiet (peers vanishing mid-request is routine here) but keep a record.
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, ConnectionError | TimeoutError):
            self.fake.errors.append(exc)


class _Abort(Exception):
    """The stream must stop: client gone, server stopping, or fake reset."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai"
    sys_version = ""
    server: _Server
    _generation = -1  # FakeOpenAI generation (see reset()) when the current request arrived

    # -- plumbing ---------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence access logs."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _common_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "x-request-id": _random_id("req_", 32).lower(),
            "openai-version": "2020-10-01",
            "openai-organization": "org-fake",
            "openai-processing-ms": "1",
        }
        for key, value in (extra or {}).items():
            for existing in [k for k in headers if k.lower() == key.lower()]:
                del headers[existing]
            headers[key] = value
        return headers

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in self._common_headers(headers).items():
            self.send_header(key, value)
        self.end_headers()
        self._write(data)

    def _send_error(
        self,
        status: int,
        message: str = "",
        *,
        model: str = "",
        code: Any = _DEFAULT,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = {"retry-after": "0"} if status == 429 else {}
        extra.update(headers or {})
        auth = self.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        masked = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else key
        self._send_json(
            status, error_body(status, message, model=model, key=masked, code=code), extra
        )

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:  # BrokenPipe, ConnectionReset, ...
            self.close_connection = True
            self._client_gone()
            raise _Abort from exc

    # -- liveness ---------------------------------------------------------------

    def _client_gone(self) -> None:
        fake = self.server.fake
        if self._generation == fake._generation and not fake._stopping.is_set():
            fake.disconnected.set()

    def _peer_closed(self) -> bool:
        """Non-blocking check: has the client closed (EOF) or reset the connection?"""
        try:
            if not self._wait_readable(0):
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):  # reset, or socket already closed
            return True

    def _wait_readable(self, timeout: float) -> bool:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(self.connection, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(max(0, int(timeout * 1000))))
        readable, _, _ = select.select([self.connection], [], [], timeout)
        return bool(readable)

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` in slices; raise _Abort if the client leaves, on stop or reset."""
        fake = self.server.fake
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if fake._stopping.is_set() or self._generation != fake._generation:
                self.close_connection = True
                raise _Abort
            if self._peer_closed():
                self.close_connection = True
                self._client_gone()
                raise _Abort
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wait_readable(min(remaining, _SLICE)) and not self._peer_closed():
                time.sleep(min(remaining, _SLICE))  # unexpected pipelined bytes: don't spin

    def _hard_close(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routes -----------------------------------------------------------------

    def do_GET(self) -> None:
        """``/v1/models`` and ``/v1/models/{id}``."""
        self._guarded(self._get)

    def do_POST(self) -> None:
        """``/v1/chat/completions``."""
        self._guarded(self._post)

    def _other(self) -> None:
        """Any other method: OpenAI's "Invalid URL" 404."""
        self._read_body()
        self._guarded(self._not_found)

    do_PUT = do_PATCH = do_DELETE = _other

    def _guarded(self, route: Callable[[], None]) -> None:
        self._generation = self.server.fake._generation
        try:
            route()
        except _Abort:
            self.close_connection = True

    def _get(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        models = [
            {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
            for m in self.server.fake.models
        ]
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": models})
        elif path.startswith("/v1/models/"):
            wanted = path.removeprefix("/v1/models/")
            found = [m for m in models if m["id"] == wanted]
            if found:
                self._send_json(200, found[0])
            else:
                self._send_error(404, model=wanted)
        else:
            self._not_found()

    def _post(self) -> None:
        raw_body = self._read_body()
        if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
            self._not_found()
            return
        fake = self.server.fake
        try:
            body = json.loads(raw_body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)",
            )
            return
        fake._record(body, RequestHeaders(self.headers.items()))
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send_error(
                401,
                code=None,
                message="You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
            return
        if not isinstance(body.get("model"), str):
            self._send_error(400, "you must provide a model parameter")
            return
        if not isinstance(body.get("messages"), list):
            self._send_error(
                400, "Missing required parameter: 'messages'.", code="missing_required_parameter"
            )
            return
        if fake.refuse_images and _has_image_parts(body["messages"]):
            # What OpenAI answers when a model that cannot see images is sent one.
            self._send_error(
                400,
                "Invalid content type. image_url is only supported by certain models.",
                code="invalid_value",
            )
            return
        reply = fake._next_reply()
        model = reply.model or body["model"]
        if reply.status != 200:
            self._pause(reply.first_delay)
            self._send_error(reply.status, reply.error_message, model=model, headers=reply.headers)
        elif reply.raw is not None or body.get("stream") is True:
            self._stream(reply, body, model)
        else:
            self._complete(reply, body, model)

    def _not_found(self) -> None:
        # Like OpenAI: code null for unknown URLs (model_not_found is for unknown models).
        self._send_error(404, f"Invalid URL ({self.command} {urlsplit(self.path).path})", code=None)

    # -- chat completions -------------------------------------------------------

    def _events(self, reply: Reply, body: dict[str, Any], model: str) -> list[tuple[bytes, bool]]:
        """(SSE event bytes, counts-as-content) pairs, excluding ``[DONE]``."""
        if reply.raw is not None:  # split after each blank line, keeping the bytes exact
            parts = re.split(rb"(\r\n\r\n|\n\n|\r\r)", reply.raw)
            blocks: list[bytes] = [
                a + b for a, b in zip(parts[::2], [*parts[1::2], b""], strict=True)
            ]
            return [(block, True) for block in blocks if block]
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base: dict[str, Any] = {
            "id": _random_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

        def event(choices: list[dict[str, Any]], usage: Any = None, last: bool = False) -> bytes:
            chunk = {**base, "choices": choices}
            if include_usage:
                chunk["usage"] = usage if last else None
            return b"data: " + _dumps(chunk) + b"\n\n"

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

        events = [(event(choice({"role": "assistant", "content": "", "refusal": None})), False)]
        events += [(event(choice(delta)), True) for delta in reply.reasoning_deltas()]
        events += [(event(choice({"content": tok})), True) for tok in reply.tokens]
        events.append((event(choice({}, reply.finish_reason)), False))
        if include_usage:
            thought = len(reply.reasoning)
            usage = _usage(
                count_prompt_tokens(body.get("messages")), len(reply.tokens) + thought, thought
            )
            events.append((event([], usage, last=True), False))
        return events

    def _stream(self, reply: Reply, body: dict[str, Any], model: str) -> None:
        events = self._events(reply, body, model)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in self._common_headers(reply.headers).items():
            self.send_header(key, value)
        try:
            self.end_headers()
        except OSError as exc:
            self._client_gone()
            raise _Abort from exc
        self._pause(reply.first_delay)
        sent = 0  # content chunks sent so far
        stalled = False
        done = b"data: [DONE]\n\n"
        if reply.raw is not None:  # a recorded [DONE] is sent together with the terminator
            done = events.pop()[0] if events and events[-1][0].strip() == b"data: [DONE]" else b""
        for index, (payload, is_content) in enumerate([*events, (done, False)]):
            if index > 0 or reply.raw is not None:
                if reply.break_after is not None and sent >= reply.break_after:
                    self._hard_close()
                    return
                if not stalled and reply.stall_after is not None and sent >= reply.stall_after:
                    stalled = True
                    self._pause(reply.stall)
            if index == len(events):
                break
            if is_content:
                self._pause(reply.delay)
                sent += 1
            self._write(b"%x\r\n%s\r\n" % (len(payload), payload))
        if self._peer_closed():
            self._client_gone()
            raise _Abort
        # [DONE] and the zero-length chunk go out in one write: clients may hang up on [DONE].
        self._write((b"%x\r\n%s\r\n" % (len(done), done) if done else b"") + b"0\r\n\r\n")
        fake = self.server.fake
        if self._generation == fake._generation:
            fake.completed.set()

    def _complete(self, reply: Reply, body: dict[str, Any], model: str) -> None:
        """Non-streaming ``chat.completion``; delays add up before the response is sent."""
        if reply.break_after is not None:
            self._pause(reply.first_delay + reply.delay * reply.break_after)
            self._hard_close()  # no response at all
            return
        self._pause(reply.first_delay + reply.delay * len(reply.tokens))
        if reply.stall_after is not None:
            self._pause(reply.stall)
        completion = {
            "id": _random_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(reply.tokens),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": _usage(count_prompt_tokens(body.get("messages")), len(reply.tokens)),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        self._send_json(200, completion, reply.headers)
        fake = self.server.fake
        if self._generation == fake._generation:
            fake.completed.set()


class FakeOpenAI:
    """A scripted OpenAI Chat Completions server on 127.0.0.1 (see module docstring)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # RequestHeaders: case-insensitive keys
        self.disconnected = threading.Event()
        self.completed = threading.Event()
        self.models: list[str] = list(DEFAULT_MODELS)
        # True: a request with an image_url part gets OpenAI's 400 for text-only models.
        self.refuse_images = False
        self.errors: list[BaseException] = []  # unexpected handler exceptions (debug aid)
        self._queue: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._generation = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; abort in-flight streams (never hangs on a stalled handler)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Clear the script queue, records and both events; abort in-flight streams."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self.requests.clear()
            self.headers.clear()
            self.errors.clear()
            self.disconnected.clear()
            self.completed.clear()
            self.refuse_images = False

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (only valid after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- scripting / inspection -------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies (FIFO); each chat completion request consumes one, else ``Reply()``."""
        with self._cond:
            self._queue.extend(replies)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least ``n`` chat completion requests arrived, else AssertionError."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(
                    f"expected >= {n} chat completion requests, got {len(self.requests)}"
                )

    # -- internals used by the handler ------------------------------------------

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._cond:
            self.requests.append(body)
            self.headers.append(headers)
            self._cond.notify_all()

    def _next_reply(self) -> Reply:
        with self._cond:
            return self._queue.popleft() if self._queue else Reply()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


# -- schema validation (needs jsonschema + referencing) --------------------------

_SCHEMA_URI = "urn:openai-chat-schemas"


@functools.cache
def _validator(schema_name: str) -> Any:
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    doc = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))
    if schema_name not in doc["components"]["schemas"]:
        raise KeyError(
            f"{schema_name} not in {SCHEMAS_PATH.name}; re-run extract_openai_schemas.py"
        )
    registry: Registry[Any] = Registry().with_resource(
        _SCHEMA_URI, DRAFT202012.create_resource(doc)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{_SCHEMA_URI}#/components/schemas/{schema_name}"}, registry=registry
    )


def validate_schema(schema_name: str, instance: Any) -> None:
    """Raise AssertionError listing every violation of OpenAI's ``schema_name`` schema."""
    errors = list(_validator(schema_name).iter_errors(instance))
    if errors:
        lines = [f"- at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]
        raise AssertionError(f"not a valid {schema_name}:\n" + "\n".join(lines))


def validate_request(body: dict[str, Any]) -> None:
    """Assert ``body`` is a valid ``CreateChatCompletionRequest``."""
    validate_schema("CreateChatCompletionRequest", body)


def validate_chunk(chunk: dict[str, Any]) -> None:
    """Assert ``chunk`` is a valid ``CreateChatCompletionStreamResponse`` (one SSE event)."""
    validate_schema("CreateChatCompletionStreamResponse", chunk)


def validate_response(body: dict[str, Any]) -> None:
    """Assert ``body`` is a valid non-streaming ``CreateChatCompletionResponse``."""
    validate_schema("CreateChatCompletionResponse", body)


def validate_error(body: dict[str, Any]) -> None:
    """Assert ``body`` is a valid OpenAI ``ErrorResponse``."""
    validate_schema("ErrorResponse", body)
