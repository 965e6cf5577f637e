"""Streaming benchmark: chatsite's full UI path against a client reading the model directly.

    .venv/bin/python bench/stream_bench.py                      # 1 uvicorn process, SQLite
    .venv/bin/python bench/stream_bench.py --db postgres        # 1 process, PostgreSQL
    .venv/bin/python bench/stream_bench.py --workers 2          # 2 processes, PostgreSQL + Redis
    .venv/bin/python bench/stream_bench.py --quick              # fewer replies, about a minute
    .venv/bin/python bench/stream_bench.py --quick --smoke      # a few replies, under 30 s (CI)
    .venv/bin/python bench/stream_bench.py --soak 1000          # then 1,000 more replies: RSS
    .venv/bin/python bench/stream_bench.py --json               # machine output on stdout

It prints figures and asserts nothing. Everything runs on 127.0.0.1:

- the fake OpenAI-compatible server of the tests (tests/support/fake_openai.py) in a
  process of its own, so that its CPU is not counted as the app's, answering every
  request with the scenario's reply: (TTFT 0 ms, 0 ms between tokens, 200 tokens) and
  (TTFT 200 ms, 10 ms between tokens, 100 tokens);
- **direct**: a client streaming a chat completion from the fake server itself (SSE to
  `[DONE]`): time to the first token and to the end, per reply;
- **chatsite**: the app served by real uvicorn processes (`python -m uvicorn
  chatsite.asgi:application`, with uvloop and httptools when they import), on a SQLite
  file in a temp folder, or on a PostgreSQL database of its own (`bench_<pid>`, dropped at
  the end); with `--workers 2`, two processes on two ports with REDIS_URL (db 15, flushed
  at the start and the end), where each reply is POSTed to one and its stream followed
  from the other. One user per concurrent stream, logged in through the login form, each
  with 100 older conversations so that the sidebar is always full (CHAT_SIDEBAR_LIMIT).
  A reply is: POST the composer form as htmx does (`HX-Request`, `X-CSRFToken`, field
  `content`, to `/send/`), follow the `sse-connect` URL of the answer to the `done`
  event; afterwards the bench checks in the database that every reply is `complete` with
  the full text. TTFT is from sending the POST to the first event that carries reply
  text (the first of `delta`, `block`, `tail`, `render` with text in it); total is from
  the POST to `done`.

Per scenario and number of replies at once (1: one after the other; 20, 50: started
together, in rounds): median and p95 of TTFT and total, token rate (tokens received per
second of wall time over all streams of a round), server CPU per reply (utime + stime
from /proc of the uvicorn processes and their children over the run, divided by the
replies; the fake server's own for direct), server RSS before and after, and each
figure against direct: TTFT added (ms, and as a ratio), total added (ms), token rate as
a ratio. Also the start-up time (spawn to the first 200 on /accounts/login/).

The app runs with its own settings through a shim module in the temp folder that changes
two things no figure depends on: STATIC_ROOT (collectstatic's manifest lives in the temp
folder) and PASSWORD_HASHERS (MD5 accepted first, as in the tests, so that logging 50
users in does not take a minute of CPU). The client (this process) shares the machine's
cores with the servers; the header prints the load average before and after, as other
work on the machine skews every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, TMP, configure

if TYPE_CHECKING:
    import httpx2

PYTHON = sys.executable
PASSWORD = "bench-pass-123"  # noqa: S105 - a throwaway user of a throwaway database
MODEL = "gpt-4o-mini"
TOKEN = "w{} "  # noqa: S105 - the i-th token (word) of every reply
TEXT_EVENTS = ("delta", "block", "tail", "render")
SSE_CONNECT = re.compile(r'sse-connect="([^"]+)"')
REPLY_ID = re.compile(r"/m/(\d+)/")
TAG = re.compile(r"<[^>]*>")
REDIS_URL = "redis://127.0.0.1:6379/15"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (name, first_delay s, delay s, tokens)
SCENARIOS = [
    ("0 ms TTFT, 0 ms ITL, 200 tokens", 0.0, 0.0, 200),
    ("200 ms TTFT, 10 ms ITL, 100 tokens", 0.2, 0.01, 100),
]

# The fake server's process: started with the repository root and TOKEN; each line on
# stdin ("first_delay delay tokens") makes that the reply to every request from then on.
FAKE_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.fake_openai import FakeOpenAI, Reply
fake = FakeOpenAI()
fake.start()
print(fake.base_url, flush=True)
for line in sys.stdin:
    first_delay, delay, n = line.split()
    reply = Reply(
        tokens=[sys.argv[2].format(i) for i in range(int(n))],
        first_delay=float(first_delay),
        delay=float(delay),
    )
    fake.reset()
    fake.script(*[reply] * 200_000)
    print("ok", flush=True)
fake.stop()
"""


