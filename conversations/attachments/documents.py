"""Documents attached to a message: recognised by content, their text extracted once.

Text, Markdown, code, CSV and JSON are read here (valid UTF-8, or UTF-16 with a BOM, no
NUL); PDF (pypdf) and DOCX (python-docx) in a limited child process (`sandbox`), so a
hostile file — encrypted, malformed, a decompression bomb, a million pages — gets a
`DocumentRejected` with a clear message in bounded time and memory. The name only
chooses between text flavours (Markdown, CSV…); it never makes a file a PDF.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings

from conversations.attachments import sandbox
from conversations.attachments.chunking import save_passages
from conversations.attachments.errors import AttachmentRejected
from conversations.models import Attachment

__all__ = ["Document", "DocumentRejected", "is_document", "read_document", "save_chunks"]

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "text/plain"

# The name's suffix chooses the flavour of a file that is text; anything else is text/plain.
TEXT_FLAVOURS = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "text/xml",
    ".yaml": "text/yaml",
    ".yml": "text/yaml",
    ".toml": "text/x-toml",
    ".py": "text/x-python",
    ".js": "text/javascript",
    ".ts": "text/x-typescript",
    ".css": "text/css",
    ".c": "text/x-c",
    ".h": "text/x-c",
    ".cpp": "text/x-c++",
    ".java": "text/x-java",
    ".go": "text/x-go",
    ".rs": "text/x-rust",
    ".rb": "text/x-ruby",
    ".sh": "text/x-shellscript",
    ".sql": "text/x-sql",
}
SUPPORTED = "text, Markdown, code, CSV, JSON, PDF or Word (.docx) files"


@dataclass(frozen=True)
class Document:
    content_type: str  # recognised from the bytes/structure: "application/pdf", "text/csv"…
    text: str  # the extracted text (NUL-free)
    pages: int | None  # PDF/DOCX page count where known, None otherwise
    page_starts: list[int]  # offset in `text` where each page starts ([] without pages)


class DocumentRejected(AttachmentRejected):
    """A file that is not a document we read, or one we refuse; `user_message` says which."""


def _kind(head: bytes) -> str | None:
    """ "pdf", "docx" (any zip: read_document tells a Word file from others), "text", None."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "docx"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text" if _utf16_head_is_text(head) else None
    try:
        # Not final: the head may end inside a character.
        piece = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in piece else "text"


def _utf16_head_is_text(head: bytes) -> bool:
    codec = "utf-16-le" if head.startswith(b"\xff\xfe") else "utf-16-be"
    try:
        piece = codecs.getincrementaldecoder(codec)().decode(head[2:], final=False)
    except UnicodeDecodeError:
        return False
    return "\x00" not in piece


def save_chunks(attachment: Attachment, document: Document) -> None:
    """Write `document`'s passages (a few hundred tokens each, with their pages) as
    `attachment`'s AttachmentChunk rows, replacing any; see `chunking.save_passages`."""
    save_passages(attachment, document.text, pages=document.pages, page_starts=document.page_starts)


def is_document(name: str, head: bytes) -> bool:
    """Would `read_document` try this file? (From its first bytes; the name plays no part.)"""
    return _kind(head) is not None


