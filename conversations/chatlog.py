"""The append-only chat log: one line per event in CHAT_LOG_FILE, a short line on the console.

File lines look like
`2026-11-25T13:44:02.123+00:00 INFO event=reply user="alice" conversation=12 message=34 ...
text="line one\\nline two"`: every value is either a number or a JSON string, so one event
is always one line and the file can be parsed back.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Conversation, Message

logger = logging.getLogger("chatsite.chat")

# The id of the request being served (RequestIdMiddleware sets it), for log records.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="-"
)

FIELDS = (
    "event",
    "user",
    "conversation",
    "message",
    "role",
    "model",
    "status",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "total_ms",
    # A reply's thinking: how long it is and its tokens, never its text (it is the
    # model's scratch work, not what was said).
    "reasoning_chars",
    "reasoning_tokens",
    "error",
    "text",
)


def _event(message: Message, *, event: str, username: str) -> dict[str, Any]:
    return {
        "event": event,
        "user": username,
        "conversation": message.conversation_id,
        "message": message.pk,
        "role": message.role,
        "model": message.model,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "ttft_ms": message.ttft_ms,
        "total_ms": message.total_ms,
        "reasoning_chars": len(message.reasoning) if message.reasoning else None,
        "reasoning_tokens": message.reasoning_tokens,
        "error": message.error,
        "text": message.content,
    }


def log_message(message: Message, *, username: str) -> None:
    """Record a saved user message, or a reply that has ended, whatever way it ended.

    A user message's attachments are listed (name, type, size, sha256), never their bytes.
    """
    event = "message" if message.role == message.Role.USER else "reply"
    level = logging.WARNING if message.status in ("error", "interrupted") else logging.INFO
    data = _event(message, event=event, username=username)
    if message.role == message.Role.USER:
        attachments = _attachments(message)
        if attachments:
            data["attachments"] = json.dumps(attachments, ensure_ascii=False)
    logger.log(level, "%s %s", event, message.pk, extra={"chat": data})


def _attachments(message: Message) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "type": a.content_type, "size": a.size, "sha256": a.sha256}
        for a in message.attachments.all()
    ]


def log_import(conversation: Conversation, *, username: str, messages: int) -> None:
    """Record a conversation imported from an export (ChatGPT's or chatsite's)."""
    logger.info(
        "import %s",
        conversation.pk,
        extra={
            "chat": {
                "event": "import",
                "user": username,
                "conversation": conversation.pk,
                "model": conversation.model,
                "status": "imported",
                "messages": messages,
                "external_id": conversation.external_id,
                "text": conversation.title,
            }
        },
    )


def log_deleted(*, username: str, conversation_id: int, title: str, message_count: int) -> None:
    """Record that a user deleted a conversation (the log keeps what it said)."""
    logger.info(
        "deleted conversation %s",
        conversation_id,
        extra={
            "chat": {
                "event": "deleted",
                "user": username,
                "conversation": conversation_id,
                "title": title,
                "messages": message_count,
            }
        },
    )


# Line breaks to str.splitlines() (and to many log viewers) that JSON leaves raw when it
# keeps non-ASCII text readable: written raw, a message could forge a line of its own.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False).translate(_LINE_BREAKS)


class FileFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        data = getattr(record, "chat", None)
        if data is None:
            return f"{stamp} {record.levelname} msg={_value(record.getMessage())}"
        # Events with fields of their own (imports) add them after the usual ones.
        keys = [*FIELDS, *(key for key in data if key not in FIELDS)]
        pairs = " ".join(f"{key}={_value(data.get(key))}" for key in keys)
        return f"{stamp} {record.levelname} {pairs}"


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = getattr(record, "chat", None)
        if data is None:
            return record.getMessage()
        seconds = (data["total_ms"] or 0) / 1000
        tokens = data["completion_tokens"]
        return (
            f"chat: {data['user']} conversation={data['conversation']} reply={data['message']} "
            f"{data['status']} model={data['model'] or '-'} "
            f"tokens={tokens if tokens is not None else '-'} {seconds:.1f}s"
        )


class TurnEndFilter(logging.Filter):
    """Console: one concise line per turn, when the reply ends."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "chat", None)
        return data is None or data.get("event") == "reply"


def parse_line(line: str) -> dict[str, Any]:
    """Read one file line back into a dict (used by tests and handy for tooling)."""
    stamp, level, rest = line.rstrip("\n").split(" ", 2)
    decoder = json.JSONDecoder()
    out: dict[str, Any] = {"timestamp": stamp, "level": level}
    i = 0
    while i < len(rest):
        eq = rest.index("=", i)
        key = rest[i:eq].strip()
        j = eq + 1
        if rest.startswith('"', j):
            value, j = decoder.raw_decode(rest, j)
        else:
            end = rest.find(" ", j)
            end = len(rest) if end == -1 else end
            raw = rest[j:end]
            value = None if raw == "-" else int(raw) if raw.lstrip("-").isdigit() else raw
            j = end
        out[key] = value
        i = j + 1
    return out


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record: the request's own (django.request records carry
    the request), else the one being served in this context, else "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        request_id = getattr(request, "id", None)
        record.request_id = request_id if isinstance(request_id, str) else current_request_id.get()
        return True
