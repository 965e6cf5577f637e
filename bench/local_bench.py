"""The local model's figures: speed, first token, and how responsive pages stay meanwhile.

    .venv/bin/python bench/local_bench.py [--replies 5] [--max-tokens 128] [--threads 0]

Against a real uvicorn serving the app (one process, SQLite in a temp folder), with no
API key, so the bundled SmolLM2-135M-Instruct answers through llama.cpp, it prints:

1. the first load of the model (once per machine, by the model server's engine process);
2. per reply (sent over HTTP, read over SSE like a browser): time to first token as the
   browser sees it and as recorded, and generation speed in tokens per second;
3. page time of a chat page (200 messages, 100 in the sidebar) and of the admin's
   conversation list, idle and while the model generates (p50 / p95 / max);
4. three replies sent at once: they queue (LOCAL_MODEL_CONCURRENCY=1) and the wall time.

`--threads` sets LOCAL_MODEL_THREADS (0: the default, all cores but one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import configure, csrf, login, page_times, percentiles, seed

parser = argparse.ArgumentParser()
parser.add_argument("--replies", type=int, default=5)
parser.add_argument("--max-tokens", type=int, default=128)
parser.add_argument("--threads", type=int, default=0)
parser.add_argument("--requests", type=int, default=100)
args = parser.parse_args()

configure(
    OPENAI_API_KEY="",
    OPENAI_BASE_URL="",
    LLM_BACKEND="auto",
    CHAT_MAX_TOKENS=str(args.max_tokens),
    LOCAL_MODEL_THREADS=str(args.threads),
)

import httpx2  # noqa: E402

from conversations.generation.runner import runner  # noqa: E402
from conversations.llm import registry as llm  # noqa: E402
from conversations.llm.backends import local, local_engine  # noqa: E402
from conversations.models import Message  # noqa: E402
from tests.support.servers import LiveASGIServer  # noqa: E402

PROMPTS = [
    "Explain how a rainbow forms.",
    "Write a short poem about the sea.",
    "What are three tips for learning to cook?",
    "Describe a walk through a forest in autumn.",
    "Why is the sky blue?",
]


def send(http: httpx2.Client, text: str) -> tuple[Message, str, float]:
    """Send a message as htmx does; the new reply, its stream URL and when it was sent."""
    token = csrf(http)
    sent = time.perf_counter()
    response = http.post(
        "/send/", data={"content": text}, headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    stream = response.text.split('sse-connect="')[1].split('"')[0].replace("&amp;", "&")
    reply = Message.objects.filter(role="assistant").latest("id")
    return reply, stream, sent


def watch(http: httpx2.Client, stream: str) -> tuple[float | None, list[str]]:
    """Read a reply's events to the end: when the first text arrived, and the phases seen."""
    first, phases, event = None, [], ""
    with http.stream("GET", stream) as events:
        for line in events.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "phase" and line[6:]:
                phases.append(line[6:].split(":")[0].split(" (")[0])
            elif event == "delta" and first is None and line.startswith("data"):
                first = time.perf_counter()
            if event == "done":
                break
    return first, phases


def main() -> None:
    big = seed(model=llm.default_model())
    server = LiveASGIServer()
    server.start()
    big_url = f"/c/{big.pk}/"
    admin_url = "/admin/conversations/conversation/"
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="bench").update(is_staff=True, is_superuser=True)
    try:
        http = login(server.url)
        info = local.model_info()
        assert info is not None, "the local model is not installed (scripts/run installs it)"
        threads = args.threads or local_engine.default_threads()
        print(
            f"local model benchmark: {info.label}, {os.cpu_count()} cores, {threads} thread(s) "
            f"per generation, replies of up to {args.max_tokens} tokens, uvicorn, SQLite"
        )
        page_times(http, big_url, 10)
        page_times(http, admin_url, 5)
        idle_page = page_times(http, big_url, args.requests)
        idle_admin = page_times(http, admin_url, args.requests // 2)

        ttfts, recorded, speeds = [], [], []
        for i in range(args.replies):
            reply, stream, sent = send(http, PROMPTS[i % len(PROMPTS)])
            first, phases = watch(http, stream)
            runner.wait_idle(300)
            reply.refresh_from_db()
            if i == 0:
                print(
                    f"first reply after start: phases {phases or ['none']}, model loaded in "
                    f"{local_load_seconds():.2f} s, first token after "
                    f"{(first or sent) - sent:.2f} s"
                )
                continue  # the load is not part of the steady-state figures
            if first is not None:
                ttfts.append(first - sent)
            generating = (reply.total_ms or 0) - (reply.ttft_ms or 0)
            if reply.completion_tokens and generating > 0:
                speeds.append(reply.completion_tokens / (generating / 1000))
            recorded.append((reply.ttft_ms or 0) / 1000)
        print(
            f"time to first token (median of {len(ttfts)}): {statistics.median(ttfts) * 1000:.0f} ms "
            f"in the browser, {statistics.median(recorded) * 1000:.0f} ms recorded"
        )
        print(
            f"generation speed: {statistics.median(speeds):.1f} tokens/s "
            f"(median; min {min(speeds):.1f}, max {max(speeds):.1f})"
        )

        print(f"chat page idle ({len(idle_page)} GETs):          {percentiles(idle_page)}")
        busy_page, busy_admin = during_generation(server.url, big_url, admin_url)
        print(f"chat page while generating ({len(busy_page)} GETs): {percentiles(busy_page)}")
        print(f"admin list idle ({len(idle_admin)} GETs):          {percentiles(idle_admin)}")
        print(f"admin list while generating ({len(busy_admin)} GETs): {percentiles(busy_admin)}")

        started = time.perf_counter()
        sent_replies = [send(login(server.url), PROMPTS[i])[0] for i in range(3)]
        runner.wait_idle(600)
        wall = time.perf_counter() - started
        waits = []
        for reply in sent_replies:
            reply.refresh_from_db()
            waits.append(f"{(reply.ttft_ms or 0) / 1000:.2f} s")
        print(
            f"3 replies sent at once: all complete in {wall:.2f} s; first token after "
            f"{', '.join(waits)} (they take turns: LOCAL_MODEL_CONCURRENCY=1)"
        )
    finally:
        server.stop()


def local_load_seconds() -> float:
    return float(local.server_info().get("load_seconds", "nan"))


def during_generation(base: str, big_url: str, admin_url: str) -> tuple[list[float], list[float]]:
    """Page times sampled while one long reply generates (max tokens, so it keeps going)."""
    http = login(base)
    reader = login(base)
    pages: list[float] = []
    admin: list[float] = []
    from django.conf import settings

    # A long reply (the server runs in this process: it sees the change).
    settings.CHAT_MAX_TOKENS, before = 1024, settings.CHAT_MAX_TOKENS
    reply, _stream, _sent = send(http, "Write a very long story about a dragon and a castle.")
    settings.CHAT_MAX_TOKENS = before
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = runner.get(reply.pk)
        if live is not None and live.snapshot().text:
            break
        time.sleep(0.01)

    def sample() -> None:
        while runner.get(reply.pk) is not None and not runner.get(reply.pk).snapshot().done:
            pages.extend(page_times(reader, big_url, 1))
            admin.extend(page_times(reader, admin_url, 1))

    sampler = threading.Thread(target=sample)
    sampler.start()
    sampler.join()
    runner.wait_idle(300)
    return pages, admin


if __name__ == "__main__":
    main()