def read_document(data: bytes, *, name: str) -> Document:
    """The text of a document, recognised from its bytes; raises DocumentRejected.

    Bounded by the CHAT_DOCUMENT_* settings: bytes, pages, extracted characters, and the
    seconds and memory the PDF/DOCX parser's child process may use. It blocks for up to
    CHAT_DOCUMENT_MAX_SECONDS (a child process is waited for): from async code, call it
    in a thread (asgiref's sync_to_async).
    """
    limit = settings.CHAT_DOCUMENT_MAX_BYTES
    if len(data) > limit:
        raise DocumentRejected(
            f"This file is larger than {_size(limit)}, the largest document accepted."
        )
    if not data:
        raise DocumentRejected("This file is empty.")
    kind = _kind(data[:4096])
    if kind is None:
        raise DocumentRejected(f"This file's type is not supported: attach {SUPPORTED}.")
    if kind == "text":
        return _read_text(data, name)
    try:
        result = sandbox.parse_out_of_process(kind, data, _limits())
    except sandbox.ParseFailed as failed:
        raise DocumentRejected(_reason(failed.reason, kind)) from None
    text = str(result["text"]).replace("\x00", "")
    if not text.strip():
        raise DocumentRejected(
            "No text could be found in this PDF (it may hold only scanned images)."
            if kind == "pdf"
            else "No text could be found in this document."
        )
    pages = result.get("pages")
    starts = [int(s) for s in result.get("page_starts", [])]
    return Document(
        content_type=PDF if kind == "pdf" else DOCX,
        text=text,
        pages=int(pages) if pages is not None else None,
        page_starts=starts,
    )


def _read_text(data: bytes, name: str) -> Document:
    # UTF-16: the BOM says which end.
    codec = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        raise DocumentRejected(
            "This file is neither a PDF nor a Word document, and its text is not valid "
            "UTF-8 or UTF-16: save it as UTF-8 and attach it again."
        ) from None
    if "\x00" in text:
        raise DocumentRejected(f"This file is binary, not text: attach {SUPPORTED}.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    _check_chars(len(text))
    if not text.strip():
        raise DocumentRejected("This file has no text.")
    suffix = PurePosixPath(name).suffix.lower()
    return Document(TEXT_FLAVOURS.get(suffix, TEXT), text, None, [])


def _check_chars(count: int) -> None:
    if count > settings.CHAT_DOCUMENT_MAX_CHARS:
        raise DocumentRejected(_reason("too_much_text", "text"))


def _limits() -> sandbox.Limits:
    return sandbox.Limits(
        max_pages=settings.CHAT_DOCUMENT_MAX_PAGES,
        max_chars=settings.CHAT_DOCUMENT_MAX_CHARS,
        max_unpacked_bytes=settings.CHAT_DOCUMENT_MAX_UNPACKED_BYTES,
        memory_bytes=settings.CHAT_DOCUMENT_MAX_MEMORY,
        seconds=settings.CHAT_DOCUMENT_MAX_SECONDS,
        parallel=settings.CHAT_DOCUMENT_MAX_PARALLEL,
    )


def _reason(reason: str, kind: str) -> str:
    what = {"pdf": "PDF", "docx": "Word document"}.get(kind, "document")
    if reason == "encrypted":
        return (
            "This PDF is encrypted (password-protected): remove the password and attach it again."
        )
    if reason == "too_many_pages":
        return (
            f"This {what} has more than {settings.CHAT_DOCUMENT_MAX_PAGES:,} pages, "
            "the most a document may have."
        )
    if reason == "too_much_text":
        return (
            f"This {what} holds more than {settings.CHAT_DOCUMENT_MAX_CHARS:,} characters of "
            "text, the most a document may have."
        )
    if reason == "not_docx":
        return f"This is a zip file but not a Word document: attach {SUPPORTED}."
    if reason == "bomb" and kind == "docx":
        return (
            f"This Word document unpacks to more than "
            f"{_size(settings.CHAT_DOCUMENT_MAX_UNPACKED_BYTES)}: it is refused."
        )
    if reason == "bomb":
        return "This PDF holds a compressed stream that unpacks to too much data: it is refused."
    if reason == "busy":
        return "Too many documents are being read right now: attach it again in a moment."
    if reason == "timeout":
        return f"Reading this {what} took too long: it is refused."
    if reason == "memory":
        return f"Reading this {what} took too much memory: it is refused."
    if reason == "crashed":
        return f"This {what} could not be read: reading it failed or ran out of memory."
    return f"This {what} is damaged or malformed and could not be read."


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    return f"{limit / 1024:g} KB"
