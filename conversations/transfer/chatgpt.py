"""ChatGPT's data export, read into conversations: every branch, the current one shown.

A ChatGPT conversation is a tree: `mapping` holds nodes `{id, message|null, parent,
children}` and `current_node` is the leaf of the branch that was on screen. Each node
with something to show becomes a `Message` whose `parent` is the nearest ancestor that
was kept, so edited questions and regenerated answers stay as sibling branches.

What is kept and how:

- `user` and `assistant` messages with text. Text comes from `content.parts` (strings;
  images and other attachments in `multimodal_text` become `[image]`, `[audio]`,
  `[file]` placeholders), from `code` (a fenced block) and the other content types
  listed in `_content_text`.
- Tool output (`tool` role: code execution results, browsing quotes, image generation
  notes) is not a turn of its own here: it is written, readably, into the assistant
  message it belongs to. An assistant or tool node whose parent has no other child is
  appended to the assistant message above it (a ChatGPT answer is often several nodes:
  code, its output, the explanation), so one answer reads as one reply. Where there are
  alternatives (siblings) each stays a message of its own.
- Skipped, with their children re-attached to the nearest kept ancestor: empty nodes,
  nodes hidden from the conversation (`metadata.is_visually_hidden_from_conversation`),
  system messages, and the model's private reasoning (`thoughts`, `reasoning_recap`).
- Custom instructions (`user_editable_context`: `user_profile`, `user_instructions`, or a
  system message with text) become the conversation's `system_prompt`.
- Titles, times (`create_time`/`update_time`, epoch seconds; outside 1970 to 9000 the
  conversation is skipped as corrupt), model names (`metadata.model_slug` on each reply;
  `default_model_slug` for the conversation only if this site offers that model, else the
  site's default, so it can be continued), and `current_node` (the message it
  maps to becomes `Conversation.current`). The ChatGPT ids are kept as `external_id`,
  which is what makes importing the same export again create nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, IntegrityError, transaction

from conversations.attachments import services as attachment_services
from conversations.llm import registry as llm
from conversations.models import Conversation, Message
from conversations.text import strip_nul
from conversations.transfer import chatgpt_files
from conversations.transfer.results import ImportResult, skipped
from conversations.transfer.saving import EARLIEST, LATEST, conversation_create

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TITLE_MAX = Conversation._meta.get_field("title").max_length or 200
MODEL_MAX = Message._meta.get_field("model").max_length or 200
ID_MAX = Conversation._meta.get_field("external_id").max_length or 200
UNTITLED = "Imported conversation"
NO_MAPPING = 'no "mapping" of messages'
NOT_AN_OBJECT = "not a conversation object"

_PLACEHOLDERS = {
    "image_asset_pointer": "[image]",
    "audio_asset_pointer": "[audio]",
    "real_time_user_audio_video_asset_pointer": "[audio]",
    "video_container_asset_pointer": "[video]",
    "file_asset_pointer": "[file]",
}
# Content types that are the model's private reasoning, not part of the answer.
_HIDDEN_TYPES = {"thoughts", "reasoning_recap", "model_editable_context"}


class CorruptConversation(Exception):
    """One conversation cannot be read; the message says why (shown to the user)."""


@dataclass
class ParsedMessage:
    node_id: str
    parent: ParsedMessage | None
    role: str
    content: str
    model: str
    created: datetime
    # The node ids whose text was appended to this message (for current_node).
    nodes: list[str] = field(default_factory=list)
    # A user message's images: asset pointers to files of the export's zip.
    images: list[str] = field(default_factory=list)


@dataclass
class ParsedConversation:
    external_id: str
    title: str
    model: str
    system_prompt: str
    created: datetime
    updated: datetime
    messages: list[ParsedMessage]
    current: ParsedMessage | None


# --- Reading one conversation ----------------------------------------------------------


def _time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptConversation(f"{what} is not a time: {value!r}")
    try:
        moment = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise CorruptConversation(f"{what} is out of range: {value!r}") from exc
    # Far-future dates overflow date arithmetic later (the sidebar's grouping).
    if not EARLIEST <= moment < LATEST:
        raise CorruptConversation(f"{what} is out of range (1970 to 9000): {value!r}")
    return moment


def _fenced(text: str, language: str = "") -> str:
    text = text.strip("\n")
    fence = "```"
    while fence in text:
        fence += "`"
    language = "" if language in ("unknown", "") else language
    return f"{fence}{language}\n{text}\n{fence}"


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        kind = part.get("content_type")
        if kind == "audio_transcription" and isinstance(part.get("text"), str):
            return str(part["text"])
        if isinstance(kind, str):
            return _PLACEHOLDERS.get(kind, "[attachment]")
    return ""


def _content_text(content: dict[str, Any], role: str) -> str:
    """A message's content as readable text ("" when there is nothing to show)."""
    kind = content.get("content_type")
    if kind in _HIDDEN_TYPES or kind == "user_editable_context":
        return ""
    text = content.get("text")
    text = text if isinstance(text, str) else ""
    if kind == "code":
        return _fenced(text, str(content.get("language") or "")) if text.strip() else ""
    if kind == "execution_output":
        return f"Output:\n{_fenced(text)}" if text.strip() else ""
    if kind == "tether_quote":
        title, url = content.get("title"), content.get("url")
        quote = "\n".join(f"> {line}" for line in text.strip().splitlines())
        source = " ".join(str(s) for s in (title, url) if isinstance(s, str) and s)
        return f"{quote}\n> — {source}" if source and quote else quote
    if kind == "tether_browsing_display":
        result = content.get("result") or content.get("summary")
        return result if isinstance(result, str) else ""
    if kind == "system_error":
        name = content.get("name")
        return f"[tool error{f' ({name})' if isinstance(name, str) else ''}: {text}]"
    parts = content.get("parts")
    if isinstance(parts, list):
        pieces = [_part_text(p) for p in parts]
        joiner = "\n\n" if kind == "text" else "\n"
        return joiner.join(p for p in pieces if p.strip()).strip()
    return text.strip()


