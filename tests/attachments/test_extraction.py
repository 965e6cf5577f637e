"""Documents are recognised by content and their text extracted; hostile files are refused
with a clear message, in bounded time, by a child process limited in memory."""

from __future__ import annotations

import io
import json
import resource
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from conversations.attachments import sandbox
from conversations.attachments.documents import (
    DOCX,
    PDF,
    DocumentRejected,
    is_document,
    read_document,
)
from tests.attachments import builders

# What a hostile file may cost at most with the limits below: the child's start-up (about
# half a second, cold) plus its wall-clock limit.
LIMIT_SECONDS = 5.0


@pytest.fixture
def tight(settings):
    settings.CHAT_DOCUMENT_MAX_SECONDS = LIMIT_SECONDS
    settings.CHAT_DOCUMENT_MAX_MEMORY = 400 * 1024 * 1024
    settings.CHAT_DOCUMENT_MAX_PAGES = 500
    settings.CHAT_DOCUMENT_MAX_UNPACKED_BYTES = 50 * 1024 * 1024
    return settings


def rejected(data: bytes, name: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(DocumentRejected) as caught:
        read_document(data, name=name)
    return caught.value.user_message, time.monotonic() - started


# --- Each type ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("notes.txt", "text/plain"),
        ("README.md", "text/markdown"),
        ("table.csv", "text/csv"),
        ("data.json", "application/json"),
        ("script.py", "text/x-python"),
        ("no-suffix", "text/plain"),
    ],
)
def test_text_flavours_come_from_the_name_of_a_file_that_is_text(name, content_type):
    data = "Café, naïve — ünïcode\r\nsecond line\n".encode()
    document = read_document(data, name=name)
    assert document.content_type == content_type
    assert document.text == "Café, naïve — ünïcode\nsecond line\n"
    assert (document.pages, document.page_starts) == (None, [])


def test_utf8_bom_and_utf16_with_a_bom_are_text():
    assert read_document(b"\xef\xbb\xbfhello", name="a.txt").text == "hello"
    for codec in ("utf-16-le", "utf-16-be"):
        bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
        data = bom + "Grüße, 世界".encode(codec)
        assert is_document("a.txt", data[:64])
        assert read_document(data, name="a.txt").text == "Grüße, 世界"


def test_a_pdf_gives_its_text_pages_and_where_each_page_starts():
    data = builders.pdf(["The first page.\nIts second line.", "Page two (with parentheses)."])
    assert is_document("whatever.txt", data[:2048])
    document = read_document(data, name="report.txt")  # the name does not make it text
    assert document.content_type == PDF
    assert document.pages == 2
    assert "The first page." in document.text and "Its second line." in document.text
    second = document.text[document.page_starts[1] :]
    assert document.page_starts[0] == 0
    assert second.startswith("Page two (with parentheses).")
    assert "first page" not in second


def test_a_pdf_with_only_an_owner_password_opens():
    # An empty user password: readers open it without asking.
    data = builders.pdf(["Open to read."], password="")
    assert "Open to read." in read_document(data, name="a.pdf").text


def test_a_docx_gives_paragraphs_tables_and_pages_at_page_breaks():
    data = builders.docx_file(
        ["Introduction here.", "More of page one.", "Chapter two begins."],
        page_break_before={2},
    )
    document = read_document(data, name="report.pdf")  # a misleading name changes nothing
    assert document.content_type == DOCX
    assert document.pages == 2
    assert document.text.startswith("Introduction here.\n\nMore of page one.")
    assert document.text[document.page_starts[1] :].strip() == "Chapter two begins."

    table = read_document(builders.docx_with_table([["Name", "Age"], ["Ada", "36"]]), name="t")
    assert "Name | Age\nAda | 36" in table.text
    assert table.pages is None and table.page_starts == []


def test_binary_and_unknown_files_are_not_documents():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    assert not is_document("picture.txt", png)
    message, _ = rejected(png, "picture.txt")
    assert "type is not supported" in message
    assert not is_document("a.txt", b"text with a \x00 NUL")
    assert not is_document("latin1.txt", "déjà".encode("latin-1"))
    # A head cut inside a character is still text; the whole file decides.
    assert is_document("a.txt", "ab€".encode()[:-1])
    # Past the head that recognised it as text: the whole file is decoded.
    message, _ = rejected(b"ok " * 2000 + "déjà".encode("latin-1"), "a.txt")
    assert "not valid UTF-8" in message
    message, _ = rejected(b"ok " * 2000 + b"\x00", "a.txt")
    assert message.startswith("This file is binary, not text")
    assert "empty" in rejected(b"", "a.txt")[0]
    assert "no text" in rejected(b"  \n\n ", "a.txt")[0]


