"""Documents built in the tests: real PDFs (pypdf's writer, or raw objects for hostile
ones) and real Word files (python-docx), so extraction reads what users upload."""

from __future__ import annotations

import functools
import io
import zipfile
import zlib

import docx
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def pdf(pages: list[str], *, password: str | None = None) -> bytes:
    """A PDF whose pages show these texts (one line per line of each text, Helvetica)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        lines = [b"BT /F1 11 Tf 14 TL 72 740 Td"]
        lines += [_pdf_string(line) + b" '" for line in text.split("\n")]
        lines.append(b"ET")
        stream = DecodedStreamObject()
        stream.set_data(b"\n".join(lines))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1; object 1 the catalog) with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def stream(data: bytes, *, compressed: bytes | None = None) -> bytes:
    if compressed is not None:
        return (
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(compressed)
            + compressed
            + b"\nendstream"
        )
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def million_pages(*, declared: int) -> bytes:
    """A page tree of 1,000 nodes of 1,000 kids each, all the same page: a million pages in
    a few kilobytes (`declared` is the /Count it claims)."""
    kids_of_root = b" ".join([b"3 0 R"] * 1000)
    kids_of_node = b" ".join([b"4 0 R"] * 1000)
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids_of_root, declared),
            b"<< /Type /Pages /Parent 2 0 R /Kids [%s] /Count 1000 >>" % kids_of_node,
            b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 5 0 R >>",
            stream(b"BT ET"),
        ]
    )


@functools.cache
def flate_bomb_pdf(inflated: int) -> bytes:
    """One page whose content stream inflates to `inflated` bytes of spaces."""
    compressor = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    parts.append(compressor.flush())
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            stream(b"", compressed=b"".join(parts)),
        ]
    )


def docx_file(paragraphs: list[str], *, page_break_before: set[int] = frozenset()) -> bytes:
    """A Word file of these paragraphs; a page break before those of `page_break_before`."""
    document = docx.Document()
    for number, text in enumerate(paragraphs):
        if number in page_break_before:
            document.add_page_break()
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_with_table(rows: list[list[str]]) -> bytes:
    document = docx.Document()
    document.add_paragraph("Before the table.")
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@functools.cache
def docx_bomb(inflated: int, *, zip64: bool = True) -> bytes:
    """A real Word file whose word/document.xml is padded to `inflated` bytes of spaces
    (deflated: a few kilobytes per hundred megabytes); without zip64 (under 2 GiB) the
    sizes sit in the plain headers."""
    source = zipfile.ZipFile(io.BytesIO(docx_file(["A small document."])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename != "word/document.xml":
                target.writestr(info.filename, data)
                continue
            with target.open("word/document.xml", "w", force_zip64=zip64) as member:
                member.write(data)
                block = b" " * (1024 * 1024)
                for _ in range(inflated // len(block)):
                    member.write(block)
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def lying_docx_bomb(inflated: int, *, declared: int) -> bytes:
    """A Word file whose document.xml inflates to `inflated` bytes but whose zip headers
    (local and central) say it is `declared` bytes."""
    data = bytearray(docx_bomb(inflated, zip64=False))
    name = b"word/document.xml"
    local = data.find(b"PK\x03\x04")
    while local != -1:
        name_length = int.from_bytes(data[local + 26 : local + 28], "little")
        if data[local + 30 : local + 30 + name_length] == name:
            data[local + 22 : local + 26] = declared.to_bytes(4, "little")
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_length = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + name_length] == name:
            data[central + 24 : central + 28] = declared.to_bytes(4, "little")
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)
