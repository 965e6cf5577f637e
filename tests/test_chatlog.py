"""Every turn is also written, one line per event, to the append-only log file."""

from __future__ import annotations

import io
import logging
import logging.handlers
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from conversations.models import Message
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-key-never-sent-anywhere-but-loopback"


@pytest.fixture
def log_path() -> Path:
    return Path(django_settings.CHAT_LOG_FILE)


def _new_events(path: Path, before: int) -> list[dict]:
    return log_events(path)[before:]


def test_the_user_message_and_the_finished_reply_are_logged(owner_client, fake_openai, log_path):
    before = len(log_events(log_path))
    fake_openai.script(Reply(tokens=["Line one\n", "line two"]))
    send(owner_client, "Multi\nline question")
    reply = finished(last_reply())
    question = reply.parent
    user_event, reply_event = _new_events(log_path, before)

    assert user_event["event"] == "message"
    assert user_event["level"] == "INFO"
    assert user_event["user"] == "alice"
    assert user_event["conversation"] == reply.conversation_id
    assert user_event["message"] == question.pk
    assert user_event["role"] == "user"
    assert user_event["text"] == "Multi\nline question"

    assert reply_event["event"] == "reply"
    assert reply_event["message"] == reply.pk
    assert reply_event["role"] == "assistant"
    assert reply_event["status"] == "complete"
    assert reply_event["model"] == "fake-model"
    assert reply_event["completion_tokens"] == 2
    assert reply_event["prompt_tokens"] == reply.prompt_tokens
    assert reply_event["ttft_ms"] == reply.ttft_ms
    assert reply_event["total_ms"] == reply.total_ms
    assert reply_event["text"] == "Line one\nline two"
    assert reply_event["timestamp"].endswith("+00:00")
    # One event per line: the newlines inside the text were escaped.
    raw = log_path.read_text(encoding="utf-8").splitlines()[-1]
    assert "Line one\\nline two" in raw


def test_stopped_and_failed_replies_are_logged_with_their_status(
    owner_client, fake_openai, log_path
):
    before = len(log_events(log_path))
    fake_openai.script(Reply(status=500), Reply(tokens=["s"] * 100, delay=0.05))
    send(owner_client, "Fail first")
    failed = finished(last_reply())
    send(owner_client, "Then stop", failed.conversation)
    reply = last_reply()
    while not Message.objects.get(pk=reply.pk).content:
        fake_openai.disconnected.wait(0.02)
    owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    finished(reply)
    replies = [e for e in _new_events(log_path, before) if e["event"] == "reply"]
    assert [e["status"] for e in replies] == ["error", "stopped"]
    assert replies[0]["level"] == "WARNING"
    assert "internal error" in replies[0]["error"]
    assert replies[1]["text"] == reply.content and replies[1]["text"]


def test_the_api_key_never_appears_in_any_log(owner_client, fake_openai, log_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake_openai.script(Reply(), Reply(status=401))
    send(owner_client, "Hello")
    conversation = finished(last_reply()).conversation
    send(owner_client, "Again", conversation)
    finished(last_reply())
    assert KEY not in log_path.read_text(encoding="utf-8")
    assert KEY not in caplog.text
    assert KEY not in last_reply().error


def test_the_console_gets_one_short_line_per_turn(owner_client, fake_openai):
    from conversations.chatlog import ConsoleFormatter

    handler = next(
        h
        for h in logging.getLogger("chatsite.chat").handlers
        if isinstance(h.formatter, ConsoleFormatter)
    )
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        send(owner_client, "Hi there")
        finished(last_reply())
    finally:
        handler.setStream(old)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("chat: alice conversation=")
    assert "complete" in lines[0] and "tokens=5" in lines[0]
    assert "Hi there" not in lines[0]


def _log_call(text: str) -> str:
    return (
        "logging.getLogger('chatsite.chat').info('restart', extra={'chat': {'event': 'reply',"
        "'user': 'u', 'conversation': 1, 'message': 2, 'role': 'assistant', 'model': 'm',"
        "'status': 'complete', 'prompt_tokens': 1, 'completion_tokens': 1, 'ttft_ms': 1,"
        f"'total_ms': 1, 'error': '', 'text': {text!r}}}}})"
    )


def _log_in_new_process(log_file: Path, text: str, code: str = "", **env: str) -> None:
    code = "import django, logging; django.setup();" + (code or _log_call(text))
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CHAT_LOG_FILE": str(log_file),
        "PATH": "",
        **env,
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_the_log_is_appended_across_restarts_and_its_folder_created(tmp_path):
    log_file = tmp_path / "new" / "folder" / "chat.log"
    for i in range(3):
        _log_in_new_process(log_file, f"run {i}")
    assert [e["text"] for e in log_events(log_file)] == ["run 0", "run 1", "run 2"]


def test_the_log_rotates_by_size_keeping_old_files(tmp_path):
    log_file = tmp_path / "chat.log"
    for i in range(6):
        _log_in_new_process(
            log_file, f"entry {i} " + "x" * 200, CHAT_LOG_MAX_BYTES="600", CHAT_LOG_BACKUP_COUNT="2"
        )
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["chat.log", "chat.log.1", "chat.log.2"]
    texts = [
        e["text"]
        for p in ("chat.log.2", "chat.log.1", "chat.log")
        for e in log_events(tmp_path / p)
    ]
    assert texts[-1].startswith("entry 5")
    assert all(path.stat().st_size <= 600 for path in tmp_path.iterdir())


def test_with_size_rotation_off_every_process_reopens_the_log_once_it_is_moved(tmp_path):
    log_file = tmp_path / "chat.log"
    moved = tmp_path / "chat.log.1"
    off = {"CHAT_LOG_MAX_BYTES": "0"}
    _log_in_new_process(log_file, "first process", **off)
    _log_in_new_process(log_file, "second process", **off)
    # A process that lives through the move (logrotate's rename) writes on into the new file.
    rotate = f"import os; os.rename({str(log_file)!r}, {str(moved)!r});"
    lives_on = _log_call("before the move") + ";" + rotate + _log_call("after the move")
    _log_in_new_process(log_file, "", code=lives_on, **off)
    _log_in_new_process(log_file, "next process", **off)

    assert [e["text"] for e in log_events(moved)] == [
        "first process",
        "second process",
        "before the move",
    ]
    assert [e["text"] for e in log_events(log_file)] == ["after the move", "next process"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.log", "chat.log.1"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\n", "\r", "\x0b", "\x1c"])
def test_a_line_separator_in_a_message_cannot_forge_a_log_line(separator):
    from conversations.chatlog import FileFormatter, parse_line

    text = f'hello{separator}2026-01-01T00:00:00.000+00:00 INFO event=reply user="admin"'
    record = logging.LogRecord("chatsite.chat", logging.INFO, __file__, 1, "reply", None, None)
    record.chat = {"event": "reply", "user": f"bob{separator}", "text": text}
    line = FileFormatter().format(record)
    assert line.splitlines() == [line]
    parsed = parse_line(line)
    assert parsed["text"] == text
    assert parsed["user"] == f"bob{separator}"
