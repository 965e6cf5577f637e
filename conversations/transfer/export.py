"""Exporting conversations (JSON, CSV, Markdown) and importing the JSON export back.

Exports are generators of text chunks, made to be streamed. Conversations are read with
`.iterator()` and their messages fetched one batch of conversations at a time, so an export
of any size holds one batch in memory and costs one query per batch (plus the one that
walks the conversations), however many conversations are selected.

The JSON export is the archive format: everything is in it, and
`conversations_import_json` recreates it, in this database or another, as often as wanted
without duplicating anything.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import selectors
from .models import Conversation, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User

FORMAT = "chatsite-export"
VERSION = 1
# Conversations per batch: one query fetches the messages of a whole batch.
BATCH_SIZE = 100
FILENAME_PREFIX = "chatsite-conversations"

CSV_COLUMNS = [
    "conversation_id",
    "conversation_title",
    "owner",
    "message_id",
    "parent_id",
    "role",
    "status",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "total_ms",
    "created",
    "content",
    "error",
]


# --- Export ---------------------------------------------------------------------------


def _iter_conversations(
    queryset: QuerySet[Conversation], *, batch_size: int | None
) -> Iterator[Conversation]:
    """The conversations of `queryset` with owner and messages, fetched batch by batch."""
    messages = Prefetch("messages", queryset=Message.objects.order_by("created", "id"))
    qs = queryset.select_related("owner").prefetch_related(None).prefetch_related(messages)
    if not qs.ordered:
        qs = qs.order_by("pk")
    # With a chunk size, iterator() runs the prefetch once per chunk rather than never.
    return qs.iterator(chunk_size=batch_size or BATCH_SIZE)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_to_dict(message: Message) -> dict[str, Any]:
    """One message as it appears in the JSON export."""
    return {
        "id": message.pk,
        "parent_id": message.parent_id,
        "role": message.role,
        "status": message.status,
        "content": message.content,
        "error": message.error,
        "model": message.model,
        "system_prompt": message.system_prompt,
        "temperature": message.temperature,
        "max_tokens": message.max_tokens,
        "omitted": message.omitted,
        "external_id": message.external_id,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "ttft_ms": message.ttft_ms,
        "total_ms": message.total_ms,
        "created": _iso(message.created),
        "updated": _iso(message.updated),
    }


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    """One conversation, with all its messages in order, as it appears in the JSON export."""
    return {
        "id": conversation.pk,
        "owner": conversation.owner.get_username(),
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "title_set_by_user": conversation.title_set_by_user,
        "temperature": conversation.temperature,
        "max_tokens": conversation.max_tokens,
        "external_id": conversation.external_id,
        # The exported id of the last message of the branch shown (None: the newest).
        "current": conversation.current_id,
        "created": _iso(conversation.created),
        "updated": _iso(conversation.updated),
        "messages": [message_to_dict(m) for m in conversation.messages.all()],
    }


def export_json(
    queryset: QuerySet[Conversation], *, batch_size: int | None = None
) -> Iterator[str]:
    """Yield the JSON export of `queryset`, one conversation per chunk (and per line).

    The document is `{"format": "chatsite-export", "version": 1, "exported_at": ...,
    "conversations": [...]}`; each conversation carries its owner's username and every
    field of every message, which is what `conversations_import_json` reads back.
    """
    head = json.dumps({"format": FORMAT, "version": VERSION, "exported_at": _iso(timezone.now())})
    yield head[:-1] + ', "conversations": [\n'
    separator = ""
    for conversation in _iter_conversations(queryset, batch_size=batch_size):
        yield separator + json.dumps(conversation_to_dict(conversation), ensure_ascii=False)
        separator = ",\n"
    yield "\n]}\n"


class _Echo:
    """A file that hands back what is written to it, so csv.writer makes strings."""

    def write(self, value: str) -> str:
        return value


def export_csv(queryset: QuerySet[Conversation], *, batch_size: int | None = None) -> Iterator[str]:
    """Yield a CSV export of `queryset`: a header, then one row per message.

    Fields are quoted as needed (RFC 4180), so commas, quotes and newlines in message text
    survive; rows end in CRLF. Conversations without messages have no rows.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation in _iter_conversations(queryset, batch_size=batch_size):
        owner = conversation.owner.get_username()
        rows = [
            writer.writerow(
                [
                    conversation.pk,
                    conversation.title,
                    owner,
                    m.pk,
                    m.parent_id,
                    m.role,
                    m.status,
                    m.model,
                    m.prompt_tokens,
                    m.completion_tokens,
                    m.ttft_ms,
                    m.total_ms,
                    _iso(m.created),
                    m.content,
                    m.error,
                ]
            )
            for m in conversation.messages.all()
        ]
        if rows:
            yield "".join(rows)


