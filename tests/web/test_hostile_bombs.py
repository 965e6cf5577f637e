"""Zip and JSON bombs uploaded to a real server process: each is refused or read quickly,
and the server's memory stays flat — its peak resident size (VmHWM in /proc/<pid>/status)
measured, not estimated.

The server is uvicorn serving chatsite in a process of its own (not a thread of the test's),
so that its memory is its own; it uses the test's database.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from django.db import connection
from django.test import Client

from conversations.models import ImportJob
from tests.support.chatgpt_export import dumps, simple

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024

# What one bomb may add to the server's peak resident memory, over its idle peak.
RSS_BOUND = 150 * MIB
# CPU seconds of the server a refusal may cost (the zip is checked before anything is read),
# and reading a bomb to its end past that check. CPU, not wall-clock time: a busy test
# machine stretches the latter.
REFUSED_WITHIN = 2.0
READ_WITHIN = 30.0

pytestmark = pytest.mark.django_db(transaction=True)


# --- The server process -----------------------------------------------------------------

_SERVE = """
import json, os, sys
import django
django.setup()
from django.conf import settings
for name, value in json.loads(sys.argv[2]).items():
    setattr(settings, name, value)
import uvicorn
from django.core.asgi import get_asgi_application
uvicorn.run(get_asgi_application(), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", lifespan="off")
"""


def database_url() -> str:
    """The test database, as a DATABASE_URL the server process reads (SQLite or PostgreSQL)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of process `pid`, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    url: str
    pid: int
    log: Path

    def peak(self) -> int:
        return memory(self.pid)["VmHWM"]

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


def start_server(tmp_path: Path, overrides: dict[str, object]) -> Iterator[Server]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / f"server-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(port), json.dumps(overrides)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process.pid, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx2.get(server.url + "/accounts/login/", timeout=2)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    """chatsite as deployed: the default import limits."""
    yield from start_server(tmp_path, {"CHAT_IMPORT_TEMP_DIR": str(tmp_path / "uploads")})


@pytest.fixture
def lax_server(tmp_path) -> Iterator[Server]:
    """The zip-bomb check off (a ratio no bomb reaches): the bombs are read to the end."""
    yield from start_server(
        tmp_path,
        {
            "CHAT_IMPORT_TEMP_DIR": str(tmp_path / "uploads"),
            "CHAT_IMPORT_MAX_COMPRESSION_RATIO": 10**9,
        },
    )


class Browser:
    """The owner, logged in over HTTP, uploading on the import page."""

    def __init__(self, server: Server, owner) -> None:
        django_client = Client()
        django_client.force_login(owner)
        self.http = httpx2.Client(base_url=server.url, timeout=120)
        self.http.cookies.set("sessionid", django_client.cookies["sessionid"].value)
        page = self.http.get("/import/")
        assert page.status_code == 200, page.text[:500]
        self.token = self.http.cookies["csrftoken"]

    def upload(self, path: Path) -> tuple[httpx2.Response, float]:
        began = time.monotonic()
        with open(path, "rb") as f:
            response = self.http.post(
                "/import/",
                files={"file": (path.name, f, "application/zip")},
                headers={"X-CSRFToken": self.token},
            )
        return response, time.monotonic() - began


def warmed(server: Server, browser: Browser) -> int:
    """The server's peak memory once it has served the import page and imported a file."""
    small = server.log.parent / "small.json"
    small.write_bytes(dumps([simple("Warm-up")]))
    response, _ = browser.upload(small)
    assert response.status_code == 302, response.text[:500]
    job, _ = job_finished(timeout=30)
    assert job.status == ImportJob.Status.DONE, job.error
    return server.peak()


def job_finished(timeout: float) -> tuple[ImportJob, float]:
    began = time.monotonic()
    while True:
        job = ImportJob.objects.latest("id")
        if job.finished:
            return job, time.monotonic() - began
        assert time.monotonic() - began < timeout, (job.status, job.bytes_read)
        time.sleep(0.1)


# --- The bombs --------------------------------------------------------------------------

EMOJI = "\U0001f600"


def emoji_bomb(tmp_path: Path) -> Path:
    """The issue's: a ChatGPT export of one conversation holding a string of 250 million
    emoji (1 GB of UTF-8), then an ordinary conversation; a zip of about 1 MB."""
    path = tmp_path / "emoji.zip"
    huge = simple("Huge")
    huge["mapping"]["huge-node"] = {"id": "huge-node", "message": None, "parent": None}
    before, after = json.dumps(huge).rsplit('"message": null', 1)
    block = (EMOJI * 1_000_000).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as member:
            member.write(b"[" + before.encode() + b'"message": "')
            for _ in range(250):
                member.write(block)
            member.write(b'"' + after.encode() + b", " + json.dumps(simple("After")).encode())
            member.write(b"]")
    return path


def whitespace_bomb(tmp_path: Path) -> Path:
    """2 GiB of whitespace inside an array, then one conversation: a zip of about 2 MB."""
    path = tmp_path / "whitespace.zip"
    spaces = b" " * MIB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as member:
            member.write(b"[")
            for _ in range(2048):
                member.write(spaces)
            member.write(dumps([simple("After the spaces")])[1:])
    return path


def listed_bomb(tmp_path: Path, *, same_name: bool) -> Path:
    """One member of 20 MiB of conversations listed 100 times in the zip's directory: under
    one name (the issue's), or under the names of shards."""
    data = dumps([simple(f"Conversation {i}", turns=20) for i in range(1200)])
    while len(data) < 20 * MIB:
        data = data[:-1] + b"," + data[1:]  # the array twice over
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations-000.json", data)
    raw = buffer.getvalue()
    eocd = raw.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", raw[eocd + 12 : eocd + 20])
    record = raw[cd_offset : cd_offset + cd_size]
    records = b"".join(
        record
        if same_name
        else record.replace(b"conversations-000.json", f"conversations-{i:03d}.json".encode())
        for i in range(100)
    )
    end = bytearray(raw[eocd:])
    struct.pack_into("<HHII", end, 8, 100, 100, len(records), cd_offset)
    path = tmp_path / ("listed-same.zip" if same_name else "listed-shards.zip")
    path.write_bytes(raw[:cd_offset] + records + bytes(end))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """Each bomb built once (writing 3 GB through deflate takes a while)."""
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "emoji": emoji_bomb(folder),
        "whitespace": whitespace_bomb(folder),
        "listed-same": listed_bomb(folder, same_name=True),
        "listed-shards": listed_bomb(folder, same_name=False),
    }


