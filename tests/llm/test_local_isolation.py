"""The local model runs out of the web server's process: a crash there ends one reply.

With the real bundled model: the engine process is sent real signals (SIGSEGV as a
native crash, SIGKILL as the kernel's out-of-memory killer would) while a reply
streams, and the web server must keep serving, keep the reply's text, and answer the
next message. Several web processes share one model server and its queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conversations.llm.backends import local
from conversations.models import Conversation, Message
from tests.support.helpers import finished, last_reply, log_events, send, wait_for_text
from tests.support.sse import http_client, read_stream

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]

PROJECT = Path(__file__).resolve().parents[2]


def _engine_pid() -> int:
    info = local.server_info()
    assert info["pid"] != info["server_pid"]
    return int(info["pid"])


def _kill_mid_reply(owner_client, settings, sig: signal.Signals) -> tuple[Message, int]:
    settings.CHAT_MAX_TOKENS = 2000
    send(owner_client, "Write a very long story about a dragon and a castle.")
    reply = last_reply()
    wait_for_text(reply)
    engine = _engine_pid()
    os.kill(engine, sig)
    return finished(reply, timeout=30), engine


def test_a_native_crash_ends_the_reply_with_its_text_and_the_server_keeps_serving(
    asgi_server, owner_client, local_backend, settings
):
    restarts = local.server_info()["restarts"]
    reply, crashed = _kill_mid_reply(owner_client, settings, signal.SIGSEGV)

    assert reply.status == Message.Status.ERROR
    assert reply.content  # the partial text is kept
    assert "The local model stopped unexpectedly" in reply.error
    assert "crashed with SIGSEGV" in reply.error and "has been restarted" in reply.error
    logged = [e for e in log_events(settings.CHAT_LOG_FILE) if e.get("message") == reply.pk]
    assert logged[-1]["status"] == "error" and logged[-1]["text"] == reply.content

    # The web server is still there, over real HTTP, and shows the reply with its error.
    with http_client(asgi_server, owner_client) as http:
        page = http.get(reply.conversation.get_absolute_url())
    assert page.status_code == 200
    assert "The local model stopped unexpectedly" in page.text

    # The engine was started again, and the next message is answered.
    info = local.server_info()
    assert info["restarts"] == restarts + 1
    assert info["pid"] != crashed
    settings.CHAT_MAX_TOKENS = 4
    send(owner_client, "And now a short one.", Conversation.objects.get())
    following = last_reply()
    received = read_stream(asgi_server, owner_client, following, timeout=60)
    assert received[-1][0] == "done"
    assert finished(following, timeout=60).status == Message.Status.COMPLETE


def test_an_out_of_memory_kill_is_said_as_such_and_the_next_reply_is_answered(
    owner_client, local_backend, settings
):
    reply, _ = _kill_mid_reply(owner_client, settings, signal.SIGKILL)
    assert reply.status == Message.Status.ERROR and reply.content
    assert "SIGKILL" in reply.error and "memory" in reply.error
    settings.CHAT_MAX_TOKENS = 4
    send(owner_client, "Hello again.", Conversation.objects.get())
    assert finished(last_reply(), timeout=60).status == Message.Status.COMPLETE


def test_queued_replies_go_on_when_the_running_one_crashes(
    owner, owner_client, local_backend, settings
):
    settings.CHAT_MAX_TOKENS = 2000
    send(owner_client, "Write a very long story about a dragon and a castle.")
    first = last_reply()
    wait_for_text(first)
    settings.CHAT_MAX_TOKENS = 4
    send(owner_client, "Say hi.")  # a second conversation: it waits for the only slot
    second = last_reply()
    deadline = time.monotonic() + 10
    while local.server_info()["queued"] < 1:
        assert time.monotonic() < deadline, "the second reply never queued"
        time.sleep(0.02)
    os.kill(_engine_pid(), signal.SIGSEGV)
    assert finished(first, timeout=30).status == Message.Status.ERROR
    second = finished(second, timeout=60)
    assert second.status == Message.Status.COMPLETE and second.content


def test_the_model_server_dying_whole_ends_the_reply_and_the_next_starts_it_again(
    owner_client, local_backend, settings
):
    settings.CHAT_MAX_TOKENS = 2000
    send(owner_client, "Write a very long story about a dragon and a castle.")
    reply = last_reply()
    wait_for_text(reply)
    server = local.server_info()["server_pid"]
    os.kill(server, signal.SIGKILL)
    reply = finished(reply, timeout=30)
    assert reply.status == Message.Status.ERROR and reply.content
    assert "stopped unexpectedly" in reply.error
    settings.CHAT_MAX_TOKENS = 4
    send(owner_client, "Still there?", Conversation.objects.get())
    assert finished(last_reply(), timeout=60).status == Message.Status.COMPLETE
    assert local.server_info()["server_pid"] != server


def test_the_web_process_never_loads_llama_cpp(owner_client, local_backend, settings):
    send(owner_client, "Say hi.")
    assert finished(last_reply(), timeout=60).status == Message.Status.COMPLETE
    assert local.count_tokens([{"role": "user", "content": "Count me."}])
    assert "llama_cpp" not in sys.modules


WORKER = """
import json, sys, asyncio, django
django.setup()
from conversations.llm.backends import local

async def main(max_tokens):
    async for chunk in local.stream_chat(
        messages=[{"role": "user", "content": "Write a long story about the sea."}],
        temperature=0.0, max_tokens=max_tokens,
    ):
        print(json.dumps({"phase": chunk.phase, "ahead": chunk.ahead, "text": chunk.text,
                          "finish": chunk.finish_reason}), flush=True)

asyncio.run(main(int(sys.argv[1])))
"""


def _web_process(max_tokens: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(max_tokens)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_web_processes_share_one_loaded_model_and_one_queue(local_backend, settings):
    # A context size no other test uses: a fresh model server, so its loads can be counted.
    settings.LOCAL_MODEL_CONTEXT = 1792
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LOCAL_MODEL_CONTEXT": "1792",
        "LOCAL_MODEL_CONCURRENCY": "1",
        "LOCAL_MODEL_THREADS": str(settings.LOCAL_MODEL_THREADS),
    }
    first = _web_process(200, env)
    second = None
    try:
        assert first.stdout is not None
        events = [json.loads(first.stdout.readline())]
        while not events[-1]["text"]:
            events.append(json.loads(first.stdout.readline()))
        second = _web_process(4, env)
        out, _ = second.communicate(timeout=120)
        theirs = [json.loads(line) for line in out.splitlines()]
        assert second.returncode == 0
        # It waited in the same queue behind the other process's reply, then was answered.
        assert theirs[0]["phase"] == "queued" and theirs[0]["ahead"] == 0
        assert "".join(e["text"] for e in theirs)
        assert theirs[-1]["finish"]
        rest, _ = first.communicate(timeout=120)
        assert first.returncode == 0 and rest
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    info = local.server_info()
    assert info["loads"] == 1, json.dumps(info)  # loaded once for both processes, by the engine
    assert info["restarts"] == 0
