"""The child process that parses one PDF or DOCX (see `sandbox.parse_out_of_process`).

Run as a script (`python -I _parse_child.py KIND MAX_PAGES MAX_CHARS MAX_UNPACKED
MEMORY_BYTES CPU_SECONDS`), the file's bytes on stdin, one JSON object on stdout. It
limits itself (address space, CPU, no files written) before it imports a parser or reads
a byte, so a hostile file can cost this process its life and the upload an error, never
the server. It imports nothing of the project: only the standard library, pypdf and
python-docx.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
import zipfile
from typing import Any

WORD_DOCUMENT = "word/document.xml"


class Refused(Exception):
    """The file cannot be read; `reason` says why (the parent turns it into words)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # SIGXCPU at the soft limit ends the process (its default action); SIGKILL one later.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Text:
    """The text as it is extracted, page by page, refused past `max_chars`."""

    def __init__(self, max_chars: int) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.max_chars = max_chars
        self.page_starts: list[int] = []

    def add(self, piece: str) -> None:
        piece = piece.replace("\x00", "")
        self.length += len(piece)
        if self.length > self.max_chars:
            raise Refused("too_much_text")
        self.parts.append(piece)

    def new_page(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n\n"):
            self.add("\n\n")
        self.page_starts.append(self.length)


def read_pdf(data: bytes, max_pages: int, max_chars: int) -> dict[str, Any]:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # An owner password only (an empty user password) still opens; anything else
            # needs a password the user never gave us.
            try:
                opened = reader.decrypt("")
            except Exception as error:  # unsupported algorithm, missing crypto library
                raise Refused("encrypted", repr(error)) from None
            if not opened:
                raise Refused("encrypted")
        tree: Any = reader.root_object["/Pages"].get_object()
        declared = tree.get("/Count", 0)
    except Refused:
        raise
    except (PdfReadError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise Refused("malformed", repr(error)) from None
    # The declared count first: refusing a million pages must not walk them.
    if isinstance(declared, int) and declared > max_pages:
        raise Refused("too_many_pages", str(declared))
    try:
        count = len(reader.pages)
    except LimitReachedError as error:  # a page tree past pypdf's own limit
        raise Refused("too_many_pages", repr(error)) from None
    if count > max_pages:
        raise Refused("too_many_pages", str(count))
    text = Text(max_chars)
    for page in reader.pages:
        text.new_page()
        try:
            # extract_text() swallows a stream past pypdf's inflate limit (a flate bomb)
            # and returns "": decoding it first tells a bomb from a page without text.
            page.get_contents()
        except LimitReachedError as error:
            raise Refused("bomb", repr(error)) from None
        text.add(page.extract_text() or "")
    return {"text": "".join(text.parts), "pages": count, "page_starts": text.page_starts}


def read_docx(data: bytes, max_pages: int, max_chars: int, max_unpacked: int) -> dict[str, Any]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise Refused("malformed", repr(error)) from None
    if WORD_DOCUMENT not in {m.filename for m in members}:
        raise Refused("not_docx")
    # python-docx reads every part whole: refuse before it inflates a bomb. zipfile keeps
    # no more than a member's declared size (though it inflates the rest to check the CRC,
    # which the CPU limit bounds).
    unpacked = sum(m.file_size for m in members)
    # Deflate never grows data by more than a few bytes per 16 KiB: more compressed bytes
    # than that says the declared size is a lie, told to slip a bomb past the sum below.
    if any(m.compress_size > m.file_size + m.file_size // 100 + 1024 for m in members):
        raise Refused("malformed", "declared sizes that lie")
    if unpacked > max_unpacked or len(members) > 10_000:
        raise Refused("bomb", str(unpacked))

    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises many kinds for a broken package
        raise Refused("malformed", repr(error)) from None
    text = Text(max_chars)
    breaks = 0
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                text.add(" | ".join(cell.text for cell in row.cells) + "\n")
            text.add("\n")
            continue
        if block.text == "" and not _breaks(block):
            continue
        if _breaks(block):
            breaks += 1
            if breaks == 1:
                text.page_starts.append(0)
            text.new_page()
            if len(text.page_starts) > max_pages:
                raise Refused("too_many_pages")
        if block.text:
            text.add(block.text + "\n\n")
    pages = len(text.page_starts) if breaks else None
    return {
        "text": "".join(text.parts),
        "pages": pages,
        "page_starts": text.page_starts if breaks else [],
    }


def _breaks(paragraph: Any) -> bool:
    """A hard page break (Word's or python-docx's) or one Word rendered, in `paragraph`."""
    return bool(paragraph._p.xpath("./w:r/w:br[@w:type='page'] | ./w:r/w:lastRenderedPageBreak"))


def main(argv: list[str]) -> int:
    kind = argv[1]
    max_pages, max_chars, max_unpacked, memory, cpu = (int(a) for a in argv[2:7])
    limit_self(memory, cpu)
    # pypdf warns through logging for every oddity; a hostile file has millions.
    logging.disable(logging.CRITICAL)
    data = sys.stdin.buffer.read()
    try:
        if kind == "pdf":
            result: dict[str, Any] = {"ok": True} | read_pdf(data, max_pages, max_chars)
        else:
            result = {"ok": True} | read_docx(data, max_pages, max_chars, max_unpacked)
    except Refused as refused:
        result = {"ok": False, "reason": refused.reason, "detail": refused.detail[:300]}
    except MemoryError:
        result = {"ok": False, "reason": "memory"}
    except RecursionError:
        result = {"ok": False, "reason": "malformed", "detail": "nesting too deep"}
    except Exception as error:  # a parser's own failure on a broken file
        result = {"ok": False, "reason": "malformed", "detail": repr(error)[:300]}
    sys.stdout.buffer.write(json.dumps(result, ensure_ascii=False).encode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
