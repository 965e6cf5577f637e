"""Zips that are costly to read are refused before reading them, each with a precise reason."""

from __future__ import annotations

import warnings
import zipfile

import pytest

from conversations.models import Conversation
from conversations.transfer import jobs
from tests.support.chatgpt_export import dumps, simple, zipped

pytestmark = pytest.mark.django_db


def write_zip(tmp_path, members: list[tuple[str, bytes]], name: str = "export.zip") -> str:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": written all the same
            for member, data in members:
                archive.writestr(member, data)
    return str(path)


def test_a_zip_with_two_members_of_the_same_name_is_refused(tmp_path, owner):
    path = write_zip(
        tmp_path,
        [
            ("conversations.json", dumps([simple("First")])),
            ("conversations.json", dumps([simple("Second")])),
        ],
    )

    with pytest.raises(jobs.ImportRefused, match=r"two files named 'conversations\.json'"):
        jobs.file_import(path=path, owner=owner)
    assert not Conversation.objects.exists()


def test_any_duplicate_name_is_refused_not_only_the_conversations(tmp_path):
    path = write_zip(
        tmp_path,
        [("conversations.json", dumps([simple("A")])), ("user.json", b"{}"), ("user.json", b"[]")],
    )

    with pytest.raises(jobs.ImportRefused, match=r"two files named 'user\.json'"):
        jobs.upload_inspect(path)


def test_a_whitespace_bomb_is_refused_by_its_compression_ratio(tmp_path, owner):
    # 64 MiB of spaces deflate to about 64 KiB: a ratio of about a thousand.
    bomb = b"[" + b" " * (64 * 1024 * 1024) + b"]"
    path = write_zip(tmp_path, [("conversations.json", bomb)])
    assert (tmp_path / "export.zip").stat().st_size < 200 * 1024

    with pytest.raises(jobs.ImportRefused) as refused:
        jobs.file_import(path=path, owner=owner)

    message = str(refused.value)
    assert "conversations.json is compressed" in message
    assert "more than 200 times (CHAT_IMPORT_MAX_COMPRESSION_RATIO)" in message
    assert "zip bomb" in message


def test_the_ratio_limit_comes_from_the_settings(tmp_path, owner, settings):
    bomb = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    path = write_zip(tmp_path, [("conversations.json", bomb)])
    settings.CHAT_IMPORT_MAX_COMPRESSION_RATIO = 100_000

    source, result = jobs.file_import(path=path, owner=owner)

    assert (source, result.conversations_imported) == ("chatgpt", 0)


def test_a_zip_declaring_more_than_the_uncompressed_limit_is_refused(tmp_path, owner, settings):
    data = dumps([simple(f"Conversation {i}") for i in range(20)])
    path = tmp_path / "export.zip"
    path.write_bytes(zipped({"conversations.json": data}))
    settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES = len(data) - 1

    with pytest.raises(jobs.ImportRefused) as refused:
        jobs.file_import(path=str(path), owner=owner)

    assert f"unpack to {len(data):,} bytes" in str(refused.value)
    assert "CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES" in str(refused.value)
    assert not Conversation.objects.exists()


def test_an_ordinary_export_zip_passes_the_checks(tmp_path, owner):
    path = tmp_path / "export.zip"
    path.write_bytes(zipped({"conversations.json": dumps([simple("Fine")])}))

    _, result = jobs.file_import(path=str(path), owner=owner)

    assert result.conversations_imported == 1


def one_member_listed(times: int, data: bytes) -> bytes:
    """A zip holding `data` once, listed `times` times in its directory under the names of
    shards (conversations-000.json, -001.json, …): a small zip read `times` times over."""
    import io
    import struct

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations-000.json", data)
    raw = buffer.getvalue()
    eocd = raw.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", raw[eocd + 12 : eocd + 20])
    record = raw[cd_offset : cd_offset + cd_size]
    records = b"".join(
        record.replace(b"conversations-000.json", f"conversations-{i:03d}.json".encode())
        for i in range(times)
    )
    end = bytearray(raw[eocd:])
    struct.pack_into("<HHII", end, 8, times, times, len(records), cd_offset)
    return raw[:cd_offset] + records + bytes(end)


def test_a_zip_listing_one_members_data_under_many_names_is_refused(tmp_path, owner):
    path = tmp_path / "listed.zip"
    path.write_bytes(one_member_listed(100, dumps([simple(f"C{i}") for i in range(50)])))
    with zipfile.ZipFile(path) as archive:  # a zip Python reads, with 100 shards
        assert len(archive.namelist()) == 100

    with pytest.raises(jobs.ImportRefused, match="over the data of another file"):
        jobs.upload_inspect(str(path))
    with pytest.raises(jobs.ImportRefused, match="over the data of another file"):
        jobs.file_import(path=str(path), owner=owner)
    assert not Conversation.objects.exists()


def test_a_file_of_hundreds_of_megabytes_of_whitespace_is_read_in_seconds(tmp_path, owner):
    """Whitespace is skipped by a regex, not a loop over characters (which took ~20 s)."""
    import time

    path = tmp_path / "conversations.json"
    spaces = b" \n\t\r" * (256 * 1024)
    with open(path, "wb") as f:
        f.write(b"[")
        for _ in range(200):  # 200 MiB
            f.write(spaces)
        f.write(dumps([simple("After the spaces")])[1:])

    began = time.process_time()
    _, result = jobs.file_import(path=str(path), owner=owner)
    took = time.process_time() - began

    assert result.conversations_imported == 1
    assert took < 6, took


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 7, 64])
def test_whitespace_chunks_skipped_whole_lose_nothing_around_them(chunk_size):
    import io

    from conversations.transfer.jsonstream import JSONStream

    text = '[    1 ,\t\t\t\t2,  "a    b"  \r\n\r\n , {"k" :    [ ]}    ,"    "    ]    '
    stream = JSONStream(io.BytesIO(text.encode()), chunk_size=chunk_size)
    assert list(stream.array_items()) == [1, 2, "a    b", {"k": []}, "    "]
