"""What every backend and every caller of a language model share: pieces and errors.

A backend streams `Chunk`s and raises `LLMError`s whose `user_message` a person can read
and act on. Nothing here knows a backend, a model row or a request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

# Re-exported: backends import nothing of the project but this module.
from conversations.text import strip_nul as strip_nul


class LLMError(Exception):
    """A model call failed; `user_message` is safe and useful to show in the chat."""

    default_message = "The model server returned an error."

    def __init__(self, user_message: str | None = None) -> None:
        # Provider text can hold NUL, which PostgreSQL refuses to store.
        self.user_message = strip_nul(user_message or self.default_message)
        super().__init__(self.user_message)


class NotConfigured(LLMError):
    default_message = (
        "No language model is configured. Set OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL "
        "(for Ollama, vLLM, llama.cpp or LM Studio) in .env and restart the server. "
        "See “Connecting a model” in the README."
    )


class BadCredentials(LLMError):
    default_message = (
        "The model server rejected the API key. Check OPENAI_API_KEY and restart the server."
    )


class RateLimited(LLMError):
    default_message = "The model provider is rate limiting requests. Wait a moment, then retry."


class TimedOut(LLMError):
    default_message = "The model server took too long to answer."


class Unreachable(LLMError):
    default_message = "Cannot reach the model server."


class ServerError(LLMError):
    default_message = "The model server had an internal error. Retry in a moment."


class ModelNotFound(LLMError):
    default_message = "The model was not found on the model server."


class BadRequest(LLMError):
    default_message = "The model server refused the request."


class StreamBroken(LLMError):
    default_message = (
        "The connection to the model server broke before the reply was finished. "
        "The text so far is kept; retry to get a full reply."
    )


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed reply: text, and on the last pieces usage and the finish reason.

    `reasoning` is a reasoning model's thinking, apart from the answer's `text`. `rethink`:
    the text given so far (all of it) was reasoning, not answer (a `</think>` with no
    `<think>` before it, see `llm.thinking`); `reasoning` then continues it.
    """

    text: str = ""
    reasoning: str = ""
    rethink: bool = False
    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Of the completion tokens, how many were reasoning (as the server counted them).
    reasoning_tokens: int | None = None
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


class Backend(Protocol):
    """What `registry` asks of a backend module (`backends.openai`, `backends.local`)."""

    def stream_chat(
        self,
        *,
        messages: Iterable[dict[str, str]],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
    ) -> AsyncIterator[Chunk]: ...