# --- Tests ------------------------------------------------------------------------------


def test_every_bomb_is_refused_at_once_by_the_deployed_limits_in_flat_memory(
    server, owner, tmp_path, bombs
):
    browser = Browser(server, owner)
    idle = warmed(server, browser)
    bombs = [
        (bombs["emoji"], "(CHAT_IMPORT_MAX_COMPRESSION_RATIO)"),
        (bombs["whitespace"], "(CHAT_IMPORT_MAX_COMPRESSION_RATIO)"),
        (bombs["listed-same"], "two files named"),
        (bombs["listed-shards"], "over the data of another file"),
    ]
    for path, reason in bombs:
        assert path.stat().st_size < 3 * MIB, path  # small uploads, all of them

        before = server.cpu()
        response, _ = browser.upload(path)
        took = server.cpu() - before

        assert response.status_code == 422, (path.name, response.status_code)
        assert reason in response.text, path.name
        assert "Traceback" not in response.text
        print(f"{path.name}: {took:.2f} s CPU, peak +{(server.peak() - idle) / MIB:.0f} MiB")
        assert took < REFUSED_WITHIN, (path.name, took)
        assert server.peak() - idle < RSS_BOUND, (path.name, server.peak() - idle)
    assert ImportJob.objects.count() == 1  # the warm-up's: no bomb became a job
    assert not list((tmp_path / "uploads").iterdir())  # and none was kept


def test_bombs_read_to_the_end_past_the_zip_check_keep_memory_flat(lax_server, owner, bombs):
    """With the compression-ratio check out of the way, the reader itself is measured: the
    1 GB string is skipped without being held (over CHAT_IMPORT_MAX_CONVERSATION_BYTES), and
    2 GiB of whitespace is skipped at the speed of reading it."""
    browser = Browser(lax_server, owner)
    idle = warmed(lax_server, browser)

    bomb = bombs["emoji"]
    before = lax_server.cpu()
    response, _ = browser.upload(bomb)
    assert response.status_code == 302, response.text[:500]
    job, _ = job_finished(timeout=300)
    assert lax_server.cpu() - before < READ_WITHIN, lax_server.cpu() - before
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.conversations_imported == 1  # "After"
    assert "(CHAT_IMPORT_MAX_CONVERSATION_BYTES)" in job.report[0]["reason"]
    emoji_peak = lax_server.peak() - idle
    print(f"emoji read: {lax_server.cpu() - before:.1f} s CPU, peak +{emoji_peak / MIB:.0f} MiB")
    assert emoji_peak < RSS_BOUND, emoji_peak

    bomb = bombs["whitespace"]
    before = lax_server.cpu()
    response, _ = browser.upload(bomb)
    assert response.status_code == 302, response.text[:500]
    job, _ = job_finished(timeout=300)
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.conversations_imported == 1
    assert lax_server.cpu() - before < READ_WITHIN, lax_server.cpu() - before
    whitespace_peak = lax_server.peak() - idle
    print(
        f"spaces read: {lax_server.cpu() - before:.1f} s CPU, peak +{whitespace_peak / MIB:.0f} MiB"
    )
    assert whitespace_peak < RSS_BOUND, whitespace_peak
