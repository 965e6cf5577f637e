"""Search benchmark: prints figures, asserts nothing.

    .venv/bin/python bench/search_bench.py [--messages 50000] [--noise 50000] [--runs 30]

Creates one user with --messages messages (in conversations of 50) and other users with
--noise messages of the same vocabulary, in a fresh SQLite database in a temp folder,
then times `fulltext.search` (the query the results page runs) for a few queries: a
rare word, a common word, two words, a prefix, a word only other users have.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import configure

configure()

from django.contrib.auth.models import User  # noqa: E402
from django.db import transaction  # noqa: E402

from conversations.history import search as fulltext  # noqa: E402
from conversations.models import Conversation, Message  # noqa: E402

WORDS = [
    "the",
    "model",
    "answer",
    "question",
    "python",
    "django",
    "table",
    "index",
    "search",
    "query",
    "reply",
    "server",
    "database",
    "page",
    "sidebar",
    "title",
    "token",
    "stream",
    "branch",
    "history",
    "error",
    "retry",
    "stop",
    "start",
    "garden",
    "recipe",
    "travel",
    "budget",
    "music",
    "physics",
    "poem",
    "letter",
    "summary",
    "translate",
    "code",
]


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def fill(user: User, messages: int, rng: random.Random, extra: str = "") -> None:
    per = 50
    for start in range(0, messages, per):
        with transaction.atomic():
            conversation = Conversation.objects.create(owner=user, title=text(rng, 4))
            Message.objects.bulk_create(
                Message(
                    conversation=conversation,
                    role="user" if i % 2 == 0 else "assistant",
                    content=text(rng, 40) + (f" {extra}" if extra and rng.random() < 0.001 else ""),
                )
                for i in range(min(per, messages - start))
            )


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--noise", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(1)
    alice = User.objects.create_user("alice")
    started = time.monotonic()
    fill(alice, args.messages, rng, extra="zanzibar")
    for n in range(5):
        fill(User.objects.create_user(f"noise{n}"), args.noise // 5, rng, extra="xylophone")
    print(
        f"{Message.objects.count()} messages ({args.messages} alice's) "
        f"made in {time.monotonic() - started:.1f} s"
    )
    queries = {
        "rare word (zanzibar)": "zanzibar",
        "common word (model)": "model",
        "two words (garden budget)": "garden budget",
        "prefix while typing (transl)": "transl",
        "only other users' (xylophone)": "xylophone",
        "page 10 of a common word": "python",
    }
    for label, query in queries.items():
        page = 10 if label.startswith("page 10") else 1
        samples = []
        for _ in range(args.runs):
            t = time.perf_counter()
            results = fulltext.search(user=alice, query=query, page=page)
            samples.append(time.perf_counter() - t)
        print(
            f"{label:32s} {percentiles(samples)}   "
            f"{len(results.messages)} messages, {len(results.conversations)} titles"
        )


if __name__ == "__main__":
    main()