def test_a_zip_that_is_not_a_word_file_is_refused():
    message, _ = rejected(builders.zip_of({"notes.txt": b"hello"}), "archive.docx")
    assert "not a Word document" in message


def test_a_pdf_of_scanned_images_says_it_has_no_text():
    message, _ = rejected(builders.pdf([""]), "scan.pdf")
    assert "No text could be found in this PDF" in message


# --- Hostile files --------------------------------------------------------------------


def test_an_encrypted_pdf_is_refused(tight):
    message, took = rejected(builders.pdf(["Secret."], password="hunter2"), "secret.pdf")
    assert message.startswith("This PDF is encrypted")
    assert took < LIMIT_SECONDS


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + b"garbage " * 1000,
        builders.pdf(["Cut short."])[:300],
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj\ntrailer << /Root 1 0 R >>",
    ],
    ids=["garbage", "truncated", "self-referencing"],
)
def test_a_malformed_pdf_is_refused(tight, data):
    message, took = rejected(data, "broken.pdf")
    assert "PDF" in message
    assert took < LIMIT_SECONDS


def test_a_malformed_docx_is_refused(tight):
    good = builders.docx_file(["Hello."])
    broken = builders.zip_of({"word/document.xml": b"<w:document><unclosed>", "[x].xml": b""})
    for data in (good[: len(good) // 2], broken):
        message, took = rejected(data, "broken.docx")
        assert "Word document" in message or "zip" in message
        assert took < LIMIT_SECONDS


def test_a_million_pages_declared_is_refused_without_walking_them(tight):
    message, took = rejected(builders.million_pages(declared=1_000_000), "huge.pdf")
    assert message == "This PDF has more than 500 pages, the most a document may have."
    assert took < LIMIT_SECONDS


def test_a_million_pages_under_a_lying_count_is_refused(tight):
    message, took = rejected(builders.million_pages(declared=1), "liar.pdf")
    assert "more than 500 pages" in message
    assert took < LIMIT_SECONDS


def test_too_many_real_pages_are_refused(tight):
    tight.CHAT_DOCUMENT_MAX_PAGES = 20
    message, _ = rejected(builders.pdf([f"Page {n}" for n in range(21)]), "long.pdf")
    assert "more than 20 pages" in message


def test_a_pdf_flate_bomb_is_refused(tight):
    # 1 GiB of spaces in one content stream, ~1 MB compressed.
    data = builders.flate_bomb_pdf(1024 * 1024 * 1024)
    assert len(data) < 2 * 1024 * 1024
    message, took = rejected(data, "bomb.pdf")
    assert "unpacks to too much data" in message
    assert took < LIMIT_SECONDS


def test_a_docx_whose_xml_inflates_to_gigabytes_is_refused(tight):
    data = builders.docx_bomb(2 * 1024 * 1024 * 1024)
    assert len(data) < 4 * 1024 * 1024
    message, took = rejected(data, "bomb.docx")
    assert message == "This Word document unpacks to more than 50 MB: it is refused."
    assert took < LIMIT_SECONDS


def test_a_docx_bomb_whose_zip_headers_lie_about_its_size_is_refused_at_once(tight):
    # 1 GiB inflated, 4 KiB declared: the declared sizes pass, the compressed size betrays it.
    data = builders.lying_docx_bomb(1024 * 1024 * 1024, declared=4096)
    message, took = rejected(data, "liar.docx")
    assert message == "This Word document is damaged or malformed and could not be read."
    assert took < 1.5


def test_a_docx_billion_laughs_is_not_expanded(tight):
    entities = b"".join(
        b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"lol") * 10)
        for n in range(1, 10)
    )
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE w:document [' + entities + b"]>"
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>Laughs: &lol9;</w:t></w:r></w:p></w:body></w:document>"
    )
    source = zipfile.ZipFile(io.BytesIO(builders.docx_file(["Hello."])))
    members = {i.filename: source.read(i) for i in source.infolist()}
    members["word/document.xml"] = xml
    # libxml2 stops at its entity amplification limit: refused, never a billion "lol"s.
    message, took = rejected(builders.zip_of(members), "lol.docx")
    assert message == "This Word document is damaged or malformed and could not be read."
    assert took < LIMIT_SECONDS


def test_huge_text_is_refused(tight):
    tight.CHAT_DOCUMENT_MAX_CHARS = 10_000
    message, _ = rejected(b"word " * 3000, "big.txt")
    assert message == (
        "This document holds more than 10,000 characters of text, the most a document may have."
    )
    message, took = rejected(builders.pdf(["x" * 90] * 200), "big.pdf")
    assert "This PDF holds more than 10,000 characters" in message
    assert took < LIMIT_SECONDS


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tight):
    tight.CHAT_DOCUMENT_MAX_BYTES = 1024 * 1024
    message, took = rejected(b"%PDF-" + b" " * (1024 * 1024), "big.pdf")
    assert message == "This file is larger than 1 MB, the largest document accepted."
    assert took < 0.5


