"""Benchmarks for chatsite: prints figures, asserts nothing.

    .venv/bin/python bench/chat_bench.py [--streams 20] [--requests 200]

What it measures, against a real uvicorn serving the app (one process, SQLite in a temp
folder) and the fake OpenAI-compatible server from the tests, all on 127.0.0.1:

1. page time: the chat page of a conversation with 200 messages, sidebar of 100
   conversations (p50 / p95 / max over --requests sequential GETs);
2. streaming overhead: how much later than the model's first token the browser's
   first `delta` event arrives, and the same for the last token;
3. concurrency: --streams replies generated at once (50 tokens each, 20 ms apart, so
   1 s of model time each): wall time until all are complete and saved, and the page
   time while they run.
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

configure(OPENAI_API_KEY="sk-bench", LLM_BACKEND="openai")

import httpx2  # noqa: E402
from django.conf import settings  # noqa: E402

from conversations.generation.runner import runner  # noqa: E402
from conversations.models import Message  # noqa: E402
from tests.support.fake_openai import FakeOpenAI, Reply  # noqa: E402
from tests.support.servers import LiveASGIServer  # noqa: E402


def stream_latency(http: httpx2.Client, fake: FakeOpenAI) -> tuple[float, float]:
    """Seconds between the model sending its first/last token and the client receiving it."""
    first_delay, delay, tokens = 0.3, 0.05, 20
    fake.script(
        Reply(tokens=[f"t{i} " for i in range(tokens)], first_delay=first_delay, delay=delay)
    )
    token = csrf(http)
    sent = time.perf_counter()
    response = http.post(
        "/send/", data={"content": "latency"}, headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    stream = response.text.split('sse-connect="')[1].split('"')[0].replace("&amp;", "&")
    first = last = None
    with http.stream("GET", stream) as events:
        for line in events.iter_lines():
            if line.startswith("event: delta"):
                now = time.perf_counter()
                first = first or now
                last = now
            if line.startswith("event: done"):
                break
    assert first is not None and last is not None
    # The fake sleeps first_delay, then `delay` before each token.
    model_first = sent + first_delay + delay
    model_last = sent + first_delay + delay * tokens
    return first - model_first, last - model_last


def concurrency(base: str, fake: FakeOpenAI, streams: int, requests: int, big_url: str):
    fake.script(*[Reply(tokens=["x "] * 50, delay=0.02) for _ in range(streams)])
    clients = []
    for i in range(streams):
        http = login(base)
        token = csrf(http)
        http.post(
            "/send/",
            data={"content": f"parallel {i}"},
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        clients.append(http)
    started = time.perf_counter()
    during: list[float] = []
    reader = login(base)

    def sample() -> None:
        while runner.active():
            during.extend(page_times(reader, big_url, 1))

    sampler = threading.Thread(target=sample)
    sampler.start()
    runner.wait_idle(120)
    wall = time.perf_counter() - started
    sampler.join()
    complete = Message.objects.filter(
        role="assistant", content__startswith="x x", status="complete"
    ).count()
    for http in clients:
        http.close()
    return wall, complete, during


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    big = seed()
    fake = FakeOpenAI()
    fake.start()
    settings.OPENAI_BASE_URL = fake.base_url
    server = LiveASGIServer()
    server.start()
    big_url = f"/c/{big.pk}/"
    try:
        http = login(server.url)
        page_times(http, big_url, 10)  # warm up
        print(f"chatsite benchmark ({os.cpu_count()} cores, SQLite, uvicorn, 1 process)")
        print(
            f"chat page, 200 messages + 100 in sidebar:  {percentiles(page_times(http, big_url, args.requests))}"
        )
        print(
            f"new chat page, 100 in sidebar:             {percentiles(page_times(http, '/', args.requests))}"
        )
        firsts, lasts = [], []
        for _ in range(5):
            first, last = stream_latency(http, fake)
            runner.wait_idle(30)
            firsts.append(first)
            lasts.append(last)
        print(
            "stream overhead after the model's token:    "
            f"first {statistics.median(firsts) * 1000:5.1f} ms, last {statistics.median(lasts) * 1000:5.1f} ms (median of 5)"
        )
        wall, complete, during = concurrency(server.url, fake, args.streams, args.requests, big_url)
        print(
            f"{args.streams} replies at once (1 s of model time each): all saved in {wall:.2f} s, "
            f"{complete}/{args.streams} complete"
        )
        if during:
            print(f"chat page while they stream ({len(during)} GETs):  {percentiles(during)}")
    finally:
        server.stop()
        fake.stop()


if __name__ == "__main__":
    main()
