"""The sizes an import accepts, in bytes of the file: one text, one message, one conversation.

`JSONStream` skips a conversation larger than CHAT_IMPORT_MAX_CONVERSATION_BYTES without
holding it (it comes as an `Oversized`); `entry_problem` then checks what was read, so
that one conversation over a limit is skipped with the reason and the others import. The
total an import reads (CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES) is counted by `jobs`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from conversations.transfer.jsonstream import Oversized


def mib(size: int) -> str:
    """`size` bytes for people: "12 MiB", or bytes when under one."""
    return f"{size / 2**20:,.0f} MiB" if size >= 2**20 else f"{size:,} bytes"


def conversation_limit() -> int:
    return int(settings.CHAT_IMPORT_MAX_CONVERSATION_BYTES)


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _texts(value: Any) -> list[str]:
    """Every string in `value` (keys too), without recursion (the JSON may be deep)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(k for k in item if isinstance(k, str))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _messages(raw: dict[str, Any]) -> tuple[str, list[Any]]:
    """The key of an entry's messages and the messages: chatsite's list, ChatGPT's nodes."""
    messages = raw.get("messages")
    if isinstance(messages, list):
        return "messages", messages
    mapping = raw.get("mapping")
    if isinstance(mapping, dict):
        return "mapping", list(mapping.values())
    return "", []


def _attachments_problem(message: Any, position: int) -> str | None:
    """Why a chatsite message's attachments are too big to import, or None: each file's
    base64 is bounded by CHAT_ATTACHMENT_MAX_BYTES, the rest of them as texts."""
    found = message.get("attachments") if isinstance(message, dict) else None
    if not isinstance(found, list):
        return None
    file_limit = int(settings.CHAT_ATTACHMENT_MAX_BYTES)
    encoded_limit = 4 * ((file_limit + 2) // 3)
    string_limit = int(settings.CHAT_IMPORT_MAX_STRING_BYTES)
    for item in found:
        if not isinstance(item, dict):
            continue
        data = item.get("data")
        if isinstance(data, str) and len(data) > encoded_limit:
            return (
                f"message {position} has an attachment of {mib(len(data) * 3 // 4)}; the "
                f"largest is {mib(file_limit)} (CHAT_ATTACHMENT_MAX_BYTES)"
            )
        for text in _texts({k: v for k, v in item.items() if k != "data"}):
            if _size(text) > string_limit:
                return (
                    f"message {position} has an attachment with a text of {mib(_size(text))}; "
                    f"the longest imported is {mib(string_limit)} (CHAT_IMPORT_MAX_STRING_BYTES)"
                )
    return None


def entry_problem(raw: Any) -> str | None:
    """Why the conversation entry `raw` (either format) is too big to import, or None."""
    if isinstance(raw, Oversized):
        return (
            f"the conversation is {mib(raw.size)}; the largest imported is "
            f"{mib(conversation_limit())} (CHAT_IMPORT_MAX_CONVERSATION_BYTES)"
        )
    if not isinstance(raw, dict):
        return None
    string_limit = int(settings.CHAT_IMPORT_MAX_STRING_BYTES)
    message_limit = int(settings.CHAT_IMPORT_MAX_MESSAGE_BYTES)

    def too_long(texts: list[str], where: str) -> str | None:
        for text in texts:
            # A character is 1 to 4 bytes: most texts are settled without encoding them.
            if len(text) > string_limit or (
                4 * len(text) > string_limit and _size(text) > string_limit
            ):
                return (
                    f"{where} has a text of {mib(_size(text))}; the longest imported is "
                    f"{mib(string_limit)} (CHAT_IMPORT_MAX_STRING_BYTES)"
                )
        return None

    key, messages = _messages(raw)
    problem = too_long(_texts({k: v for k, v in raw.items() if k != key}), "the conversation")
    if problem:
        return problem
    for position, message in enumerate(messages, start=1):
        problem = _attachments_problem(message, position)
        if problem:
            return problem
        if isinstance(message, dict) and key == "messages":
            # Attachments' files are bounded by their own limit (above), not as texts.
            message = {k: v for k, v in message.items() if k != "attachments"}
        texts = _texts(message)
        problem = too_long(texts, f"message {position}")
        if problem:
            return problem
        size = sum(_size(text) for text in texts)
        if size > message_limit:
            return (
                f"message {position} is {mib(size)}; the largest imported is "
                f"{mib(message_limit)} (CHAT_IMPORT_MAX_MESSAGE_BYTES)"
            )
    return None
