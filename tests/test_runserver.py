"""`manage.py runserver` (ASGI through daphne) streams replies, as uvicorn does."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.support.fake_openai import Reply
from tests.support.sse import events

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def runserver(tmp_path, _fake_openai_server):
    port = _free_port()
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHAT_", "DJANGO_"))
        },
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DEBUG": "true",
        "SECRET_KEY": "runserver-test-key-long-enough-to-be-accepted-here",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
        "OPENAI_BASE_URL": _fake_openai_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_MAX_RETRIES": "0",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; User.objects.create_user('rs', password='pw-rs-12345')",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )
    proc = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "runserver did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", proc
    proc.terminate()
    proc.wait(10)


def test_runserver_serves_asgi_and_streams_replies(runserver, fake_openai):
    url, _ = runserver
    fake_openai.script(Reply(tokens=[f"r{i} " for i in range(6)], delay=0.1))
    with httpx2.Client(base_url=url, timeout=10) as http:
        login = http.get("/accounts/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        response = http.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": token, "username": "rs", "password": "pw-rs-12345"},
        )
        assert response.status_code == 302
        page = http.get("/").text
        token = page.split('"X-CSRFToken": "')[1].split('"')[0]
        response = http.post(
            "/send/",
            data={"content": "hello runserver"},
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        assert response.status_code == 200
        stream = re.search(r'sse-connect="([^"]+)"', response.text).group(1)
        # Deltas, which the page does not ask for: they show each piece as it came.
        stream = stream.replace("&amp;", "&").replace("deltas=0", "deltas=1")
        with http.stream("GET", stream) as response:
            received = [(event, data, at) for event, data, at in events(response)]
    deltas = [(data, at) for event, data, at in received if event == "delta"]
    assert "".join(d for d, _ in deltas) == "".join(f"r{i} " for i in range(6))
    # Pieces arrived spread over time, not buffered into one lump.
    assert len(deltas) >= 3
    assert deltas[-1][1] - deltas[0][1] > 0.2


def test_a_restart_mid_reply_leaves_it_interrupted_with_its_text(runserver, fake_openai, tmp_path):
    import signal
    import sqlite3

    url, proc = runserver
    fake_openai.script(Reply(tokens=["k "] * 200, delay=0.05))
    with httpx2.Client(base_url=url, timeout=10) as http:
        login = http.get("/accounts/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        http.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": token, "username": "rs", "password": "pw-rs-12345"},
        )
        response = http.post(
            "/send/",
            data={"content": "long one"},
            headers={"HX-Request": "true", "X-CSRFToken": http.cookies["csrftoken"]},
        )
        assert response.status_code == 200
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    query = "SELECT status, content FROM conversations_message WHERE role='assistant'"
    deadline = time.monotonic() + 10
    while not (db.execute(query).fetchone() or ("", ""))[1]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(15)
    status, content = db.execute(query).fetchone()
    assert status == "interrupted"
    assert content.startswith("k k")
    assert '"interrupted"' in (tmp_path / "chat.log").read_text()