def _when(value: datetime) -> str:
    try:
        local = timezone.localtime(value)
    except OverflowError:  # within a day of year 1 or 9999 (an imported date): off the calendar
        local = value.astimezone(UTC)
    return local.strftime("%Y-%m-%d %H:%M %Z")


def _duration(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines() or [""])


def _excerpt(message: Message, width: int = 60) -> str:
    text = _one_line(message.content) or "(no text)"
    return f"“{text[: width - 1]}…”" if len(text) > width else f"“{text}”"


def _alternative(
    message: Message, children: dict[int | None, list[Message]], by_id: dict[int, Message]
) -> str:
    """E.g. 'Reply 2 of 3 to “How?”': which alternative `message` is, of what."""
    same = [m for m in children.get(message.parent_id, []) if m.role == message.role]
    place = f"{same.index(message) + 1} of {len(same)}"
    parent = by_id.get(message.parent_id) if message.parent_id is not None else None
    if message.role == Message.Role.ASSISTANT:
        return f"Reply {place}" + (f" to {_excerpt(parent)}" if parent is not None else "")
    if parent is None:
        return f"First question, version {place}"
    return f"Question {place} after {_excerpt(parent)}"


def _markdown_message(message: Message, *, level: int = 2, note: str = "") -> str:
    heading = "#" * level + (" You" if message.role == Message.Role.USER else " Assistant")
    notes = [message.get_status_display().lower()] if message.status != "complete" else []
    notes += [note] if note else []
    if notes:
        heading += f" ({'; '.join(notes)})"
    details = []
    if message.model and message.role == Message.Role.ASSISTANT:
        details.append(f"`{message.model}`")
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        details.append(
            f"{message.prompt_tokens or 0} prompt + {message.completion_tokens or 0} "
            "completion tokens"
        )
    if message.ttft_ms is not None:
        details.append(f"first token after {_duration(message.ttft_ms)}")
    if message.total_ms is not None:
        details.append(f"{_duration(message.total_ms)} in all")
    parts = [heading, ""]
    if details:
        parts += [" · ".join(details), ""]
    parts.append(message.content.strip("\n") if message.content else "*(no text)*")
    if message.error:
        parts += ["", _quote(f"**Error:** {message.error}")]
    return "\n".join(parts) + "\n"


def _markdown_conversation(conversation: Conversation) -> str:
    messages = list(conversation.messages.all())
    meta = [f"Owner: {conversation.owner.get_username()}"]
    if conversation.model:
        meta.append(f"Model: `{conversation.model}`")
    meta += [
        f"Started: {_when(conversation.created)}",
        f"Last activity: {_when(conversation.updated)}",
        f"{len(messages)} message{'s' if len(messages) != 1 else ''}",
    ]
    parts = [f"# {_one_line(str(conversation))}", "", " · ".join(meta), ""]
    if conversation.system_prompt:
        parts += [_quote(f"**System prompt:** {conversation.system_prompt}"), ""]
    # The branch shown is the transcript; the alternatives (regenerated replies, edited
    # questions) follow it, each saying what it answers, so none reads as a continuation.
    shown = selectors.thread(conversation=conversation)
    for m in shown:
        versions = m.versions
        note = (
            f"version {versions.index} of {versions.count}"
            if versions and versions.count > 1
            else ""
        )
        parts.append(_markdown_message(m, note=note))
    on_path = {m.pk for m in shown}
    others = [m for m in messages if m.pk not in on_path]
    if not others:
        return "\n".join(parts)
    by_id = {m.pk: m for m in messages}
    children: dict[int | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id, []).append(m)
    parts += ["## Other versions", ""]
    for root in others:
        if root.parent_id is not None and root.parent_id not in on_path:
            continue
        parts += [f"### {_alternative(root, children, by_id)}", ""]
        # The whole branch under it, depth first; a message that does not follow the one
        # written just before it says which alternative it is.
        previous: Message | None = None
        stack = [root]
        while stack:
            m = stack.pop()
            note = ""
            if previous is not None and m.parent_id != previous.pk:
                note = _alternative(m, children, by_id)
            parts.append(_markdown_message(m, level=4, note=note))
            previous = m
            stack.extend(reversed(children.get(m.pk, [])))
    return "\n".join(parts)


