"""What the benchmarks share: a throwaway environment, login, timing, a seeded conversation."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))

if TYPE_CHECKING:
    import httpx2

    from conversations.models import Conversation


def configure(*, collectstatic: bool = True, **env: str) -> None:
    """Point Django at a fresh SQLite file and log in a temp folder, then set it up.

    `collectstatic=False` leaves static files to the caller (e.g. a process of its own).
    """
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-long-enough-to-be-accepted",
            "DATABASE_URL": f"sqlite:///{TMP / 'db.sqlite3'}",
            "CHAT_LOG_FILE": str(TMP / "chat.log"),
            "OPENAI_MAX_RETRIES": "0",
            "SERVESTATIC_USE_FINDERS": "true",
            "CHAT_SIDEBAR_LIMIT": "100",
            "CHAT_AUTO_TITLE": "false",
            **env,
        }
    )
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    settings.STATIC_ROOT = TMP / "static"
    if collectstatic:
        call_command("collectstatic", interactive=False, verbosity=0)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   "
        f"max {ordered[-1] * 1000:6.1f} ms"
    )


def login(base: str) -> httpx2.Client:
    import httpx2

    http = httpx2.Client(base_url=base, timeout=60)
    page = http.get("/accounts/login/").text
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    http.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token, "username": "bench", "password": "bench-pass-123"},
    )
    return http


def csrf(http: httpx2.Client) -> str:
    return http.get("/").text.split('"X-CSRFToken": "')[1].split('"')[0]


def page_times(http: httpx2.Client, url: str, n: int) -> list[float]:
    import time

    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = http.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    return times


def seed(model: str = "m") -> Conversation:
    """User `bench` with 100 conversations, the newest holding 200 messages."""
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation, Message

    user = get_user_model().objects.create_user("bench", password="bench-pass-123")
    conversations = Conversation.objects.bulk_create(
        [Conversation(owner=user, title=f"Conversation {i}", model=model) for i in range(100)]
    )
    big = conversations[-1]
    parent = None
    for i in range(100):
        question = Message.objects.create(
            conversation=big, role="user", content=f"Question {i} " * 20, parent=parent
        )
        parent = Message.objects.create(
            conversation=big,
            role="assistant",
            content=f"Answer {i} " * 80,
            model=model,
            parent=question,
        )
    return big