def test_a_parser_that_never_ends_is_killed_at_the_wall_clock_limit(settings):
    # The child's script is replaced by one that spins: the limit, not the file, ends it.
    settings.CHAT_DOCUMENT_MAX_SECONDS = 1.5
    started = time.monotonic()
    with pytest.raises(sandbox.ParseFailed) as caught:
        _run_child_source("while True:\n    pass\n", seconds=1.5)
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.5 + 1.0


def test_the_child_is_limited_in_memory(tmp_path):
    # The real child's limits, then an allocation past them: it fails in the child.
    source = (
        "import sys\n"
        f"sys.path.insert(0, {str(sandbox.CHILD.parent)!r})\n"
        "import _parse_child, json, resource\n"
        "_parse_child.limit_self(256 * 1024 * 1024, 5)\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "try:\n"
        "    block = bytearray(1024 * 1024 * 1024)\n"
        "    print(json.dumps({'ok': True, 'limit': soft}))\n"
        "except MemoryError:\n"
        "    print(json.dumps({'ok': False, 'reason': 'memory', 'detail': str(soft)}))\n"
    )
    with pytest.raises(sandbox.ParseFailed) as caught:
        _run_child_source(source, seconds=5)
    assert caught.value.reason == "memory"
    assert caught.value.detail == str(256 * 1024 * 1024)


def test_a_bomb_costs_the_server_process_no_memory(tight):
    # Built (and cached) before measuring: only the reading counts.
    builders.flate_bomb_pdf(1024 * 1024 * 1024)
    builders.docx_bomb(2 * 1024 * 1024 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rejected(builders.flate_bomb_pdf(1024 * 1024 * 1024), "bomb.pdf")
    rejected(builders.docx_bomb(2 * 1024 * 1024 * 1024), "bomb.docx")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB: the parse happened elsewhere (the fixtures cost a few MB here).
    assert after - before < 64 * 1024


def test_the_childs_answer_is_the_only_way_text_comes_back():
    result = sandbox.parse_out_of_process(
        "pdf",
        builders.pdf(["Hello child."]),
        sandbox.Limits(
            max_pages=10,
            max_chars=1000,
            max_unpacked_bytes=1024 * 1024,
            memory_bytes=400 * 1024 * 1024,
            seconds=10,
        ),
    )
    assert json.loads(json.dumps(result))["pages"] == 1
    assert "Hello child." in result["text"]


def _run_child_source(source: str, *, seconds: float) -> dict:
    """Run `source` in place of the child's script, as parse_out_of_process runs it."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "child.py"
        script.write_text(source)
        original = sandbox.CHILD
        sandbox.CHILD = script
        try:
            return sandbox.parse_out_of_process(
                "pdf",
                b"%PDF-",
                sandbox.Limits(
                    max_pages=1,
                    max_chars=1,
                    max_unpacked_bytes=1,
                    memory_bytes=400 * 1024 * 1024,
                    seconds=seconds,
                ),
            )
        finally:
            sandbox.CHILD = original


def test_at_most_the_allowed_children_run_at_once(tmp_path, monkeypatch):
    script = tmp_path / "child.py"
    script.write_text(
        "import json, os, time\n"
        "time.sleep(0.6)\n"
        "print(json.dumps({'ok': True, 'text': str(os.getpid()), 'pages': None,"
        " 'page_starts': []}))\n"
    )
    monkeypatch.setattr(sandbox, "CHILD", script)
    limits = sandbox.Limits(
        max_pages=1,
        max_chars=1,
        max_unpacked_bytes=1,
        memory_bytes=400 * 1024 * 1024,
        seconds=10,
        parallel=1,
    )
    results: list[dict] = []
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=lambda: results.append(sandbox.parse_out_of_process("pdf", b"", limits))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One after another: three sleeps of 0.6 s, not one.
    assert time.monotonic() - started >= 1.8
    assert len({r["text"] for r in results}) == 3


def test_an_upload_that_finds_no_free_child_is_told_to_try_again(settings):
    settings.CHAT_DOCUMENT_MAX_PARALLEL = 1
    settings.CHAT_DOCUMENT_MAX_SECONDS = 0.5
    slots = sandbox._slots(1)
    assert slots.acquire(timeout=5)
    try:
        message, took = rejected(builders.pdf(["Waiting."]), "a.pdf")
    finally:
        slots.release()
    assert message == "Too many documents are being read right now: attach it again in a moment."
    assert 0.5 <= took < 1.5