def export_markdown(
    queryset: QuerySet[Conversation], *, batch_size: int | None = None
) -> Iterator[str]:
    """Yield a readable Markdown transcript of `queryset`, one conversation per chunk.

    Each conversation is a `# title`, a line of metadata, the system prompt, then the
    branch shown, each message under `## You` or `## Assistant` (with "version 1 of 2"
    when it has alternatives, its status when not complete, model, tokens and timings) and
    its text as written; error text is quoted below the message. Then, under `## Other
    versions`, each alternative branch headed by what it is ("Reply 2 of 2 to “…”").
    Conversations are separated by a horizontal rule.
    """
    separator = ""
    for conversation in _iter_conversations(queryset, batch_size=batch_size):
        yield separator + _markdown_conversation(conversation)
        separator = "\n---\n\n"


Exporter = Callable[..., Iterator[str]]

EXPORT_FORMATS: dict[str, tuple[Exporter, str, str]] = {
    "json": (export_json, "application/json; charset=utf-8", "json"),
    "csv": (export_csv, "text/csv; charset=utf-8", "csv"),
    "markdown": (export_markdown, "text/markdown; charset=utf-8", "md"),
}


def export_filename(extension: str, *, prefix: str = FILENAME_PREFIX) -> str:
    """E.g. `chatsite-conversations-20250131-142501.json`, in the server's time zone."""
    return f"{prefix}-{timezone.localtime():%Y%m%d-%H%M%S}.{extension}"


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Every step runs in the request's one sync thread, so the generator keeps using the
    # same database connection (and, on PostgreSQL, the same open cursor).
    step = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    while (chunk := await step()) is not None:
        yield chunk


def export_response(
    queryset: QuerySet[Conversation],
    *,
    fmt: str,
    request: HttpRequest | None = None,
    filename_prefix: str = FILENAME_PREFIX,
) -> StreamingHttpResponse:
    """A streamed download of `queryset` in `fmt` ("json", "csv" or "markdown").

    Pass the request: under ASGI the chunks are then produced by an async iterator, without
    which Django would build the whole export in memory before sending a byte.
    """
    exporter, content_type, extension = EXPORT_FORMATS[fmt]
    chunks: Iterator[str] = exporter(queryset)
    body: Iterator[str] | AsyncIterator[str] = (
        _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    )
    response = StreamingHttpResponse(body, content_type=content_type)
    filename = export_filename(extension, prefix=filename_prefix)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


# --- Import ---------------------------------------------------------------------------


class ImportFormatError(ValueError):
    """The data as a whole is not a chatsite export this version can read."""


class _Invalid(Exception):
    """One conversation entry cannot be imported; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A conversation entry that was not imported."""

    entry: int  # 1-based position in the export's "conversations" list
    title: str
    source_id: Any
    messages: int
    reason: str
    # True when it was skipped because it is already there, False when it was unusable.
    duplicate: bool


