"""chatsite's own JSON export read back (see `export.export_json` for the format).

The export is streamed: its "conversations" are read and imported one at a time
(`document_import`), so memory stays flat whatever the size of the file.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction

from conversations.attachments import services as attachment_services
from conversations.llm import registry as llm
from conversations.models import Conversation, Message
from conversations.transfer import fields, limits
from conversations.transfer.export import FORMAT, VERSION
from conversations.transfer.jsonstream import JSONStream, JSONStreamError, StreamArray
from conversations.transfer.results import ImportFormatError, ImportResult, skipped
from conversations.transfer.saving import conversation_create

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass
class _Entry:
    owner: str | None
    conversation: Conversation
    # (source id, source parent id or None, unsaved message), in the order to create them.
    messages: list[tuple[Any, Any, Message]]
    # The source id of the last message of the branch shown (None: the newest).
    current: Any = None
    # Source message id -> its attachments, checked and prepared as uploads are.
    attachments: dict[Any, list[attachment_services.Prepared]] = field(default_factory=dict)


# The bounds of the per-conversation settings, as ConversationSettingsForm (conversations/
# forms.py) enforces them. forms.py has no constants for them and sits above this package
# in the import layers, so they are written once more here: keep the two in step.
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.0, 2.0
MAX_TOKENS_MIN, MAX_TOKENS_MAX = 1, 32768


def _settings_checked(conversation: Conversation) -> None:
    """Give an imported conversation only settings the settings form would accept.

    A model this server does not offer becomes the site's default model (as for ChatGPT
    imports); a temperature or a reply length out of the form's bounds becomes blank, the
    site's default. A file cannot choose what a user could not.
    """
    model = conversation.model
    if model:
        offered = {option.id for option in llm.available_models()}
        if model not in offered and model != llm.default_model():
            conversation.model = llm.default_model()
    temperature = conversation.temperature
    if temperature is not None and not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
        conversation.temperature = None
    max_tokens = conversation.max_tokens
    if max_tokens is not None and not MAX_TOKENS_MIN <= max_tokens <= MAX_TOKENS_MAX:
        conversation.max_tokens = None


def _validate(instance: Conversation | Message, what: str, exclude: list[str]) -> None:
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()
        )
        raise fields.Invalid(f"{what}: {problems}") from exc


def _parse_message(raw: Any, position: int) -> tuple[Any, Any, Message]:
    what = f"message {position}"
    if not isinstance(raw, dict):
        raise fields.Invalid(f"{what} is not an object")
    source_id = raw.get("id")
    if not fields.is_id(source_id):
        raise fields.Invalid(f"{what} has no usable id")
    what = f"message {position} (id {source_id})"
    parent_id = raw.get("parent_id")
    if parent_id is not None and not fields.is_id(parent_id):
        raise fields.Invalid(f"{what}: parent_id is not a message id: {parent_id!r}")
    created = fields.timestamp(raw.get("created"), f"{what}: created")
    updated = (
        fields.timestamp(raw["updated"], f"{what}: updated") if raw.get("updated") else created
    )
    status = raw.get("status", Message.Status.COMPLETE)
    if not isinstance(status, str):
        raise fields.Invalid(f"{what}: status is not text")
    # Nothing is generating an imported reply; left in flight it would look stuck.
    if status in Message.IN_FLIGHT:
        status = Message.Status.INTERRUPTED
    omitted = fields.number(raw, "omitted", what, int)
    message = Message(
        role=fields.text(raw, "role", what),
        status=status,
        content=fields.text(raw, "content", what),
        error=fields.text(raw, "error", what),
        model=fields.text(raw, "model", what),
        system_prompt=fields.text(raw, "system_prompt", what),
        temperature=fields.number(raw, "temperature", what, float),
        max_tokens=fields.number(raw, "max_tokens", what, int),
        omitted=omitted if omitted is not None else 0,
        external_id=fields.text(raw, "external_id", what),
        prompt_tokens=fields.number(raw, "prompt_tokens", what, int),
        completion_tokens=fields.number(raw, "completion_tokens", what, int),
        ttft_ms=fields.number(raw, "ttft_ms", what, int),
        total_ms=fields.number(raw, "total_ms", what, int),
        reasoning=fields.text(raw, "reasoning", what),
        reasoning_started=fields.optional_timestamp(raw, "reasoning_started", what),
        reasoning_ended=fields.optional_timestamp(raw, "reasoning_ended", what),
        reasoning_tokens=fields.number(raw, "reasoning_tokens", what, int),
        sources=fields.sources(raw, what),
        created=created,
        updated=updated,
    )
    _validate(message, what, exclude=["conversation", "parent"])
    return source_id, parent_id, message


def _parse_attachments(raw: dict[str, Any], what: str) -> list[attachment_services.Prepared]:
    """A message's exported attachments, each checked as an upload is (an image cleaned
    again, a document read again): one that is not good makes the whole entry invalid."""
    found = raw.get("attachments")
    if found is None:
        return []
    if not isinstance(found, list):
        raise fields.Invalid(f"{what}: attachments is not a list")
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if len(found) > limit:
        raise fields.Invalid(f"{what}: {len(found)} attachments; a message carries at most {limit}")
    prepared = []
    for index, item in enumerate(found, start=1):
        where = f"{what}: attachment {index}"
        if not isinstance(item, dict):
            raise fields.Invalid(f"{where} is not an object")
        name = attachment_services.clean_name(fields.text(item, "name", where))
        data = item.get("data")
        if not isinstance(data, str):
            raise fields.Invalid(f"{where} ({name}) has no data")
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise fields.Invalid(f"{where} ({name}): its data is not base64") from None
        caption = attachment_services.clean_caption(fields.text(item, "caption", where))
        try:
            prepared.append(attachment_services.prepare_data(content, name=name, caption=caption))
        except attachment_services.AttachmentRejected as exc:
            raise fields.Invalid(f"{where}: {exc.user_message}") from None
    return prepared


def _parse_entry(raw: Any) -> _Entry:
    if not isinstance(raw, dict):
        raise fields.Invalid("not an object")
    created = fields.timestamp(raw.get("created"), "created")
    updated = fields.timestamp(raw["updated"], "updated") if raw.get("updated") else created
    what = "conversation"
    title_set_by_user = raw.get("title_set_by_user", False)
    if not isinstance(title_set_by_user, bool):
        raise fields.Invalid("conversation: title_set_by_user is not true or false")
    conversation = Conversation(
        title=fields.text(raw, "title", what),
        model=fields.text(raw, "model", what),
        system_prompt=fields.text(raw, "system_prompt", what),
        title_set_by_user=title_set_by_user,
        temperature=fields.number(raw, "temperature", what, float),
        max_tokens=fields.number(raw, "max_tokens", what, int),
        external_id=fields.text(raw, "external_id", what),
        created=created,
        updated=updated,
    )
    _settings_checked(conversation)
    _validate(conversation, what, exclude=["owner", "current"])
    raw_messages = raw.get("messages")
    if not isinstance(raw_messages, list):
        raise fields.Invalid('"messages" is not a list')
    messages = [_parse_message(m, i) for i, m in enumerate(raw_messages, start=1)]
    attachments = {}
    for position, (source_id, _, message) in enumerate(messages, start=1):
        prepared = _parse_attachments(raw_messages[position - 1], f"message {position}")
        if prepared and message.role != Message.Role.USER:
            raise fields.Invalid(f"message {position}: only the user's messages carry attachments")
        if prepared:
            attachments[source_id] = prepared
    ids = {source_id for source_id, _, _ in messages}
    if len(ids) != len(messages):
        raise fields.Invalid("two messages have the same id")
    for source_id, parent_id, _ in messages:
        if parent_id is not None and parent_id not in ids:
            raise fields.Invalid(
                f"message {source_id}: parent {parent_id!r} is not in this conversation"
            )
    current = raw.get("current")
    if current is not None and (not fields.is_id(current) or current not in ids):
        raise fields.Invalid(f"current {current!r} is not a message of this conversation")
    # Threads are ordered by (created, id) and new ids follow creation order, so messages are
    # created by time; the sort is stable, keeping the export's order for equal timestamps.
    messages.sort(key=lambda m: m[2].created)
    owner = raw.get("owner")
    return _Entry(
        owner=owner if isinstance(owner, str) and owner else None,
        conversation=conversation,
        messages=messages,
        current=current,
        attachments=attachments,
    )


def _create(entry: _Entry, owner: User) -> None:
    entry.conversation.owner = owner
    by_source = {source_id: message for source_id, _, message in entry.messages}
    conversation_create(
        entry.conversation,
        [
            (message, by_source[parent_id] if parent_id is not None else None)
            for _, parent_id, message in entry.messages
        ],
        current=by_source[entry.current] if entry.current is not None else None,
    )
    saved: list[str] = []
    try:
        for source_id, prepared in entry.attachments.items():
            message = by_source[source_id]
            stored = attachment_services.attachments_save(message=message, prepared=prepared)
            saved += [a.file.name or "" for a in stored]
    except BaseException:
        # The transaction leaves no row; the files written are removed too.
        attachment_services.files_delete(saved)
        raise


NOT_CHATSITE = f'Not a chatsite export (no "format": "{FORMAT}").'
NOT_A_LIST = '"conversations" must be a list.'
# The member of the export's object that is read entry by entry (JSONStream.object_members).
STREAMED = frozenset({"conversations"})

Imported = Callable[[Conversation, int], None]


def header_check(header: dict[str, Any]) -> None:
    """Raise ImportFormatError unless `header` is that of an export this server reads."""
    if header.get("format") != FORMAT:
        raise ImportFormatError(NOT_CHATSITE)
    version = header.get("version")
    if version != VERSION:
        raise ImportFormatError(
            f"chatsite export version {version!r} is not supported; this server reads "
            f"version {VERSION}."
        )


def document_import(
    members: Iterable[tuple[str, Any]],
    *,
    owner: User | None,
    result: ImportResult,
    start: int = 0,
    on_imported: Imported | None = None,
) -> tuple[dict[str, Any], int | None]:
    """Import a JSON export from its top-level members, its conversations as a stream.

    `members` are those of `JSONStream.object_members(stream=STREAMED)`: "format" and
    "version" come before "conversations", as the export writes them. Each entry is
    imported as it is read (see `conversation_import_entry`), numbered from `start` + 1;
    `on_imported(conversation, messages)` is called for each one created.

    Returns (the other members, the last entry's position), the position None when there
    was no "conversations" member: the object may be something else (a ChatGPT
    conversation). Raises ImportFormatError for an export this server cannot read.
    """
    header: dict[str, Any] = {}
    last: int | None = None
    for key, value in members:
        if key != "conversations":
            header[key] = value
            continue
        header_check(header)
        if not isinstance(value, StreamArray):
            raise ImportFormatError(NOT_A_LIST)
        owners: dict[str, User | None] = {}
        last = start
        for last, raw in enumerate(value.items(), start=start + 1):
            problem = limits.entry_problem(raw)
            if problem is not None:
                result.skipped.append(skipped(last, raw, problem))
                continue
            before = result.messages_imported
            conversation = conversation_import_entry(
                raw=raw, position=last, owner=owner, result=result, owners=owners
            )
            if conversation is not None and on_imported is not None:
                on_imported(conversation, result.messages_imported - before)
        start = last
    return header, last


def conversations_import_json(*, data: Any, owner: User | None = None) -> ImportResult:
    """Recreate the conversations of a JSON export; return what was imported and skipped.

    `data` is the export: a binary file to stream it from, its JSON text (str or bytes),
    or a parsed dict. Raises ImportFormatError when it is not a chatsite export. It reads
    through `document_import`, as the upload page and `import_conversations` do (they
    go through `reading.file_import`, which also reads ChatGPT's exports).

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
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes | bytearray):
        data = io.BytesIO(data)
    elif not hasattr(data, "read"):
        data = io.BytesIO(json.dumps(data).encode())
    stream = JSONStream(data, max_value_bytes=limits.conversation_limit())
    result = ImportResult()
    try:
        if stream.first_char() != "{":
            raise ImportFormatError(NOT_CHATSITE)
        header, last = document_import(
            stream.object_members(stream=STREAMED), owner=owner, result=result
        )
    except JSONStreamError as exc:
        raise ImportFormatError(str(exc)) from exc
    if last is None:
        header_check(header)
        raise ImportFormatError(NOT_A_LIST)
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
    except fields.Invalid as exc:
        reason = str(exc)
    except (TypeError, ValueError, OverflowError) as exc:
        # Whatever the checks above missed: this entry is unusable, the next may be fine.
        reason = f"unreadable: {exc}"
    except DatabaseError as exc:
        reason = f"the database refused it: {exc}"
    result.skipped.append(skipped(position, raw, reason))
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
            result.skipped.append(skipped(position, raw, reason))
            return None
        if entry.owner not in owners:
            owners[entry.owner] = user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: entry.owner}
            ).first()
        target = owners[entry.owner]
        if target is None:
            reason = f"owner {entry.owner!r} does not exist here (import it with an owner)"
            result.skipped.append(skipped(position, raw, reason))
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
        result.skipped.append(skipped(position, raw, reason, duplicate=True))
        return None

    try:
        with transaction.atomic():
            _create(entry, target)
    except IntegrityError:
        # The same external id, imported meanwhile by another upload.
        reason = f"{target.get_username()} already has it"
        result.skipped.append(skipped(position, raw, reason, duplicate=True))
        return None
    result.conversations_imported += 1
    result.messages_imported += len(entry.messages)
    return entry.conversation