# -- processes -----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from the state on (comm may hold spaces)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants now alive."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, their live descendants and their reaped children."""
    ticks = 0
    for root in pids:
        for pid in process_tree(root):
            fields = _stat(pid)
            if fields is not None:
                # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 from the state.
                ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLK_TCK


def rss_mb(pid: int) -> float:
    """VmRSS of a process and its descendants, in MB."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServer:
    """The fake OpenAI-compatible server, in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", FAKE_CHILD, str(ROOT), TOKEN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = ""

    def wait_up(self) -> str:
        """Its `http://127.0.0.1:PORT/v1`, once it listens."""
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError("the fake OpenAI server did not start")
        return self.base_url

    def configure(self, first_delay: float, delay: float, tokens: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{first_delay} {delay} {tokens}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the fake OpenAI server did not take its script")

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def server_options() -> tuple[list[str], str]:
    """uvicorn's --loop/--http options: uvloop and httptools when they import."""
    probe = subprocess.run(
        [PYTHON, "-c", "import uvloop, httptools"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return ["--loop", "uvloop", "--http", "httptools"], "uvloop + httptools"
    return [], "asyncio + h11 (uvloop/httptools not installed)"


class AppServer:
    """One uvicorn process serving chatsite."""

    def __init__(self, env: dict[str, str], options: list[str]) -> None:
        self.port = free_port()
        self.log = TMP / f"uvicorn-{self.port}.log"
        command = [PYTHON, "-m", "uvicorn", "chatsite.asgi:application"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", *options]
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.startup = self._wait_up(started)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_up(self, started: float) -> float:
        import httpx2

        deadline = started + 60
        with httpx2.Client(timeout=5) as http:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if http.get(self.url + "/accounts/login/").status_code == 200:
                        return time.perf_counter() - started
                except httpx2.TransportError:
                    pass
                time.sleep(0.01)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"uvicorn on port {self.port} did not serve the login page:\n{tail}")

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the bench's own database and Redis db -------------------------------------------


def create_postgres_db(name: str) -> str:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def drop_postgres_db(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


# -- the app's side: env, users, checks ----------------------------------------------

# The app's settings, but for two things that no figure depends on: collectstatic's
# manifest lives in the temp folder, and the bench's users (only theirs) have MD5 password
# hashes, as in the tests, so that logging 50 of them in takes no minute of CPU.
SHIM = """from django.conf import global_settings

from chatsite.settings import *  # noqa: F403

STATIC_ROOT = {static!r}
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *global_settings.PASSWORD_HASHERS,
]
"""


def app_env(database_url: str, fake_url: str, redis: bool) -> dict[str, str]:
    """The environment of the uvicorn processes (the app reads its settings from it)."""
    (TMP / "bench_settings.py").write_text(SHIM.format(static=str(TMP / "static")))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CHAT_", "OPENAI_", "LOCAL_MODEL_", "DATABASE_", "REDIS_"))
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(TMP), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-long-enough-to-be-accepted-0123456789",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL if redis else "",
            "LLM_BACKEND": "openai",
            "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_MODEL": MODEL,
            "OPENAI_MAX_RETRIES": "0",
            "CHAT_LOG_FILE": str(TMP / "chat.log"),
            "CHAT_AUTO_TITLE": "false",
            "CHAT_MAX_CONCURRENT_REPLIES": "0",
            "CHAT_MAX_MESSAGES_PER_MINUTE": "0",
            "CHAT_MAX_TOKENS_PER_DAY": "0",
            "CHAT_SIDEBAR_LIMIT": "100",
            "SERVESTATIC_USE_FINDERS": "true",
            # Plain HTTP on loopback: the cookies must go over it.
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "LOGIN_THROTTLE": "false",
        }
    )
    return env


def collectstatic(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`manage.py collectstatic` into the temp folder, as a server would (in the background)."""
    return subprocess.Popen(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def create_users(count: int, sidebar: int) -> list[str]:
    """Users bench0… (MD5 password hashes: see SHIM), `sidebar` chats each."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import MD5PasswordHasher

    from conversations.models import Conversation

    hasher = MD5PasswordHasher()
    password = hasher.encode(PASSWORD, hasher.salt())
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench{i}", password=password) for i in range(count)]
    )
    Conversation.objects.bulk_create(
        [
            Conversation(owner=user, title=f"Older conversation {j}", model=MODEL)
            for user in users
            for j in range(sidebar)
        ]
    )
    return [user.get_username() for user in users]


def check_saved(reply_ids: list[int], expected: str, wait: float = 10.0) -> tuple[int, list[str]]:
    """How many of these replies are `complete` with the full text in the database, and
    what the others are (waiting up to `wait` seconds for them)."""
    from conversations.models import Message

    deadline = time.monotonic() + wait
    while True:
        rows = Message.objects.filter(pk__in=reply_ids).values_list(
            "pk", "status", "content", "error"
        )
        bad = [
            f"#{pk} {status}, {len(content)}/{len(expected)} chars{': ' + error if error else ''}"
            for pk, status, content, error in rows
            if status != "complete" or content != expected
        ]
        bad += [f"#{pk} missing" for pk in set(reply_ids) - {row[0] for row in rows}]
        if not bad or time.monotonic() > deadline:
            return len(reply_ids) - len(bad), bad
        time.sleep(0.1)


# -- the client ----------------------------------------------------------------------


@dataclass
class Sample:
    """One reply as the client saw it (seconds from the request)."""

    ttft: float | None = None
    total: float | None = None
    tokens: int = 0
    reply_id: int | None = None
    events: Counter[str] = field(default_factory=Counter)
    error: str = ""


def has_text(data: str) -> bool:
    return bool(html.unescape(TAG.sub("", data)).strip())


async def direct_reply(http: httpx2.AsyncClient, base_url: str) -> Sample:
    """A streaming chat completion read from the fake server itself, to `[DONE]`."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "bench"}],
        "stream": True,
    }
    sample = Sample()
    started = time.perf_counter()
    try:
        async with http.stream(
            "POST",
            f"{base_url}/chat/completions",
            json=body,
            headers={"Authorization": "Bearer sk-bench"},
        ) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    sample.total = time.perf_counter() - started
                    break
                choices = json.loads(payload).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    sample.tokens += 1
                    if sample.ttft is None:
                        sample.ttft = time.perf_counter() - started
    except Exception as exc:  # a benchmark reports, it does not stop
        sample.error = f"{type(exc).__name__}: {exc}"
    if sample.total is None and not sample.error:
        sample.error = "no [DONE]"
    return sample


@dataclass
class User:
    """A logged-in browser: its cookies and the page's CSRF token."""

    http: httpx2.AsyncClient
    csrf: str


async def log_in(username: str, server: str) -> User:
    import httpx2

    http = httpx2.AsyncClient(timeout=120)
    page = (await http.get(f"{server}/accounts/login/")).text
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = await http.post(
        f"{server}/accounts/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
    )
    if response.status_code != 302:
        raise RuntimeError(f"login of {username} failed: {response.status_code}")
    chat = (await http.get(f"{server}/")).text
    return User(http, chat.split('"X-CSRFToken": "')[1].split('"')[0])


async def chatsite_reply(user: User, post_to: str, watch_from: str, index: int) -> Sample:
    """POST the composer as htmx does, then follow the reply's SSE stream to `done`."""
    sample = Sample()
    started = time.perf_counter()
    try:
        response = await user.http.post(
            f"{post_to}/send/",
            data={"content": f"Benchmark message {index}"},
            headers={"HX-Request": "true", "X-CSRFToken": user.csrf},
        )
        found = SSE_CONNECT.search(response.text)
        if response.status_code != 200 or found is None:
            sample.error = f"POST /send/: {response.status_code}, no sse-connect"
            return sample
        url = html.unescape(found.group(1))
        reply = REPLY_ID.search(url)
        sample.reply_id = int(reply.group(1)) if reply else None
        event, data = "message", []
        async with user.http.stream(
            "GET", watch_from + url, headers={"Accept": "text/event-stream"}
        ) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and (data or event != "message"):
                    sample.events[event] += 1
                    now = time.perf_counter() - started
                    if event == "done":
                        sample.total = now
                        # A reply over before the stream began comes whole with `done`:
                        # that is when its first text shows.
                        if sample.ttft is None:
                            sample.ttft = now
                        break
                    if sample.ttft is None and event in TEXT_EVENTS and has_text("\n".join(data)):
                        sample.ttft = now
                    event, data = "message", []
    except Exception as exc:  # a benchmark reports, it does not stop
        sample.error = f"{type(exc).__name__}: {exc}"
    if sample.total is None and not sample.error:
        sample.error = "the stream ended without `done`"
    return sample


async def rounds(
    reply: Callable[[int], Awaitable[Sample]], at_once: int, count: int
) -> tuple[list[Sample], float]:
    """`count` replies, `at_once` at a time (started together); samples and wall time."""
    samples: list[Sample] = []
    wall = 0.0
    while len(samples) < count:
        batch = min(at_once, count - len(samples))
        started = time.perf_counter()
        samples += await asyncio.gather(*(reply(i) for i in range(batch)))
        wall += time.perf_counter() - started
    return samples, wall


# -- figures -------------------------------------------------------------------------


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, round(len(ordered) * 0.95) - 1)]