@dataclass
class ImportResult:
    """What an import did: counts, and every skipped entry with the reason."""

    conversations_imported: int = 0
    messages_imported: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def conversations_skipped(self) -> int:
        return len(self.skipped)

    @property
    def messages_skipped(self) -> int:
        return sum(s.messages for s in self.skipped)

    @property
    def duplicates(self) -> list[Skipped]:
        return [s for s in self.skipped if s.duplicate]

    @property
    def errors(self) -> list[Skipped]:
        return [s for s in self.skipped if not s.duplicate]

    def report(self) -> list[str]:
        """The result as lines of text for people."""
        lines = [
            f"Imported {self.conversations_imported} conversation(s) with "
            f"{self.messages_imported} message(s).",
            f"Skipped {self.conversations_skipped} conversation(s) with "
            f"{self.messages_skipped} message(s): {len(self.duplicates)} already present, "
            f"{len(self.errors)} invalid.",
        ]
        for s in self.skipped:
            label = f"entry {s.entry}"
            if s.source_id is not None:
                label += f" (id {s.source_id})"
            if s.title:
                label += f" {s.title!r}"
            kind = "already present" if s.duplicate else "invalid"
            lines.append(f"  {label}: {kind}: {s.reason}")
        return lines


@dataclass
class _Entry:
    owner: str | None
    conversation: Conversation
    # (source id, source parent id or None, unsaved message), in the order to create them.
    messages: list[tuple[Any, Any, Message]]
    # The source id of the last message of the branch shown (None: the newest).
    current: Any = None


