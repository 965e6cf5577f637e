"""Tests for the fake OpenAI server, driven by the real ``openai`` client (no DB needed)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.fake_openai import (
    FakeOpenAI,
    Reply,
    count_prompt_tokens,
    iter_sse_data,
    load_stream,
    validate_chunk,
    validate_error,
    validate_request,
    validate_response,
    validate_schema,
)

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello, please"},
]
PROMPT_WORDS = 8  # words in MESSAGES
RECORDED_TEXT = (
    "I'm unable to provide real-time weather updates. To get the current weather in San "
    "Francisco, I recommend checking a reliable weather website or a weather app."
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    """One fake server for the whole module."""
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    """The module's server, reset for this test."""
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """A real sync OpenAI client pointed at the fake."""
    with openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0) as c:
        yield c


def async_client(fake: FakeOpenAI, **kwargs: Any) -> openai.AsyncOpenAI:
    """A real async OpenAI client pointed at the fake."""
    return openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0, **kwargs)


def create_stream(c: openai.OpenAI, **kwargs: Any) -> Any:
    """Start a streamed chat completion with the default test messages."""
    return c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs)


def collect_text(stream: Any, into: list[str]) -> None:
    """Append each chunk's content delta to ``into`` (kept on error)."""
    for chunk in stream:
        into.append((chunk.choices[0].delta.content or "") if chunk.choices else "")