def _instructions(content: dict[str, Any]) -> str:
    pieces = [content.get("user_profile"), content.get("user_instructions")]
    return "\n\n".join(p.strip() for p in pieces if isinstance(p, str) and p.strip())


def _children(mapping: dict[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    """Roots and each node's children, in ChatGPT's order, from the `parent` links."""
    order: dict[str, int] = {}
    for node in mapping.values():
        for position, child in enumerate(node["children"]):
            order.setdefault(child, position)
    roots: list[str] = []
    children: dict[str, list[str]] = {node_id: [] for node_id in mapping}
    for node_id, node in mapping.items():
        parent = node["parent"]
        if parent is None or parent not in mapping:
            roots.append(node_id)
        else:
            children[parent].append(node_id)
    for kids in children.values():
        kids.sort(key=lambda k: order.get(k, len(mapping)))
    return roots, children


def _check_node(node_id: Any, node: Any) -> None:
    if not isinstance(node, dict):
        raise CorruptConversation(f"node {node_id!r} is not an object")
    parent = node.setdefault("parent", None)
    if parent is not None and not isinstance(parent, str):
        raise CorruptConversation(f"node {node_id!r} has a parent that is not an id")
    kids = node.setdefault("children", [])
    if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
        raise CorruptConversation(f"node {node_id!r} has children that are not a list of ids")
    message = node.get("message")
    if message is None:
        return
    if not isinstance(message, dict):
        raise CorruptConversation(f"node {node_id!r}: the message is not an object")
    for key in ("author", "content", "metadata"):
        if message.get(key) is not None and not isinstance(message[key], dict):
            raise CorruptConversation(f"node {node_id!r}: {key} is not an object")
    kind = (message.get("content") or {}).get("content_type")
    if kind is not None and not isinstance(kind, str):
        raise CorruptConversation(f"node {node_id!r}: content_type is not text")
    role = (message.get("author") or {}).get("role")
    if role is not None and not isinstance(role, str):
        raise CorruptConversation(f"node {node_id!r}: the author's role is not text")
    _time(message.get("create_time"), f"node {node_id!r}: create_time")


def parse_conversation(raw: Any) -> ParsedConversation:
    """One conversation of the export, ready to save; raises CorruptConversation."""
    if not isinstance(raw, dict):
        raise CorruptConversation(NOT_AN_OBJECT)
    external_id = raw.get("conversation_id") or raw.get("id")
    if not isinstance(external_id, str) or not external_id.strip():
        raise CorruptConversation("no conversation id")
    if len(external_id) > ID_MAX:
        raise CorruptConversation("the conversation id is too long")
    mapping = raw.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise CorruptConversation(NO_MAPPING)
    for node_id, node in mapping.items():
        _check_node(node_id, node)
    title = raw.get("title")
    title = " ".join(title.split())[:TITLE_MAX] if isinstance(title, str) else ""
    created = _time(raw.get("create_time"), "create_time")
    updated = _time(raw.get("update_time"), "update_time")
    model = raw.get("default_model_slug")
    model = model[:MODEL_MAX] if isinstance(model, str) else ""

    roots, children = _children(mapping)
    messages: list[ParsedMessage] = []
    system_prompts: list[str] = []
    by_node: dict[str, ParsedMessage | None] = {}
    # Whether a single-child assistant/tool node below may be appended to by_node[...].
    open_tail: dict[str, bool] = {}
    fallback_time = created
    visited = 0
    # Depth first, iteratively: a long conversation is a very deep tree.
    stack: list[tuple[str, str | None]] = [(r, None) for r in reversed(roots)]
    while stack:
        node_id, parent_id = stack.pop()
        visited += 1
        above = by_node[parent_id] if parent_id is not None else None
        tail_open = open_tail[parent_id] if parent_id is not None else False
        sole_child = parent_id is not None and len(children[parent_id]) == 1
        kept, merged = _visit(
            mapping[node_id],
            node_id,
            above,
            sole_child and tail_open,
            fallback_time,
            system_prompts,
            messages,
        )
        if kept is not None and fallback_time is None:
            fallback_time = kept.created
        by_node[node_id] = kept if kept is not None else above
        open_tail[node_id] = (merged or (kept is not None and kept.role == "assistant")) or (
            kept is None and sole_child and tail_open
        )
        stack.extend((child, node_id) for child in reversed(children[node_id]))
    if visited != len(mapping):
        raise CorruptConversation("the message tree has a cycle")
    if not messages:
        raise CorruptConversation("no message with text in it")

    current_node = raw.get("current_node")
    current = by_node.get(current_node) if isinstance(current_node, str) else None
    if created is None:
        created = min((m.created for m in messages), default=None) or datetime.now(tz=UTC)
    if updated is None or updated < created:
        updated = max((m.created for m in messages), default=created)
    for message in messages:
        if message.created is _NO_TIME:  # no time anywhere above it: the conversation's
            message.created = created
    return ParsedConversation(
        external_id=external_id,
        title=title or UNTITLED,
        model=model,
        system_prompt="\n\n".join(dict.fromkeys(system_prompts)),
        created=created,
        updated=updated,
        messages=messages,
        current=current,
    )


_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _visit(
    node: dict[str, Any],
    node_id: str,
    above: ParsedMessage | None,
    may_append: bool,
    fallback_time: datetime | None,
    system_prompts: list[str],
    messages: list[ParsedMessage],
) -> tuple[ParsedMessage | None, bool]:
    """Turn one node into a new message, text appended to `above`, or nothing.

    Returns (the new message or `above` if appended to, else None; whether appended).
    """
    message = node.get("message")
    if message is None:
        return None, False
    author = message.get("author") or {}
    role = author.get("role")
    content = message.get("content") or {}
    metadata = message.get("metadata") or {}
    kind = content.get("content_type")
    if kind == "user_editable_context":
        if text := _instructions(content):
            system_prompts.append(text)
        return None, False
    text = _content_text(content, str(role))
    if role == "system":
        # ChatGPT's own system message is empty; one with text carries the user's custom
        # instructions (older exports), hidden or not.
        if text:
            system_prompts.append(text)
        return None, False
    if not text or metadata.get("is_visually_hidden_from_conversation"):
        return None, False
    if role not in ("user", "assistant", "tool"):
        return None, False
    created = _time(message.get("create_time"), f"node {node_id!r}: create_time")
    slug = metadata.get("model_slug")
    model = slug[:MODEL_MAX] if isinstance(slug, str) else ""
    if role != "user" and above is not None and above.role == "assistant" and may_append:
        above.content = f"{above.content}\n\n{text}"
        above.nodes.append(node_id)
        above.model = above.model or model
        return above, True
    parsed = ParsedMessage(
        node_id=node_id,
        parent=above,
        role="user" if role == "user" else "assistant",
        content=text,
        model=model,
        created=created or (above.created if above else None) or fallback_time or _NO_TIME,
        nodes=[node_id],
        images=chatgpt_files.image_pointers(content) if role == "user" else [],
    )
    messages.append(parsed)
    return parsed, False


# --- Saving ------------------------------------------------------------------------------


def conversation_model(slug: str) -> str:
    """The model an imported conversation continues with: its ChatGPT model if offered here.

    Otherwise (a local-only install has no `gpt-4o`) the site's default, so it can be
    continued; each imported reply keeps the model that wrote it.
    """
    slug = strip_nul(slug)
    if slug and slug in {option.id for option in llm.available_models()}:
        return slug
    return llm.default_model()


def _save(
    parsed: ParsedConversation, owner: User, files: chatgpt_files.ZipFiles | None
) -> Conversation:
    conversation = Conversation(
        owner=owner,
        title=strip_nul(parsed.title),
        title_set_by_user=True,
        model=conversation_model(parsed.model),
        system_prompt=strip_nul(parsed.system_prompt),
        external_id=strip_nul(parsed.external_id),
        created=parsed.created,
        updated=parsed.updated,
    )
    rows = {
        id(m): Message(
            role=m.role,
            content=strip_nul(m.content),
            status=Message.Status.COMPLETE,
            model=strip_nul(m.model),
            external_id=strip_nul(m.node_id[:ID_MAX]),
            created=m.created,
            updated=m.created,
        )
        for m in parsed.messages
    }
    # Created in time order (a stable sort: the tree's order for equal times).
    ordered = sorted(parsed.messages, key=lambda m: m.created)
    conversation_create(
        conversation,
        [(rows[id(m)], rows[id(m.parent)] if m.parent is not None else None) for m in ordered],
        current=rows[id(parsed.current)] if parsed.current is not None else None,
    )
    if files is not None:
        _save_images(parsed, rows, files)
    return conversation


def _save_images(
    parsed: ParsedConversation, rows: dict[int, Message], files: chatgpt_files.ZipFiles
) -> None:
    """The zip's images of each user message, as its attachments (in the transaction)."""
    saved: list[str] = []
    try:
        for m in parsed.messages:
            prepared = files.prepared(m.images) if m.images else []
            if prepared:
                stored = attachment_services.attachments_save(
                    message=rows[id(m)], prepared=prepared
                )
                saved += [a.file.name or "" for a in stored]
    except BaseException:
        attachment_services.files_delete(saved)
        raise


def conversation_import(
    *,
    raw: Any,
    position: int,
    owner: User,
    result: ImportResult,
    files: chatgpt_files.ZipFiles | None = None,
) -> Conversation | None:
    """Import one ChatGPT conversation for `owner`, in a transaction of its own; with the
    `files` of its zip, the images users attached come in as their messages' attachments.

    Adds to `result` what happened; returns the new conversation, or None when skipped
    (already imported — same ChatGPT id for this owner — or unreadable, with the reason).
    """
    try:
        parsed = parse_conversation(raw)
        external_id = strip_nul(parsed.external_id)
        existing = Conversation.objects.filter(owner=owner, external_id=external_id)
        if existing.exists():
            result.skipped.append(skipped(position, raw, "already imported", duplicate=True))
            return None
        with transaction.atomic():
            conversation = _save(parsed, owner, files)
    except CorruptConversation as exc:
        result.skipped.append(skipped(position, raw, str(exc)))
        return None
    except IntegrityError:
        # Imported meanwhile by another upload of the same file.
        result.skipped.append(skipped(position, raw, "already imported", duplicate=True))
        return None
    except (TypeError, ValueError, OverflowError) as exc:
        # Whatever the checks missed: this conversation is unusable, the next may be fine.
        result.skipped.append(skipped(position, raw, f"unreadable: {exc}"))
        return None
    except DatabaseError as exc:
        result.skipped.append(skipped(position, raw, f"the database refused it: {exc}"))
        return None
    result.conversations_imported += 1
    result.messages_imported += len(parsed.messages)
    return conversation


def conversations_import(*, conversations: Iterable[Any], owner: User) -> ImportResult:
    """Import an iterable of ChatGPT conversations (e.g. a parsed conversations.json)."""
    result = ImportResult()
    for position, raw in enumerate(conversations, start=1):
        conversation_import(raw=raw, position=position, owner=owner, result=result)
    return result