def _load(data: Any) -> dict[str, Any]:
    if hasattr(data, "read"):
        data = data.read()
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ImportFormatError(f"Not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportFormatError(f'Not a chatsite export (no "format": "{FORMAT}").')
    version = data.get("version")
    if version != VERSION:
        raise ImportFormatError(
            f"Export version {version!r} is not supported; this server reads version {VERSION}."
        )
    if not isinstance(data.get("conversations"), list):
        raise ImportFormatError('"conversations" must be a list.')
    return data


# Dates outside these are taken as corrupt: far-future ones overflow date arithmetic later
# (the sidebar's grouping), and nothing was written before 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _timestamp(value: Any, what: str) -> datetime:
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _Invalid(f"{what} is not a date and time: {value!r}")
    try:
        # Exports always carry an offset; a hand-made file without one is taken as UTC.
        parsed = parsed.astimezone(UTC) if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    except OverflowError:
        parsed = None
    if parsed is None or not EARLIEST <= parsed < LATEST:
        raise _Invalid(f"{what} is out of range (1970 to 9000): {value!r}")
    return parsed


def clean_text(value: str) -> str:
    """`value` without NUL characters, which PostgreSQL refuses in text."""
    return value.replace("\x00", "")


def _text(raw: dict[str, Any], key: str, what: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{what}: {key} is not text")
    return clean_text(value)


def _number(raw: dict[str, Any], key: str, what: str, kind: type[Any]) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{what}: {key} is not a number")
    if kind is int and (not float(value).is_integer()):
        raise _Invalid(f"{what}: {key} is not a whole number")
    if not math.isfinite(value):
        raise _Invalid(f"{what}: {key} is not a finite number")
    return kind(value)


def _id(value: Any) -> bool:
    """Whether `value` can be a message id of an export (an int or a str)."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _validate(instance: Conversation | Message, what: str, exclude: list[str]) -> None:
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()
        )
        raise _Invalid(f"{what}: {problems}") from exc


def _parse_message(raw: Any, position: int) -> tuple[Any, Any, Message]:
    what = f"message {position}"
    if not isinstance(raw, dict):
        raise _Invalid(f"{what} is not an object")
    source_id = raw.get("id")
    if not _id(source_id):
        raise _Invalid(f"{what} has no usable id")
    what = f"message {position} (id {source_id})"
    parent_id = raw.get("parent_id")
    if parent_id is not None and not _id(parent_id):
        raise _Invalid(f"{what}: parent_id is not a message id: {parent_id!r}")
    created = _timestamp(raw.get("created"), f"{what}: created")
    updated = _timestamp(raw["updated"], f"{what}: updated") if raw.get("updated") else created
    status = raw.get("status", Message.Status.COMPLETE)
    if not isinstance(status, str):
        raise _Invalid(f"{what}: status is not text")
    # Nothing is generating an imported reply; left in flight it would look stuck.
    if status in Message.IN_FLIGHT:
        status = Message.Status.INTERRUPTED
    omitted = _number(raw, "omitted", what, int)
    message = Message(
        role=_text(raw, "role", what),
        status=status,
        content=_text(raw, "content", what),
        error=_text(raw, "error", what),
        model=_text(raw, "model", what),
        system_prompt=_text(raw, "system_prompt", what),
        temperature=_number(raw, "temperature", what, float),
        max_tokens=_number(raw, "max_tokens", what, int),
        omitted=omitted if omitted is not None else 0,
        external_id=_text(raw, "external_id", what),
        prompt_tokens=_number(raw, "prompt_tokens", what, int),
        completion_tokens=_number(raw, "completion_tokens", what, int),
        ttft_ms=_number(raw, "ttft_ms", what, int),
        total_ms=_number(raw, "total_ms", what, int),
        created=created,
        updated=updated,
    )
    _validate(message, what, exclude=["conversation", "parent"])
    return source_id, parent_id, message


def _parse_entry(raw: Any) -> _Entry:
    if not isinstance(raw, dict):
        raise _Invalid("not an object")
    created = _timestamp(raw.get("created"), "created")
    updated = _timestamp(raw["updated"], "updated") if raw.get("updated") else created
    what = "conversation"
    title_set_by_user = raw.get("title_set_by_user", False)
    if not isinstance(title_set_by_user, bool):
        raise _Invalid("conversation: title_set_by_user is not true or false")
    conversation = Conversation(
        title=_text(raw, "title", what),
        model=_text(raw, "model", what),
        system_prompt=_text(raw, "system_prompt", what),
        title_set_by_user=title_set_by_user,
        temperature=_number(raw, "temperature", what, float),
        max_tokens=_number(raw, "max_tokens", what, int),
        external_id=_text(raw, "external_id", what),
        created=created,
        updated=updated,
    )
    _validate(conversation, what, exclude=["owner", "current"])
    raw_messages = raw.get("messages")
    if not isinstance(raw_messages, list):
        raise _Invalid('"messages" is not a list')
    messages = [_parse_message(m, i) for i, m in enumerate(raw_messages, start=1)]
    ids = {source_id for source_id, _, _ in messages}
    if len(ids) != len(messages):
        raise _Invalid("two messages have the same id")
    for source_id, parent_id, _ in messages:
        if parent_id is not None and parent_id not in ids:
            raise _Invalid(f"message {source_id}: parent {parent_id!r} is not in this conversation")
    current = raw.get("current")
    if current is not None and (not _id(current) or current not in ids):
        raise _Invalid(f"current {current!r} is not a message of this conversation")
    # Threads are ordered by (created, id) and new ids follow creation order, so messages are
    # created by time; the sort is stable, keeping the export's order for equal timestamps.
    messages.sort(key=lambda m: m[2].created)
    owner = raw.get("owner")
    return _Entry(
        owner=owner if isinstance(owner, str) and owner else None,
        conversation=conversation,
        messages=messages,
        current=current,
    )


def _create(entry: _Entry, owner: User) -> None:
    conversation = entry.conversation
    messages = [message for _, _, message in entry.messages]
    # auto_now(_add) overwrites timestamps on save and bulk_create, so they are written
    # back afterwards with update() / bulk_update(), which leave them alone.
    stamps = [(conversation.created, conversation.updated)] + [
        (m.created, m.updated) for m in messages
    ]
    conversation.owner = owner
    conversation.save()
    created, updated = stamps[0]
    Conversation.objects.filter(pk=conversation.pk).update(created=created, updated=updated)
    conversation.created, conversation.updated = created, updated
    if not messages:
        return
    for message in messages:
        message.conversation = conversation
    if connection.features.can_return_rows_from_bulk_insert:
        Message.objects.bulk_create(messages, batch_size=500)
    else:
        for message in messages:
            message.save()
    by_source = {source_id: message for source_id, _, message in entry.messages}
    for (_, parent_id, message), (created, updated) in zip(entry.messages, stamps[1:], strict=True):
        message.parent = by_source[parent_id] if parent_id is not None else None
        message.created, message.updated = created, updated
    Message.objects.bulk_update(messages, ["parent", "created", "updated"], batch_size=500)
    if entry.current is not None:
        conversation.current = by_source[entry.current]
        Conversation.objects.filter(pk=conversation.pk).update(current=conversation.current)


def _skipped(position: int, raw: Any, reason: str, *, duplicate: bool = False) -> Skipped:
    info = raw if isinstance(raw, dict) else {}
    title = info.get("title")
    messages = info.get("messages")
    return Skipped(
        entry=position,
        title=title if isinstance(title, str) else "",
        source_id=info.get("id"),
        messages=len(messages) if isinstance(messages, list) else 0,
        reason=reason,
        duplicate=duplicate,
    )


def conversations_import_json(*, data: Any, owner: User | None = None) -> ImportResult:
    """Recreate the conversations of a JSON export; return what was imported and skipped.

    `data` is the export: a parsed dict, its JSON text (str or bytes), or a file-like
    object to read it from. Raises ImportFormatError when it is not a chatsite export.

    Each conversation goes to `owner` if given, else to the user with the username it was
    exported with (an unknown username makes the entry invalid). Titles, settings, every
    message field and all timestamps are kept; reply-to links and the branch shown
    (`current`) are remapped to the new messages. NUL characters are dropped from text.
    Replies exported while still generating come back as interrupted.

    Importing is idempotent: a conversation is skipped as already present when its target
    owner has one with the same `external_id` (when it has one: a ChatGPT id, say), else
    with the same title and start time (`created`, to the microsecond). Exports made
    before `current`, the settings and the external ids were written import too.
    Every entry is imported in a transaction of its own: an invalid entry is skipped,
    whole, with the reason, and the others are imported.
    """
    document = _load(data)
    result = ImportResult()
    owners: dict[str, User | None] = {}
    for position, raw in enumerate(document["conversations"], start=1):
        conversation_import_entry(
            raw=raw, position=position, owner=owner, result=result, owners=owners
        )
    return result


def conversation_import_entry(
    *,
    raw: Any,
    position: int,
    owner: User | None,
    result: ImportResult,
    owners: dict[str, User | None] | None = None,
) -> Conversation | None:
    """Import one entry of a JSON export's "conversations" (see conversations_import_json).

    Adds what happened to `result`; returns the new conversation, or None when skipped.
    `owners` caches username lookups across the entries of one import.
    """
    try:
        return _import_entry(raw=raw, position=position, owner=owner, result=result, owners=owners)
    except _Invalid as exc:
        reason = str(exc)
    except (TypeError, ValueError, OverflowError) as exc:
        # Whatever the checks above missed: this entry is unusable, the next may be fine.
        reason = f"unreadable: {exc}"
    except DatabaseError as exc:
        reason = f"the database refused it: {exc}"
    result.skipped.append(_skipped(position, raw, reason))
    return None


def _import_entry(
    *,
    raw: Any,
    position: int,
    owner: User | None,
    result: ImportResult,
    owners: dict[str, User | None] | None,
) -> Conversation | None:
    owners = owners if owners is not None else {}
    user_model = get_user_model()
    entry = _parse_entry(raw)

    target = owner
    if target is None:
        if entry.owner is None:
            reason = 'no "owner" username (import it with an owner instead)'
            result.skipped.append(_skipped(position, raw, reason))
            return None
        if entry.owner not in owners:
            owners[entry.owner] = user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: entry.owner}
            ).first()
        target = owners[entry.owner]
        if target is None:
            reason = f"owner {entry.owner!r} does not exist here (import it with an owner)"
            result.skipped.append(_skipped(position, raw, reason))
            return None

    same = Conversation.objects.filter(owner=target)
    if entry.conversation.external_id:
        # Unique per owner: a ChatGPT import, moved here through an export, is found by it.
        same = same.filter(external_id=entry.conversation.external_id)
    else:
        same = same.filter(title=entry.conversation.title, created=entry.conversation.created)
    existing = same.values_list("pk", flat=True).first()
    if existing is not None:
        reason = f"{target.get_username()} already has it (conversation {existing})"
        result.skipped.append(_skipped(position, raw, reason, duplicate=True))
        return None

    try:
        with transaction.atomic():
            _create(entry, target)
    except IntegrityError:
        # The same external id, imported meanwhile by another upload.
        reason = f"{target.get_username()} already has it"
        result.skipped.append(_skipped(position, raw, reason, duplicate=True))
        return None
    result.conversations_imported += 1
    result.messages_imported += len(entry.messages)
    return entry.conversation
