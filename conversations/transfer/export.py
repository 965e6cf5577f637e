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

import base64
import csv
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from conversations.attachments import selectors as attachment_selectors
from conversations.chat import selectors
from conversations.models import Attachment, Conversation, Message
from conversations.text import one_line

if TYPE_CHECKING:
    pass

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
    # Each batch: one query for its messages, one for their attachments.
    messages = Prefetch(
        "messages",
        queryset=Message.objects.order_by("created", "id").prefetch_related("attachments"),
    )
    qs = queryset.select_related("owner").prefetch_related(None).prefetch_related(messages)
    if not qs.ordered:
        qs = qs.order_by("pk")
    # With a chunk size, iterator() runs the prefetch once per chunk rather than never.
    return qs.iterator(chunk_size=batch_size or BATCH_SIZE)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def attachment_to_dict(attachment: Attachment) -> dict[str, Any]:
    """One attachment as it appears in the JSON export: its file inline, in base64."""
    return {
        "kind": attachment.kind,
        "name": attachment.name,
        "content_type": attachment.content_type,
        "caption": attachment.caption,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "width": attachment.width,
        "height": attachment.height,
        "pages": attachment.pages,
        "created": _iso(attachment.created),
        "data": base64.b64encode(attachment_selectors.attachment_bytes(attachment)).decode("ascii"),
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    """One message as it appears in the JSON export (with "attachments" when it has any)."""
    found = _message_fields(message)
    attachments = list(message.attachments.all())
    if attachments:
        found["attachments"] = [attachment_to_dict(a) for a in attachments]
    return found


def _message_fields(message: Message) -> dict[str, Any]:
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
        # A reasoning model's thinking, apart from the answer, with its times and tokens.
        "reasoning": message.reasoning,
        "reasoning_started": _iso(message.reasoning_started),
        "reasoning_ended": _iso(message.reasoning_ended),
        "reasoning_tokens": message.reasoning_tokens,
        # The documents and passages a reply was given, as its footer names them.
        "sources": [
            {"name": source.get("name", ""), "passages": source.get("passages", "")}
            for source in message.sources
        ],
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


# A spreadsheet takes a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    """`value` safe to open in a spreadsheet: text that would start a formula gets a `'`.

    As OWASP recommends for CSV injection; numbers and None are written as they are. Only
    the CSV export does this: the JSON export (the one re-imported) stays exact.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class _Echo:
    """A file that hands back what is written to it, so csv.writer makes strings."""

    def write(self, value: str) -> str:
        return value


def export_csv(queryset: QuerySet[Conversation], *, batch_size: int | None = None) -> Iterator[str]:
    """Yield a CSV export of `queryset`: a header, then one row per message.

    Fields are quoted as needed (RFC 4180), so commas, quotes and newlines in message text
    survive; rows end in CRLF. Conversations without messages have no rows. Text cells
    starting with =, +, -, @, a tab or a carriage return get a leading `'` so that a
    spreadsheet shows them rather than running them as formulas (`_csv_cell`).
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation in _iter_conversations(queryset, batch_size=batch_size):
        owner = conversation.owner.get_username()
        rows = [
            writer.writerow(
                _csv_cell(cell)
                for cell in [
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


def _quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines() or [""])


def _excerpt(message: Message, width: int = 60) -> str:
    text = one_line(message.content) or "(no text)"
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


def _markdown_reasoning(message: Message) -> str:
    """The thinking as a <details> block: folded where Markdown viewers render HTML."""
    seconds = message.reasoning_seconds
    title = f"Thought for {seconds} s" if seconds else "Thoughts"
    if message.reasoning_tokens:
        title += f" ({message.reasoning_tokens} tokens)"
    # Its own text cannot close the block early.
    body = message.reasoning.strip("\n").replace("</details", "&lt;/details")
    return f"<details>\n<summary>{title}</summary>\n\n{body}\n\n</details>"


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
    if message.reasoning:
        parts += [_markdown_reasoning(message), ""]
    parts.append(message.content.strip("\n") if message.content else "*(no text)*")
    attachments = list(message.attachments.all())
    if attachments:
        # By name: the files are in the JSON export (and on the conversation's page).
        parts += ["", *(f"- Attached: {_attachment_line(a)}" for a in attachments)]
    if message.error:
        parts += ["", _quote(f"**Error:** {message.error}")]
    return "\n".join(parts) + "\n"


def _attachment_line(attachment: Attachment) -> str:
    name = attachment.name.replace("\\", "\\\\").replace("]", "\\]").replace("[", "\\[")
    target = quote(attachment.name)
    line = f"[{name}]({target}) ({attachment.content_type}, {attachment.size:,} bytes"
    if attachment.pages:
        line += f", {attachment.pages} pages"
    line += ")"
    if attachment.caption:
        line += f" — {one_line(attachment.caption)}"
    return line


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
    parts = [f"# {one_line(str(conversation))}", "", " · ".join(meta), ""]
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


# --- Import ---------------------------------------------------------------------------
