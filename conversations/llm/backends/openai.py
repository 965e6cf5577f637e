"""The one place the rest of the project asks a language model anything.

Two backends answer behind the same interface (`stream_chat`, `available_models`):
OpenAI or any OpenAI-compatible server (`OPENAI_BASE_URL`: Ollama, vLLM, llama.cpp,
LM Studio), and a GGUF model run in this process by llama.cpp (`conversations.local`).
Only this module imports `openai`. Every SDK, transport or local failure becomes an
`LLMError` whose `user_message` a person can read and act on.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from django.conf import settings

# What local servers get as a key: they ignore it, but the SDK insists on one.
_PLACEHOLDER_KEY = "not-needed"


class LLMError(Exception):
    """A model call failed; `user_message` is safe and useful to show in the chat."""

    kind = "error"
    default_message = "The model server returned an error."

    def __init__(self, user_message: str | None = None) -> None:
        # Provider text can hold NUL, which PostgreSQL refuses to store.
        self.user_message = (user_message or self.default_message).replace("\x00", "")
        super().__init__(self.user_message)


class NotConfigured(LLMError):
    kind = "not_configured"
    default_message = (
        "No language model is configured. Set OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL "
        "(for Ollama, vLLM, llama.cpp or LM Studio) in .env and restart the server. "
        "See “Connecting a model” in the README."
    )


class BadCredentials(LLMError):
    kind = "auth"
    default_message = (
        "The model server rejected the API key. Check OPENAI_API_KEY and restart the server."
    )


class RateLimited(LLMError):
    kind = "rate_limited"
    default_message = "The model provider is rate limiting requests. Wait a moment, then retry."


class TimedOut(LLMError):
    kind = "timeout"
    default_message = "The model server took too long to answer."


class Unreachable(LLMError):
    kind = "unreachable"
    default_message = "Cannot reach the model server."


class ServerError(LLMError):
    kind = "server_error"
    default_message = "The model server had an internal error. Retry in a moment."


class ModelNotFound(LLMError):
    kind = "model_not_found"
    default_message = "The model was not found on the model server."


class BadRequest(LLMError):
    kind = "bad_request"
    default_message = "The model server refused the request."


class StreamBroken(LLMError):
    kind = "stream_broken"
    default_message = (
        "The connection to the model server broke before the reply was finished. "
        "The text so far is kept; retry to get a full reply."
    )


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed reply: text, and on the last pieces usage and the finish reason."""

    text: str = ""
    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Before any text: "queued" (waiting for a free slot, `ahead` others first) or
    # "loading" (the model is being loaded).
    phase: str = ""
    ahead: int = 0


@dataclass(frozen=True)
class ModelOption:
    """A model a conversation can use: `id` is what `Conversation.model` stores."""

    id: str
    label: str
    backend: str  # "openai" or "local"
    context_window: int


LOCAL_PREFIX = "local:"


def remote_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def default_backend() -> str:
    """The backend of new conversations: LLM_BACKEND, or for "auto" the configured one."""
    if settings.LLM_BACKEND != "auto":
        return str(settings.LLM_BACKEND)
    return "openai" if remote_configured() else "local"


def _local_option() -> ModelOption | None:
    from . import local

    model = local.model_info()
    if model is None:
        return None
    return ModelOption(
        id=LOCAL_PREFIX + model.name,
        label=f"{model.label} (local)",
        backend="local",
        context_window=model.context_window,
    )


def _remote_options() -> list[ModelOption]:
    names = [settings.OPENAI_MODEL, *settings.OPENAI_MODELS]
    return [
        ModelOption(
            id=name,
            label=name,
            backend="openai",
            context_window=settings.CHAT_CONTEXT_WINDOWS.get(name, settings.CHAT_CONTEXT_WINDOW),
        )
        for name in dict.fromkeys(n.strip() for n in names if n.strip())
    ]


def available_models() -> list[ModelOption]:
    """The models offered per conversation: the default backend's first, then the other's.

    Remote models only when a server is configured (and LLM_BACKEND allows them); the
    local model only when llama.cpp and a GGUF file are there (and LLM_BACKEND allows it).
    """
    options: list[ModelOption] = []
    if settings.LLM_BACKEND != "local" and remote_configured():
        options += _remote_options()
    if settings.LLM_BACKEND != "openai":
        local_option = _local_option()
        if local_option is not None:
            options.append(local_option)
    if default_backend() == "local":
        options.sort(key=lambda option: option.backend != "local")
    return options


def default_model() -> str:
    """The model of new conversations."""
    if default_backend() == "local":
        local_option = _local_option()
        if local_option is not None:
            return local_option.id
    return str(settings.OPENAI_MODEL)


def model_option(model: str) -> ModelOption:
    """What is known of `model` (any name: one no longer offered is sent to its backend)."""
    for option in available_models():
        if option.id == model:
            return option
    if model.startswith(LOCAL_PREFIX):
        return ModelOption(model, model.removeprefix(LOCAL_PREFIX), "local", 2048)
    return ModelOption(
        model,
        model,
        "openai",
        settings.CHAT_CONTEXT_WINDOWS.get(model, settings.CHAT_CONTEXT_WINDOW),
    )