def figures(samples: list[Sample], wall: float, cpu: float) -> dict[str, Any]:
    ok = [s for s in samples if not s.error and s.ttft is not None and s.total is not None]
    ttft = [s.ttft for s in ok if s.ttft is not None]
    total = [s.total for s in ok if s.total is not None]
    events: Counter[str] = Counter()
    for s in samples:
        events.update(s.events)
    errors = Counter(s.error for s in samples if s.error)
    return {
        "replies": len(samples),
        "ok": len(ok),
        "ttft_p50_ms": ms(p50(ttft)),
        "ttft_p95_ms": ms(p95(ttft)),
        "total_p50_ms": ms(p50(total)),
        "total_p95_ms": ms(p95(total)),
        "wall_s": round(wall, 3),
        "tokens": sum(s.tokens for s in ok),
        "token_rate": round(sum(s.tokens for s in ok) / wall, 1) if wall else None,
        "cpu_ms_per_reply": round(cpu * 1000 / len(samples), 2) if samples else None,
        "events_per_reply": {k: round(v / len(samples), 1) for k, v in sorted(events.items())},
        "errors": dict(errors),
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def compare(direct: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    def added(key: str) -> float | None:
        if direct[key] is None or app[key] is None:
            return None
        return round(app[key] - direct[key], 2)

    def ratio(key: str) -> float | None:
        if not direct[key] or app[key] is None:
            return None
        return round(app[key] / direct[key], 3)

    return {
        "ttft_p50_added_ms": added("ttft_p50_ms"),
        "ttft_p50_ratio": ratio("ttft_p50_ms"),
        "ttft_p95_added_ms": added("ttft_p95_ms"),
        "ttft_p95_ratio": ratio("ttft_p95_ms"),
        "total_p50_added_ms": added("total_p50_ms"),
        "total_p95_added_ms": added("total_p95_ms"),
        "token_rate_ratio": ratio("token_rate"),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_added(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.1f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"


def table(run: dict[str, Any]) -> str:
    lines = [
        "| upstream | at once | replies | TTFT p50 ms | TTFT p95 ms | total p50 ms | "
        "total p95 ms | tokens/s | server CPU/reply | RSS MB | saved |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in run["rows"]:
        d, a, c = row["direct"], row["chatsite"], row["vs_direct"]
        lines.append(
            f"| {row['scenario']} | {row['at_once']} | {a['replies']} "
            f"| {fmt(d['ttft_p50_ms'])} → {fmt(a['ttft_p50_ms'])} "
            f"({fmt_added(c['ttft_p50_added_ms'])}, {fmt_ratio(c['ttft_p50_ratio'])}) "
            f"| {fmt(d['ttft_p95_ms'])} → {fmt(a['ttft_p95_ms'])} "
            f"({fmt_added(c['ttft_p95_added_ms'])}, {fmt_ratio(c['ttft_p95_ratio'])}) "
            f"| {fmt(d['total_p50_ms'])} → {fmt(a['total_p50_ms'])} "
            f"({fmt_added(c['total_p50_added_ms'])}) "
            f"| {fmt(d['total_p95_ms'])} → {fmt(a['total_p95_ms'])} "
            f"({fmt_added(c['total_p95_added_ms'])}) "
            f"| {fmt(d['token_rate'], 0)} → {fmt(a['token_rate'], 0)} "
            f"({fmt_ratio(c['token_rate_ratio'])}) "
            f"| {fmt(d['cpu_ms_per_reply'])} → {fmt(a['cpu_ms_per_reply'])} ms "
            f"| {mb(row['rss_before'])} → {mb(row['rss_after'])} "
            f"| {row['saved']}/{a['replies']} |"
        )
    for row in run["rows"]:
        problems = [*row["unsaved"], *row["chatsite"]["errors"], *row["direct"]["errors"]]
        if problems:
            lines.append(f"\n{row['scenario']}, {row['at_once']} at once: " + "; ".join(problems))
    return "\n".join(lines)


def header(run: dict[str, Any]) -> str:
    setup = run["setup"]
    starts = ", ".join(f"{s:.2f} s" for s in setup["startup_s"])
    return "\n".join(
        [
            f"chatsite stream benchmark ({setup['cores']} cores, Python {setup['python']}, "
            f"uvicorn {setup['uvicorn']} with {setup['loop']}; {setup['workers']} process(es), "
            f"{setup['db']}, {'Redis' if setup['redis'] else 'no Redis'}"
            f"{', POST to one, stream from the other' if setup['workers'] > 1 else ''}; "
            f"a user per stream, {setup['sidebar']} older chats each)",
            f"start-up (spawn to first 200 on /accounts/login/): {starts}; "
            f"idle RSS {mb(setup['idle_rss'])} MB; load average (1/5/15 min) before "
            f"{'/'.join(map(str, setup['load_before']))}, after "
            f"{'/'.join(map(str, setup['load_after']))}",
            "each cell: direct → chatsite (+ms added, × ratio to direct); CPU: the fake "
            "server's per reply → the app's; RSS: the app's before → after",
        ]
    )


# -- the run -------------------------------------------------------------------------


@dataclass
class Plan:
    sequential: int
    concurrency: list[int]
    rounds: int


def plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan(sequential=2, concurrency=[3], rounds=1)
    if args.quick:
        return Plan(sequential=3, concurrency=[20, 50], rounds=1)
    return Plan(sequential=args.replies, concurrency=[20, 50], rounds=args.rounds)


def rss_now(servers: list[AppServer]) -> list[float]:
    """Each server's RSS in MB."""
    return [round(server.rss(), 1) for server in servers]


def mb(values: list[float]) -> str:
    return " + ".join(f"{value:.0f}" for value in values)


BEGAN = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - BEGAN:5.1f} s] {message}", file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace, fake: FakeServer, servers: list[AppServer]) -> dict:
    todo = plan(args)
    users_needed = max([1, *todo.concurrency, args.soak_at_once if args.soak else 1])
    usernames = create_users(users_needed, args.sidebar)
    progress(f"{len(usernames)} users created; logging them in")
    expected_cache: dict[int, str] = {}

    def expected(tokens: int) -> str:
        if tokens not in expected_cache:
            expected_cache[tokens] = "".join(TOKEN.format(i) for i in range(tokens))
        return expected_cache[tokens]

    async def setup_clients() -> list[User]:
        # Every server gets the same cookies (a cookie is for a host, whatever its port).
        return list(await asyncio.gather(*(log_in(u, servers[0].url) for u in usernames)))

    loop = asyncio.new_event_loop()
    users = loop.run_until_complete(setup_clients())
    import httpx2

    direct_http = httpx2.AsyncClient(
        timeout=120, limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    )

    def ends(index: int) -> tuple[str, str]:
        post = servers[index % len(servers)].url
        watch = servers[(index + 1) % len(servers)].url if len(servers) > 1 else post
        return post, watch

    counter = iter(range(10**9))

    def app_reply(i: int) -> Awaitable[Sample]:
        post, watch = ends(next(counter))
        return chatsite_reply(users[i], post, watch, i)

    def direct(_: int) -> Awaitable[Sample]:
        return direct_reply(direct_http, fake.base_url)

    rows = []
    warmed = False
    try:
        for number, (name, first_delay, delay, tokens) in enumerate(SCENARIOS):
            if args.scenario is not None and number != args.scenario:
                continue
            warmed, was_warm = True, warmed
            fake.configure(first_delay, delay, tokens)
            # Warm up both paths (templates, connections, the SDK client), each server
            # posting and watching.
            for _ in range(2 * len(servers) if not was_warm else 0):
                loop.run_until_complete(app_reply(0))
                loop.run_until_complete(direct(0))
            for at_once in [1, *todo.concurrency]:
                count = todo.sequential if at_once == 1 else at_once * todo.rounds
                progress(f"{name}, {at_once} at once: {count} replies, direct then chatsite")
                before = fake.cpu()
                samples, wall = loop.run_until_complete(rounds(direct, at_once, count))
                direct_figures = figures(samples, wall, fake.cpu() - before)
                rss_before = rss_now(servers)
                before = sum(server.cpu() for server in servers)
                samples, wall = loop.run_until_complete(rounds(app_reply, at_once, count))
                cpu = sum(server.cpu() for server in servers) - before
                rss_after = rss_now(servers)
                # Tokens received: a reply's, once its stream reached `done`.
                for sample in samples:
                    sample.tokens = tokens if sample.total is not None and not sample.error else 0
                app_figures = figures(samples, wall, cpu)
                ids = [s.reply_id for s in samples if s.reply_id is not None]
                saved, unsaved = check_saved(ids, expected(tokens)) if ids else (0, [])
                rows.append(
                    {
                        "scenario": name,
                        "first_delay_ms": first_delay * 1000,
                        "delay_ms": delay * 1000,
                        "tokens_per_reply": tokens,
                        "at_once": at_once,
                        "direct": direct_figures,
                        "chatsite": app_figures,
                        "vs_direct": compare(direct_figures, app_figures),
                        "rss_before": rss_before,
                        "rss_after": rss_after,
                        "saved": saved,
                        "unsaved": unsaved,
                    }
                )
        soak = run_soak(args, loop, fake, servers, app_reply, expected) if args.soak else None
    finally:
        for user in users:
            loop.run_until_complete(user.http.aclose())
        loop.run_until_complete(direct_http.aclose())
        loop.close()
    return {"rows": rows, "soak": soak}


def run_soak(
    args: argparse.Namespace,
    loop: asyncio.AbstractEventLoop,
    fake: FakeServer,
    servers: list[AppServer],
    app_reply: Callable[[int], Awaitable[Sample]],
    expected: Callable[[int], str],
) -> list[dict[str, Any]]:
    """`--soak N` replies of the first scenario, `--soak-at-once` at a time: RSS every 100."""
    name, first_delay, delay, tokens = SCENARIOS[0]
    fake.configure(first_delay, delay, tokens)
    progress(f"soak: {args.soak} replies ({name}), {args.soak_at_once} at once")
    points = [{"replies": 0, "rss_mb": rss_now(servers), "saved": 0, "errors": 0}]
    if not args.json:
        print(f"\nsoak ({name}, {args.soak_at_once} at once): replies → RSS MB")
        print(f"     0 → {mb(points[0]['rss_mb'])}", flush=True)
    done = saved = errors = 0
    began = time.perf_counter()
    while done < args.soak:
        chunk = min(100, args.soak - done)
        samples, _ = loop.run_until_complete(rounds(app_reply, args.soak_at_once, chunk))
        done += chunk
        errors += sum(1 for s in samples if s.error)
        saved += check_saved([s.reply_id for s in samples if s.reply_id], expected(tokens))[0]
        point = {
            "replies": done,
            "rss_mb": rss_now(servers),
            "saved": saved,
            "errors": errors,
            "elapsed_s": round(time.perf_counter() - began, 1),
        }
        points.append(point)
        if not args.json:
            print(
                f"{done:6d} → {mb(point['rss_mb'])}   ({saved} saved whole, {errors} errors, "
                f"{point['elapsed_s']} s)",
                flush=True,
            )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, choices=[1, 2], default=1)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default=None)
    parser.add_argument("--redis", action="store_true", help="REDIS_URL with one worker too")
    parser.add_argument("--quick", action="store_true", help="fewer replies (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="with --quick: a few, < 30 s")
    parser.add_argument("--replies", type=int, default=20, help="sequential replies (full run)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 20 and of 50 at once")
    parser.add_argument("--sidebar", type=int, default=100, help="older chats per user")
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="then N more replies")
    parser.add_argument("--soak-at-once", type=int, default=10)
    parser.add_argument("--no-uvloop", action="store_true", help="uvicorn's default loop/http")
    parser.add_argument(
        "--scenario", type=int, choices=range(len(SCENARIOS)), help="only this one (0 or 1)"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of tables")
    args = parser.parse_args()
    db = args.db or ("postgres" if args.workers > 1 else "sqlite")
    if args.workers > 1 and db != "postgres":
        parser.error("--workers 2 needs PostgreSQL (--db postgres)")
    redis = args.redis or args.workers > 1

    started = time.perf_counter()
    pg_name = f"bench_{os.getpid()}"
    database_url = f"sqlite:///{TMP / 'db.sqlite3'}"
    fake: FakeServer | None = None
    servers: list[AppServer] = []
    try:
        if db == "postgres":
            database_url = create_postgres_db(pg_name)
        if redis:
            flush_redis()
        load_before = os.getloadavg()
        progress(f"migrating the bench database ({db}), collecting static files…")
        fake = FakeServer()
        static = collectstatic(app_env(database_url, "http://127.0.0.1:9/v1", redis))
        configure(
            collectstatic=False,
            DATABASE_URL=database_url,
            OPENAI_API_KEY="sk-bench",
            LLM_BACKEND="openai",
            REDIS_URL=REDIS_URL if redis else "",
        )
        output = static.communicate()[0]
        if static.returncode != 0:
            raise RuntimeError(f"collectstatic failed:\n{output.decode(errors='replace')}")
        options, loop_name = ([], "asyncio + h11 (--no-uvloop)")
        if not args.no_uvloop:
            options, loop_name = server_options()
        env = app_env(database_url, fake.wait_up(), redis)
        progress(f"starting {args.workers} uvicorn process(es)")
        for _ in range(args.workers):
            servers.append(AppServer(env, options))
        import uvicorn

        run = {
            "setup": {
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "uvicorn": uvicorn.__version__,
                "loop": loop_name,
                "workers": args.workers,
                "db": "PostgreSQL" if db == "postgres" else "SQLite",
                "redis": redis,
                "startup_s": [round(server.startup, 3) for server in servers],
                "idle_rss": rss_now(servers),
                "sidebar": args.sidebar,
                "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
                "load_before": [round(x, 2) for x in load_before],
            }
        }
        run.update(run_bench(args, fake, servers))
        run["setup"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
        run["setup"]["elapsed_s"] = round(time.perf_counter() - started, 1)
        if args.json:
            print(json.dumps(run, indent=2))
        else:
            print()
            print(header(run))
            print()
            print(table(run))
            print(f"\n({run['setup']['mode']} run, {run['setup']['elapsed_s']} s in all)")
    finally:
        for server in servers:
            server.stop()
        if fake is not None:
            fake.stop()
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if db == "postgres":
            drop_postgres_db(pg_name)
        if redis:
            flush_redis()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
