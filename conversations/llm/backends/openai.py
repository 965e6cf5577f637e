"""The OpenAI-compatible backend: OpenAI, or any server at `OPENAI_BASE_URL` (Ollama,
vLLM, llama.cpp, LM Studio).

The only module that imports `openai`. Every SDK or transport failure becomes an
`LLMError` (see `..base`) whose `user_message` a person can read and act on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import re
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import httpx2
import openai
from django.conf import settings

from ..base import (
    BadCredentials,
    BadRequest,
    Chunk,
    LLMError,
    ModelNotFound,
    NotConfigured,
    RateLimited,
    ServerError,
    StreamBroken,
    TimedOut,
    Unreachable,
    strip_nul,
)

# Addresses in a provider's words: a URL, or a host (or IPv4 address) with a port.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)
_HOST_PORT = re.compile(
    r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|(?:[a-z0-9-]+\.)+[a-z]{2,}):\d{1,5}\b", re.I
)

# What local servers get as a key: they ignore it, but the SDK insists on one.
_PLACEHOLDER_KEY = "not-needed"


def server_label() -> str:
    """Where requests go, for messages: never with a password, key or query in it."""
    raw = settings.OPENAI_BASE_URL or "https://api.openai.com/v1"
    try:
        url = httpx2.URL(raw)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx2.InvalidURL, TypeError, ValueError):
        return "the configured OPENAI_BASE_URL (which is not a valid URL)"


def redact(text: str) -> str:
    """Remove the API key and any address from text that came from outside (a provider may
    echo the key, or name the host it could not reach): it is shown to users."""
    key = settings.OPENAI_API_KEY
    if key and len(key) >= 8:
        text = text.replace(key, "***")
    base = settings.OPENAI_BASE_URL
    if base:
        text = text.replace(base.rstrip("/"), "[the model server]")
        with contextlib.suppress(httpx2.InvalidURL, TypeError, ValueError):
            host = httpx2.URL(base).host
            if host:
                text = re.sub(rf"{re.escape(host)}(:\d+)?", "[the model server]", text)
    text = _URL.sub("[an address]", text)
    return _HOST_PORT.sub("[an address]", text)


# One HTTP connection pool per event loop: an async client is bound to the loop that
# created it, and building one (SSL context) is too slow to do per request.
_http_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, httpx2.AsyncClient]
] = weakref.WeakKeyDictionary()


@atexit.register
def _close_http_clients() -> None:
    # aiohttp complains of sessions left open; those of loops still running close here.
    for loop, clients in list(_http_clients.items()):
        if loop.is_closed() or not loop.is_running():
            continue
        for client in clients.values():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(1)


def _http_client() -> httpx2.AsyncClient:
    # The SDK's aiohttp transport: its C parser reads a streamed reply for about half the
    # CPU of httpx's pure-Python stack (bench/stream_bench.py). aiohttp refuses a URL with
    # credentials beside the SDK's Authorization header: httpx takes those.
    url = httpx2.URL(settings.OPENAI_BASE_URL or "https://api.openai.com/v1")
    kind = "httpx" if url.userinfo else "aiohttp"
    clients = _http_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(kind)
    if client is None or client.is_closed:
        client = openai.DefaultAsyncHttpxClient() if url.userinfo else openai.DefaultAioHttpClient()
        clients[kind] = client
    return client


def _client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY or _PLACEHOLDER_KEY,
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.OPENAI_TIMEOUT,
        max_retries=settings.OPENAI_MAX_RETRIES,
        http_client=_http_client(),
    )


def _provider_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = str(inner.get("message") or "")
        elif isinstance(inner, str):
            message = inner
    return redact(" ".join(message.split()))[:300]


def _refused(exc: BaseException) -> bool:
    """Whether the server could not be reached at all (refused, no route, bad name).

    The SDK's aiohttp transport reports that as a connect *timeout*: the aiohttp error
    it comes from says what it was.
    """
    cause: BaseException | None = exc
    for _ in range(8):  # a chain, not a cycle
        if cause is None:
            break
        if isinstance(cause, aiohttp.ClientConnectorError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def translate(exc: BaseException, *, model: str) -> LLMError:
    """Map an SDK or transport exception to the project's own, with a readable message."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) and not _refused(exc):
        return TimedOut(
            f"The model server took too long to answer (more than {settings.OPENAI_TIMEOUT:g} s)."
        )
    if isinstance(exc, openai.APIConnectionError):
        # Message texts are shown to the user who chatted: never the server's address (it
        # can name internal hosts); staff see it on the page's model line.
        return Unreachable(
            "Cannot reach the model server. Is it running, and is the site's model server "
            "setting right? (The staff of this site can see which server it is.)"
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        # The provider's text may echo part of the key: never pass it on.
        return BadCredentials()
    if isinstance(exc, openai.RateLimitError):
        detail = _provider_detail(exc)
        return RateLimited(
            RateLimited.default_message + (f" (The provider said: {detail})" if detail else "")
        )
    if isinstance(exc, openai.NotFoundError):
        return ModelNotFound(
            f"The model “{model}” was not found on the model server. "
            "Choose another model in the conversation's settings."
        )
    if isinstance(exc, openai.InternalServerError):
        return ServerError(
            f"The model server had an internal error (HTTP {exc.status_code}). Retry in a moment."
        )
    if isinstance(exc, openai.APIStatusError):
        detail = _provider_detail(exc)
        return BadRequest(
            f"The model server refused the request (HTTP {exc.status_code})"
            + (f": {detail}" if detail else ".")
        )
    if isinstance(exc, httpx2.TransportError):
        return StreamBroken()
    if isinstance(exc, openai.APIError):
        # An error event inside the stream, with the server's own words.
        detail = redact(" ".join(str(exc.message).split()))[:300]
        return LLMError(f"The model server reported an error: {detail}")
    return LLMError(f"Unexpected error talking to the model server: {type(exc).__name__}.")


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reasoning(delta: dict[str, Any]) -> str:
    """A delta's reasoning, wherever the server put it.

    `reasoning_content` (DeepSeek, older vLLM), `reasoning` (newer vLLM and others), or
    OpenRouter's `reasoning_details`: a list of objects whose text is in `text`
    ("reasoning.text") or `summary` ("reasoning.summary"). OpenRouter sends the same text
    as `reasoning` too: the first found is taken, never both.
    """
    for name in ("reasoning_content", "reasoning"):
        text = _string(delta.get(name))
        if text:
            return text
    details = delta.get("reasoning_details")
    parts: list[str] = []
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = detail.get("type")
        if kind == "reasoning.text":
            parts.append(_string(detail.get("text")))
        elif kind == "reasoning.summary":
            parts.append(_string(detail.get("summary")))
    return "".join(parts)


def _reasoning_tokens(usage: dict[str, Any]) -> int | None:
    details = usage.get("completion_tokens_details")
    return _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None


async def _stream_events(response: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a chat completion stream, read from its server-sent events.

    Read here, not through the SDK's stream: it builds typed objects of every chunk,
    which cost more CPU than all the rest of a reply (bench/stream_bench.py). An error
    event raises `openai.APIError`, as the SDK's stream does.
    """
    data: list[str] = []
    kind = ""
    async for line in response.iter_lines():
        if line:
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            continue
        if not data:
            kind = ""
            continue
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            return
        try:
            event = json.loads(payload)
        except ValueError:
            raise openai.APIError(
                "the stream held something that is not JSON",
                response.http_response.request,
                body=None,
            ) from None
        if kind == "error" or (isinstance(event, dict) and event.get("error")):
            error = event.get("error", event) if isinstance(event, dict) else event
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                str(message or error or "an error event"),
                response.http_response.request,
                body=error,
            )
        kind = ""
        if isinstance(event, dict):
            yield event


# Servers that refused stream_options once (per process).
_NO_STREAM_OPTIONS: set[str] = set()


async def stream_chat(
    *,
    messages: Iterable[dict[str, str]],
    model: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> AsyncIterator[Chunk]:
    """Stream a chat completion from the server as `Chunk`s.

    Cancelling the consumer closes the HTTP response, so the server stops generating.
    """
    try:
        client = _client()
    except (httpx2.InvalidURL, ValueError) as exc:
        raise NotConfigured(
            "The site's model server address is not a valid URL: the staff of this site "
            "must fix it and restart the server."
        ) from exc
    request: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        request["temperature"] = temperature
    if max_tokens:
        request["max_tokens"] = max_tokens
    if server_label() in _NO_STREAM_OPTIONS:
        del request["stream_options"]
    finished = streaming = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(
                    client.chat.completions.with_streaming_response.create(**request)
                )
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                # Some older OpenAI-compatible servers reject stream_options: ask again
                # without (then there is no usage to record), and from now on ask that
                # server without.
                if "stream_options" not in exc.response.text:
                    raise
                _NO_STREAM_OPTIONS.add(server_label())
                del request["stream_options"]
                response = await stack.enter_async_context(
                    client.chat.completions.with_streaming_response.create(**request)
                )
            streaming = True
            async for event in _stream_events(response):
                model_name = _string(event.get("model"))
                usage = event.get("usage")
                if isinstance(usage, dict):
                    yield Chunk(
                        model=model_name,
                        prompt_tokens=_count(usage.get("prompt_tokens")),
                        completion_tokens=_count(usage.get("completion_tokens")),
                        reasoning_tokens=_reasoning_tokens(usage),
                    )
                choices = event.get("choices")
                for choice in choices if isinstance(choices, list) else ():
                    if not isinstance(choice, dict):
                        continue
                    delta = choice.get("delta")
                    delta = delta if isinstance(delta, dict) else {}
                    text = _string(delta.get("content")) + _string(delta.get("refusal"))
                    # PostgreSQL cannot store NUL in text; a model can emit it.
                    text = strip_nul(text)
                    reasoning = strip_nul(_reasoning(delta))
                    finish_reason = _string(choice.get("finish_reason")) or None
                    if finish_reason:
                        finished = True
                    if text or reasoning or finish_reason:
                        yield Chunk(
                            text=text,
                            reasoning=reasoning,
                            model=model_name,
                            finish_reason=finish_reason,
                        )
    except (openai.OpenAIError, httpx2.HTTPError) as exc:
        timed_out = isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) and not (
            _refused(exc)
        )
        broken = isinstance(exc, openai.APIConnectionError | httpx2.TransportError)
        if streaming and broken and not timed_out:
            # The server answered, then the connection died mid-reply.
            raise StreamBroken() from exc
        raise translate(exc, model=model) from exc
    if not finished:
        raise StreamBroken()