def _not_configured_message() -> str:
    if settings.LLM_BACKEND == "openai" or _local_option() is not None:
        return NotConfigured.default_message
    from . import local

    return f"No language model is available. {local.unavailable_reason()}"


def is_configured() -> bool:
    """Whether anything can answer at all (otherwise the page says how to set one up)."""
    return bool(available_models())


def count_tokens(messages: Iterable[dict[str, str]], *, model: str) -> int:
    """Tokens `messages` take in `model`'s context, counted offline.

    The local model counts with its own tokenizer. For remote models no tokenizer is at
    hand (none may be downloaded at run time), so the count is a deliberate
    over-estimate: one token per 3 bytes of UTF-8 (English averages about 4 characters a
    token), plus each message's framing.
    """
    option = model_option(model)
    if option.backend == "local":
        from . import local

        counted = local.count_tokens(list(messages))
        if counted is not None:
            return counted
    return sum(4 + (len(m.get("content", "").encode()) + 2) // 3 for m in messages) + 3


def server_label() -> str:
    """Where requests go, for messages: never with a password, key or query in it."""
    raw = settings.OPENAI_BASE_URL or "https://api.openai.com/v1"
    try:
        url = httpx2.URL(raw)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx2.InvalidURL, TypeError, ValueError):
        return "the configured OPENAI_BASE_URL (which is not a valid URL)"


def redact(text: str) -> str:
    """Remove the API key from text that came from outside (a provider may echo it)."""
    key = settings.OPENAI_API_KEY
    if key and len(key) >= 8:
        text = text.replace(key, "***")
    return text


# One HTTP connection pool per event loop: an async client is bound to the loop that
# created it, and building one (SSL context) is too slow to do per request.
_http_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _http_client() -> httpx2.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _http_clients.get(loop)
    if client is None or client.is_closed:
        client = openai.DefaultAsyncHttpxClient()
        _http_clients[loop] = client
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


def translate(exc: BaseException, *, model: str) -> LLMError:
    """Map an SDK or transport exception to the project's own, with a readable message."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return TimedOut(
            f"The model server took too long to answer (more than {settings.OPENAI_TIMEOUT:g} s)."
        )
    if isinstance(exc, openai.APIConnectionError):
        return Unreachable(
            f"Cannot reach the model server at {server_label()}. Is it running, and is "
            "OPENAI_BASE_URL right?"
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
            f"The model “{model}” was not found on the model server at {server_label()}. "
            "Check OPENAI_MODEL or the conversation's model."
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


# Servers that refused stream_options once (per process).
_NO_STREAM_OPTIONS: set[str] = set()


async def stream_chat(
    *,
    messages: Iterable[dict[str, str]],
    model: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> AsyncIterator[Chunk]:
    """Stream a chat completion as `Chunk`s, from whichever backend serves `model`.

    Cancelling the consumer stops the generation: the HTTP response to a model server
    is closed (the server stops), a local generation stops at its next token. Raises
    `LLMError` (or a subclass) for every failure.
    """
    if model_option(model).backend == "local":
        from . import local

        async for chunk in local.stream_chat(
            messages=list(messages), temperature=temperature, max_tokens=max_tokens
        ):
            yield chunk
        return
    async for chunk in _stream_remote(
        messages=messages, model=model, temperature=temperature, max_tokens=max_tokens
    ):
        yield chunk


async def _stream_remote(
    *,
    messages: Iterable[dict[str, str]],
    model: str,
    temperature: float | None,
    max_tokens: int | None,
) -> AsyncIterator[Chunk]:
    if not remote_configured() or settings.LLM_BACKEND == "local":
        raise NotConfigured(_not_configured_message())
    try:
        client = _client()
    except (httpx2.InvalidURL, ValueError) as exc:
        raise NotConfigured(
            f"OPENAI_BASE_URL is not a valid URL ({exc}). Fix it in .env and restart the server."
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
        try:
            stream = await client.chat.completions.create(**request)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            # Some older OpenAI-compatible servers reject stream_options: ask again without
            # (then there is no usage to record), and from now on ask that server without.
            if "stream_options" not in exc.response.text:
                raise
            _NO_STREAM_OPTIONS.add(server_label())
            del request["stream_options"]
            stream = await client.chat.completions.create(**request)
        streaming = True
        async with stream:
            async for event in stream:
                usage = event.usage
                if usage is not None:
                    yield Chunk(
                        model=event.model or "",
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                    )
                for choice in event.choices:
                    delta = choice.delta
                    text = (delta.content or "") + (getattr(delta, "refusal", None) or "")
                    # PostgreSQL cannot store NUL in text; a model can emit it.
                    text = text.replace("\x00", "")
                    if choice.finish_reason:
                        finished = True
                    if text or choice.finish_reason:
                        yield Chunk(
                            text=text, model=event.model or "", finish_reason=choice.finish_reason
                        )
    except (openai.OpenAIError, httpx2.HTTPError) as exc:
        timed_out = isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException)
        broken = isinstance(exc, openai.APIConnectionError | httpx2.TransportError)
        if streaming and broken and not timed_out:
            # The server answered, then the connection died mid-reply.
            raise StreamBroken() from exc
        raise translate(exc, model=model) from exc
    if not finished:
        raise StreamBroken()