def raw_post(
    fake: FakeOpenAI, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    """POST to /v1/chat/completions with http.client; return (status, headers, decoded body)."""
    port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {
            "Content-Type": "application/json",
            "Authorization": "Bearer sk-test",
            **(headers or {}),
        }
        conn.request("POST", "/v1/chat/completions", body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    """Parse an SSE body into chunk dicts, asserting it ends with exactly one ``[DONE]``."""
    data = list(iter_sse_data(raw))
    assert data[-1] == "[DONE]"
    assert data.count("[DONE]") == 1
    return [json.loads(d) for d in data[:-1]]


# -- streaming ---------------------------------------------------------------------


def test_stream_deltas_and_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Scripted tokens arrive as deltas, then finish_reason, then the usage chunk."""
    tokens = ["Hi", " there", ",", " friend", "!"]
    fake.script(Reply(tokens=tokens))
    chunks = list(create_stream(client, stream_options={"include_usage": True}))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in chunks[1:-2]] == tokens
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-2])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == PROMPT_WORDS
    assert chunks[-1].usage.completion_tokens == len(tokens)
    assert chunks[-1].usage.total_tokens == PROMPT_WORDS + len(tokens)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert fake.completed.wait(2)
    assert not fake.disconnected.is_set()


def test_stream_without_include_usage_has_no_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Without stream_options there is no usage chunk (and no usage key at all)."""
    chunks = list(create_stream(client))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake model."
    assert all(c.choices for c in chunks)
    status, _, raw = raw_post(fake, {"model": "m", "messages": MESSAGES, "stream": True})
    assert status == 200
    assert all("usage" not in chunk for chunk in sse_chunks(raw))


@pytest.mark.parametrize("finish_reason", ["stop", "length", "content_filter"])
def test_stream_finish_reason(fake: FakeOpenAI, client: openai.OpenAI, finish_reason: str) -> None:
    """finish_reason is sent as scripted."""
    fake.script(Reply(tokens=["a", "b"], finish_reason=finish_reason))
    chunks = list(create_stream(client))
    assert chunks[-1].choices[0].finish_reason == finish_reason
    assert chunks[-1].choices[0].delta.content is None


def test_model_override_and_extra_headers(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Reply.model is echoed instead of the request's model; Reply.headers are sent."""
    fake.script(Reply(model="gpt-4o-2024-08-06", headers={"x-extra": "yes"}))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    assert raw.headers["x-extra"] == "yes"
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert raw.headers["transfer-encoding"] == "chunked"
    assert raw.headers["x-request-id"].startswith("req_")
    assert {c.model for c in raw.parse()} == {"gpt-4o-2024-08-06"}


def test_async_stream(fake: FakeOpenAI) -> None:
    """AsyncOpenAI streams the scripted tokens too."""
    fake.script(Reply(tokens=["async", " works"], finish_reason="length"))

    async def run() -> list[Any]:
        async with async_client(fake) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "async works"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


def test_tokens_arrive_one_by_one(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Each SSE event is flushed on its own: a token arrives while the server is still stalling."""
    fake.script(Reply(tokens=["a", "b", "c"], stall_after=1, stall=0.5))
    stamps: dict[str, float] = {}
    for chunk in create_stream(client):
        if chunk.choices and chunk.choices[0].delta.content:
            stamps[chunk.choices[0].delta.content] = time.monotonic()
    assert list(stamps) == ["a", "b", "c"]
    assert stamps["b"] - stamps["a"] > 0.3  # "a" was not held back until the stall ended


def test_first_delay_is_after_headers(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """create() returns on the headers; the first chunk comes ``first_delay`` later."""
    fake.script(Reply(first_delay=0.5))
    start = time.monotonic()
    stream = create_stream(client)
    headers_at = time.monotonic() - start
    next(stream)
    first_chunk_at = time.monotonic() - start
    stream.close()
    assert first_chunk_at - headers_at > 0.3


def test_concurrent_streams(fake: FakeOpenAI) -> None:
    """Many streams are served in parallel."""
    n = 20

    async def run() -> list[str]:
        async with async_client(fake) as c:

            async def one(i: int) -> str:
                stream = await c.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"n{i}"}],
                    stream=True,
                )
                return "".join([ch.choices[0].delta.content or "" async for ch in stream])

            return await asyncio.gather(*(one(i) for i in range(n)))

    fake.script(*[Reply(tokens=["x"] * 5, delay=0.05) for _ in range(n)])
    start = time.monotonic()
    texts = asyncio.run(run())
    assert texts == ["xxxxx"] * n
    assert time.monotonic() - start < 3.5  # sequential would take >= 5 s
    assert len(fake.requests) == n


# -- errors --------------------------------------------------------------------------


ERROR_CASES = [
    (400, openai.BadRequestError, "invalid_request_error", None),
    (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
    (
        403,
        openai.PermissionDeniedError,
        "invalid_request_error",
        "unsupported_country_region_territory",
    ),
    (404, openai.NotFoundError, "invalid_request_error", "model_not_found"),
    (409, openai.ConflictError, "invalid_request_error", None),
    (422, openai.UnprocessableEntityError, "invalid_request_error", None),
    (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
    (500, openai.InternalServerError, "server_error", None),
    (503, openai.InternalServerError, "server_error", None),
]


@pytest.mark.parametrize(("status", "exc_type", "err_type", "code"), ERROR_CASES)
@pytest.mark.parametrize("stream", [True, False])
def test_error_status_maps_to_openai_exception(
    fake: FakeOpenAI,
    client: openai.OpenAI,
    status: int,
    exc_type: type[openai.APIStatusError],
    err_type: str,
    code: str | None,
    stream: bool,
) -> None:
    """A scripted status raises the matching openai exception with OpenAI's error body."""
    fake.script(Reply(status=status))
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    err = info.value
    assert err.status_code == status
    assert err.type == err_type
    assert err.code == code
    assert isinstance(err.body, dict)
    assert err.body["message"]
    assert err.response.headers["content-type"] == "application/json"
    if status == 429:
        assert err.response.headers["retry-after"] == "0"


def test_error_body_shape_and_custom_message(fake: FakeOpenAI) -> None:
    """Error bodies follow OpenAI's ErrorResponse schema; error_message is used verbatim."""
    fake.script(Reply(status=404, error_message="nope"))
    status, headers, raw = raw_post(fake, {"model": "gpt-x", "messages": MESSAGES, "stream": True})
    assert status == 404
    assert int(headers["content-length"]) == len(raw)
    body = json.loads(raw)
    validate_error(body)
    assert body == {
        "error": {
            "message": "nope",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    fake.script(Reply(status=404))
    _, _, raw = raw_post(fake, {"model": "gpt-x", "messages": MESSAGES})
    assert (
        json.loads(raw)["error"]["message"]
        == "The model `gpt-x` does not exist or you do not have access to it."
    )


def test_malformed_requests_are_rejected_like_openai(fake: FakeOpenAI) -> None:
    """Bad JSON, no auth, no model/messages: OpenAI-style errors; the script is not consumed."""
    fake.script(Reply(tokens=["kept"]))
    status, _, raw = raw_post(fake, b"{not json")
    assert status == 400
    validate_error(json.loads(raw))
    status, _, raw = raw_post(fake, {"model": "m", "messages": MESSAGES}, {"Authorization": ""})
    assert status == 401
    assert json.loads(raw)["error"]["code"] is None
    status, _, raw = raw_post(fake, {"messages": MESSAGES})
    assert status == 400
    status, _, raw = raw_post(fake, {"model": "m"})
    assert status == 400
    assert json.loads(raw)["error"]["code"] == "missing_required_parameter"
    status, _, raw = raw_post(fake, {"model": "m", "messages": MESSAGES})
    assert status == 200
    assert json.loads(raw)["choices"][0]["message"]["content"] == "kept"


def test_unknown_path_is_openai_404(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Unknown URLs get OpenAI's "Invalid URL" 404 JSON."""
    with pytest.raises(openai.NotFoundError) as info:
        client.post("/nope", body={}, cast_to=object)
    assert info.value.body == {
        "message": "Invalid URL (POST /v1/nope)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.get("/chat/nothing", cast_to=object)
    assert fake.requests == []


# -- broken streams, stalls, disconnects ---------------------------------------------


@pytest.mark.parametrize("break_after", [0, 2, 5])
def test_break_after_raises_connection_error(
    fake: FakeOpenAI, client: openai.OpenAI, break_after: int
) -> None:
    """An aborted stream raises openai.APIConnectionError caused by httpx2.RemoteProtocolError."""
    tokens = ["a", "b", "c", "d", "e"]
    fake.script(Reply(tokens=tokens, break_after=break_after))
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError) as info:
        collect_text(create_stream(client), got)
    assert type(info.value) is openai.APIConnectionError
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(info.value.__cause__)
    assert "".join(got) == "".join(tokens[:break_after])
    assert not fake.completed.is_set()


def test_break_after_async(fake: FakeOpenAI) -> None:
    """The async client raises the same APIConnectionError on an aborted stream."""
    fake.script(Reply(break_after=1))

    async def run() -> None:
        async with async_client(fake) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async for _ in stream:
                pass

    with pytest.raises(openai.APIConnectionError) as info:
        asyncio.run(run())
    assert type(info.value) is openai.APIConnectionError
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def test_break_after_non_streaming(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Non-streaming + break_after: the connection drops without any response."""
    fake.script(Reply(break_after=0))
    with pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def test_stall_longer_than_timeout_raises_timeout(fake: FakeOpenAI) -> None:
    """A stall past the client's read timeout raises APITimeoutError; the fake sees the hang-up."""
    fake.script(Reply(tokens=["a", "b", "c"], stall_after=1, stall=5))
    c = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=0.3)
    got: list[str] = []
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        collect_text(create_stream(c), got)
    assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
    assert "".join(got) == "a"
    assert time.monotonic() - start < 2
    assert fake.disconnected.wait(5)
    c.close()


def test_stall_async_timeout(fake: FakeOpenAI) -> None:
    """Same with AsyncOpenAI."""
    fake.script(Reply(stall_after=0, stall=5))

    async def run() -> None:
        async with async_client(fake, timeout=0.3) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async for _ in stream:
                pass

    with pytest.raises(openai.APITimeoutError) as info:
        asyncio.run(run())
    assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
    assert fake.disconnected.wait(5)


def test_short_stall_then_continue(fake: FakeOpenAI) -> None:
    """A stall shorter than the timeout just delays the rest of the stream."""
    fake.script(Reply(tokens=["a", "b"], stall_after=1, stall=0.2))
    c = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=2)
    start = time.monotonic()
    text = "".join(ch.choices[0].delta.content or "" for ch in create_stream(c))
    assert text == "ab"
    assert time.monotonic() - start >= 0.2
    assert fake.completed.wait(2)
    c.close()


def _close(stream: Any) -> None:
    next(stream)
    next(stream)
    stream.close()


def _close_response(stream: Any) -> None:
    next(stream)
    stream.response.close()


def _break_out_of_with(stream: Any) -> None:
    with stream:
        for _ in stream:
            break


@pytest.mark.parametrize("closer", [_close, _close_response, _break_out_of_with])
def test_closing_stream_early_sets_disconnected(
    fake: FakeOpenAI, client: openai.OpenAI, closer: Callable[[Any], None]
) -> None:
    """Closing the client stream mid-way closes the upstream connection, seen by the fake."""
    fake.script(Reply(tokens=["x"] * 50, delay=0.05))
    closer(create_stream(client))
    assert fake.disconnected.wait(5)
    assert not fake.completed.is_set()


def test_with_streaming_response_exit_sets_disconnected(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    """Leaving ``with_streaming_response`` early also disconnects."""
    fake.script(Reply(tokens=["x"] * 50, delay=0.05))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    assert fake.disconnected.wait(5)


@pytest.mark.parametrize("mode", ["close", "break"])
def test_async_close_sets_disconnected(fake: FakeOpenAI, mode: str) -> None:
    """``await stream.close()`` or leaving ``async with`` early disconnects too."""
    fake.script(Reply(tokens=["x"] * 50, delay=0.05))

    async def run() -> None:
        async with async_client(fake) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            if mode == "close":
                await stream.__anext__()
                await stream.close()
            else:
                async with stream:
                    async for _ in stream:
                        break

    asyncio.run(run())
    assert fake.disconnected.wait(5)
    assert not fake.completed.is_set()


def test_cancelled_task_sets_disconnected(fake: FakeOpenAI) -> None:
    """Cancelling the consuming asyncio task closes the upstream request."""
    fake.script(Reply(tokens=["x"] * 50, delay=0.05))

    async def consume(c: openai.AsyncOpenAI, first: asyncio.Event) -> None:
        stream = await c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async with stream:
            async for _ in stream:
                first.set()

    async def run() -> None:
        async with async_client(fake) as c:
            first = asyncio.Event()
            task = asyncio.create_task(consume(c, first))
            await first.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert fake.disconnected.wait(5)


def test_disconnect_detected_during_first_delay(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """A hang-up while the fake is still "thinking" is noticed too."""
    fake.script(Reply(first_delay=10))
    stream = create_stream(client)
    stream.close()
    assert fake.disconnected.wait(5)


def test_stop_does_not_hang_on_stalled_stream() -> None:
    """stop() returns promptly even while a handler is stalling; the client sees a broken stream."""
    fake = FakeOpenAI()
    fake.start()
    fake.script(Reply(stall_after=0, stall=30))
    c = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=10)
    stream = create_stream(c)
    assert next(stream).choices[0].delta.role == "assistant"
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 3  # the stall is 30 s
    with pytest.raises(openai.APIConnectionError):
        list(stream)
    assert not fake.disconnected.is_set()  # the server hung up, not the client
    c.close()


# -- non-streaming, models, replay -------------------------------------------------


def test_non_streaming(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """stream=False returns one chat.completion with the joined tokens and usage."""
    fake.script(Reply(tokens=["One", " two"], finish_reason="length"))
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "One two"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT_WORDS, 2)
    assert fake.completed.wait(2)


def test_non_streaming_async(fake: FakeOpenAI) -> None:
    """Non-streaming with AsyncOpenAI."""

    async def run() -> str | None:
        async with async_client(fake) as c:
            completion = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            return completion.choices[0].message.content

    assert asyncio.run(run()) == "Hello from the fake model."


def test_models(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """GET /v1/models lists models; GET /v1/models/{id} retrieves one."""
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o-mini").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


@pytest.mark.parametrize(
    ("recording", "text", "finish_reason", "usage"),
    [
        ("e2aad469", RECORDED_TEXT, "stop", (14, 30, 44)),
        ("4cc50a61", '{"', "length", (79, 1, 80)),
    ],
)
def test_replay_recorded_stream(
    fake: FakeOpenAI,
    client: openai.OpenAI,
    recording: str,
    text: str,
    finish_reason: str,
    usage: tuple[int, int, int],
) -> None:
    """A recorded OpenAI stream replayed byte for byte parses to the expected text."""
    fake.script(Reply(raw=load_stream(recording)))
    chunks = list(create_stream(client, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish_reason
    last = chunks[-1].usage
    assert last is not None
    assert (last.prompt_tokens, last.completion_tokens, last.total_tokens) == usage
    assert {c.model for c in chunks} == {"gpt-4o-2024-08-06"}
    assert fake.completed.wait(2)


def test_replay_is_byte_exact(fake: FakeOpenAI) -> None:
    """The replayed body equals the recording; break_after counts SSE events."""
    recording = load_stream("4cc50a61")
    fake.script(Reply(raw=recording))
    _, headers, raw = raw_post(fake, {"model": "m", "messages": MESSAGES, "stream": True})
    assert raw == recording
    assert headers["content-type"] == "text/event-stream; charset=utf-8"


def test_replay_keeps_crlf_bytes(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """CRLF-delimited SSE is replayed unchanged and still parsed by the client."""
    recording = load_stream("4cc50a61").replace(b"\n", b"\r\n")
    fake.script(Reply(raw=recording))
    _, _, raw = raw_post(fake, {"model": "m", "messages": MESSAGES, "stream": True})
    assert raw == recording
    fake.script(Reply(raw=recording))
    chunks = list(create_stream(client))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '{"'


def test_replay_can_break(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """break_after also works on replayed streams (counting SSE events)."""
    fake.script(Reply(raw=load_stream("e2aad469"), break_after=3))
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        collect_text(create_stream(client), got)
    assert "".join(got) == "I'm unable"


# -- wire format & schema conformance ----------------------------------------------


def test_http_chunk_framing(fake: FakeOpenAI) -> None:
    """On the wire: HTTP/1.1 200, chunked, one SSE event per HTTP chunk, zero-length terminator."""
    port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            part = sock.recv(65536)
            assert part, "connection closed before the terminating chunk"
            data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"\r\nContent-Type: text/event-stream; charset=utf-8" in head
    events = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n"
            break
        events.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    assert all(
        e.startswith(b"data: ") and e.endswith(b"\n\n") and e.count(b"\n\n") == 1 for e in events
    )
    assert events[-1] == b"data: [DONE]\n\n"
    assert len(events) == 1 + 5 + 1 + 1  # role, tokens, finish, [DONE]


def _schema_keys(schema_name: str) -> set[str]:
    from tests.support.fake_openai import SCHEMAS_PATH

    doc = json.loads(SCHEMAS_PATH.read_text())
    return set(doc["components"]["schemas"][schema_name]["properties"])


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_chunks_match_schema_and_recordings(fake: FakeOpenAI, include_usage: bool) -> None:
    """Every emitted chunk is a valid CreateChatCompletionStreamResponse shaped like OpenAI's."""
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    validate_request(body)
    fake.script(Reply(finish_reason="length"))
    status, _, raw = raw_post(fake, body)
    assert status == 200
    chunks = sse_chunks(raw)
    allowed = _schema_keys("CreateChatCompletionStreamResponse")
    for chunk in chunks:
        validate_chunk(chunk)
        assert set(chunk) <= allowed
    recorded = sse_chunks(load_stream("e2aad469"))
    for chunk in recorded:
        validate_chunk(chunk)
    # Same keys, in the same order, as the real stream (plus documented ``usage: null``).
    assert [k for k in chunks[0] if k != "usage"] == list(recorded[0])
    assert chunks[0]["choices"][0] == recorded[0]["choices"][0]
    assert list(chunks[1]["choices"][0]) == list(recorded[1]["choices"][0])
    assert set(chunks[1]["choices"][0]["delta"]) == {"content"}
    assert chunks[-1 if not include_usage else -2]["choices"][0]["delta"] == {}
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert set(recorded[-1]["usage"]) <= set(chunks[-1]["usage"])
        assert all(c["usage"] is None for c in chunks[:-1])


def test_non_streaming_and_list_bodies_match_schema(fake: FakeOpenAI) -> None:
    """Non-streaming body validates against CreateChatCompletionResponse; extra keys are spec'd."""
    status, headers, raw = raw_post(fake, {"model": "gpt-4o-mini", "messages": MESSAGES})
    assert status == 200
    assert headers["content-type"] == "application/json"
    body = json.loads(raw)
    validate_response(body)
    assert set(body) <= _schema_keys("CreateChatCompletionResponse")
    port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/v1/models")
    validate_schema("ListModelsResponse", json.loads(conn.getresponse().read()))
    conn.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503, 418])
def test_error_bodies_match_schema(fake: FakeOpenAI, status: int) -> None:
    """Every error body is a valid ErrorResponse with ``application/json`` and Content-Length."""
    fake.script(Reply(status=status))
    got, headers, raw = raw_post(
        fake, {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    )
    assert got == status
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    validate_error(json.loads(raw))


def test_client_requests_are_recorded_and_valid(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """The fake records request bodies/headers; the client's bodies are valid requests."""
    list(create_stream(client, stream_options={"include_usage": True}, temperature=0.7))
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=50)
    fake.wait_for_requests(2)
    assert fake.requests[0]["stream"] is True
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    assert fake.requests[0]["messages"] == MESSAGES
    assert fake.requests[1]["model"] == "gpt-4o"
    assert "stream" not in fake.requests[1]
    for body in fake.requests:
        validate_request(body)
    assert all(h["authorization"] == "Bearer sk-test" for h in fake.headers)
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"  # case-insensitive
    assert "Content-Type" in fake.headers[0]
    assert fake.headers[0].get("X-Nope", "-") == "-"
    assert all(h["content-type"] == "application/json" for h in fake.headers)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o-mini", "messages": []},
        {"model": "gpt-4o-mini", "messages": [{"role": "bogus", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 5},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
    ],
)
def test_validate_request_rejects_invalid(body: dict[str, Any]) -> None:
    """validate_request catches bodies OpenAI would reject."""
    with pytest.raises(AssertionError, match="not a valid CreateChatCompletionRequest"):
        validate_request(body)


def test_validate_chunk_rejects_invalid() -> None:
    """validate_chunk catches malformed chunks (e.g. unknown finish_reason, wrong object)."""
    good = sse_chunks(load_stream("4cc50a61"))[0]
    validate_chunk(good)
    with pytest.raises(AssertionError):
        validate_chunk({**good, "object": "chat.completion"})
    with pytest.raises(AssertionError):
        validate_chunk({**good, "choices": [{**good["choices"][0], "finish_reason": "done"}]})


# -- scripting & bookkeeping -------------------------------------------------------


def test_script_is_fifo_then_default(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Replies are consumed in order; an empty queue falls back to Reply()."""
    fake.script(Reply(tokens=["first"]), Reply(tokens=["second"]))

    def text() -> str:
        return (
            client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            or ""
        )

    assert [text(), text(), text()] == ["first", "second", "Hello from the fake model."]


def test_wait_for_requests(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """wait_for_requests blocks for requests from another thread, else raises AssertionError."""
    with pytest.raises(AssertionError, match="expected >= 1"):
        fake.wait_for_requests(1, timeout=0.05)
    thread = threading.Thread(
        target=lambda: client.chat.completions.create(model="m", messages=MESSAGES)
    )
    thread.start()
    fake.wait_for_requests(1, timeout=5)
    thread.join(5)
    assert len(fake.requests) == 1


def test_reset_clears_everything(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """reset() empties the queue, the records and both events."""
    fake.script(Reply(tokens=["queued"]), Reply(tokens=["queued"]))
    list(create_stream(client))
    assert fake.completed.wait(2)
    fake.disconnected.set()
    fake.reset()
    assert fake.requests == []
    assert fake.headers == []
    assert not fake.completed.is_set()
    assert not fake.disconnected.is_set()
    assert (
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        != "queued"
    )


def test_count_prompt_tokens() -> None:
    """Prompt tokens are the words of all message texts, including content parts."""
    messages = [
        {"role": "user", "content": "one two"},
        {"role": "user", "content": [{"type": "text", "text": "three four five"}]},
        {"role": "assistant", "content": None},
    ]
    assert count_prompt_tokens(messages) == 5
    assert count_prompt_tokens(MESSAGES) == PROMPT_WORDS


def test_start_stop_restart() -> None:
    """A server can be stopped and started again; base_url needs a running server."""
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with fake:
        first = fake.base_url
        assert first.startswith("http://127.0.0.1:")
        assert first.endswith("/v1")
    fake.stop()  # idempotent
    fake.start()
    try:
        with openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0) as c:
            assert (
                c.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            )
    finally:
        fake.stop()
    assert fake.errors == []


def test_refusing_images_like_a_text_only_model(fake: FakeOpenAI) -> None:
    """With refuse_images, a request with an image_url part gets OpenAI's 400; text passes."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    body = {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}],
    }
    validate_request(body)
    fake.refuse_images = True
    status, _, raw = raw_post(fake, body)
    assert status == 400
    error = json.loads(raw)
    validate_error(error)
    assert "image_url is only supported by certain models" in error["error"]["message"]
    status, _, _ = raw_post(fake, {"model": "gpt-3.5-turbo", "messages": MESSAGES})
    assert status == 200
    fake.reset()
    assert fake.refuse_images is False
    status, _, _ = raw_post(fake, body)
    assert status == 200
