"""Which backends and models there are, and the calls that go to whichever serves a model.

Two backends answer behind the same interface: OpenAI or any OpenAI-compatible server
(`backends.openai`: Ollama, vLLM, llama.cpp, LM Studio), and a GGUF model run by
llama.cpp in a process of its own (`backends.local`). The rest of the project asks
here: the models on offer, the default one, token counts, and `stream_chat`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from typing import Any

from django.conf import settings

from . import vision
from .backends import local
from .base import LOCAL_PREFIX, Backend, BadRequest, Chunk, LLMError, ModelOption, NotConfigured
from .thinking import ThinkSplitter


def _remote() -> Any:
    """The OpenAI-compatible backend, imported on first use: the SDK is most of what a
    server imports at start (chatsite/asgi.py imports it once the server is up)."""
    from .backends import openai

    return openai


def remote_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def default_backend() -> str:
    """The backend of new conversations: LLM_BACKEND, or for "auto" the configured one."""
    if settings.LLM_BACKEND != "auto":
        return str(settings.LLM_BACKEND)
    return "openai" if remote_configured() else "local"


def _local_option() -> ModelOption | None:
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
    The disk is looked at once per process and settings (see `refresh`); the rest is read
    from the settings, and the local window as its server last reported it, every call.
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


def refresh() -> None:
    """Look for the local model (its file, llama.cpp, the self-test) again next time.

    Changed settings look again by themselves; an install while the server runs needs
    this or a restart.
    """
    local.refresh()


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
        counted = local.count_tokens(list(messages))
        if counted is not None:
            return counted
    # Thinking sent back (CHAT_SEND_REASONING_BACK) takes room in the context too.
    return (
        sum(
            4 + (len((m.get("content", "") + m.get("reasoning_content", "")).encode()) + 2) // 3
            for m in messages
        )
        + 3
    )


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

    Reasoning comes apart from the answer (`Chunk.reasoning`) from every backend: what a
    server sends in a field of its own, and `<think>…</think>` in the text (`llm.thinking`).
    """
    messages = list(messages)
    backend: Backend
    if model_option(model).backend == "local":
        backend = local
    elif not remote_configured() or settings.LLM_BACKEND == "local":
        raise NotConfigured(_not_configured_message())
    else:
        backend = _remote()
    splitter = ThinkSplitter()
    try:
        async for chunk in backend.stream_chat(
            messages=messages, model=model, temperature=temperature, max_tokens=max_tokens
        ):
            if chunk.reasoning:
                splitter.no_rethink()
            if not chunk.text:
                yield chunk
                continue
            split = splitter.feed(chunk.text)
            if split.answer == chunk.text and not split.reasoning and not split.rethink:
                yield chunk  # the usual case, as it came: no copy per token
                continue
            shown = dataclasses.replace(
                chunk,
                text=split.answer,
                reasoning=chunk.reasoning + split.reasoning,
                rethink=split.rethink,
            )
            if shown.text or shown.reasoning or shown.rethink or shown != Chunk(model=chunk.model):
                yield shown
    except LLMError as exc:
        # What was held back (a possible tag's start) is kept with the text so far.
        held = splitter.flush()
        if held.answer or held.reasoning:
            yield Chunk(text=held.answer, reasoning=held.reasoning)
        if (
            isinstance(exc, BadRequest)
            and vision.has_image_parts(messages)
            and vision.mentions_images(exc.user_message)
        ):
            # A server that will not take images for this model: remembered (this
            # process), so that the next message with images is refused before any call.
            vision.remember_refusal(model)
            raise BadRequest(
                f"The model “{model}” does not take images. Choose a model that can see "
                f"images in Settings, then press Retry. ({exc.user_message})"
            ) from exc
        raise
    held = splitter.flush()
    if held.answer or held.reasoning:
        yield Chunk(text=held.answer, reasoning=held.reasoning)


def server_label() -> str:
    """Where remote requests go, for people (never with a key or password in it)."""
    return str(_remote().server_label())
