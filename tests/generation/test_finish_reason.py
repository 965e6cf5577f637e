"""Why the model stopped is stored with the reply, and says when it hit its length limit."""

from __future__ import annotations

import pytest

from conversations.models import Message
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, log_events, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reply_cut_at_its_maximum_length_says_so(owner_client, fake_openai, settings):
    settings.CHAT_MAX_TOKENS = 3
    fake_openai.script(Reply(tokens=["One", " two", " three"], finish_reason="length"))
    send(owner_client, "Count to ten.")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == "length" and reply.hit_length_limit
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "This reply stopped at its maximum length (3 tokens)." in page
    logged = [e for e in log_events(settings.CHAT_LOG_FILE) if e.get("message") == reply.pk]
    assert logged[-1]["finish_reason"] == "length"


def test_a_reply_that_ended_by_itself_has_no_length_note(owner_client, fake_openai, settings):
    settings.CHAT_MAX_TOKENS = 3  # as many tokens as the limit, but the model chose to stop
    fake_openai.script(Reply(tokens=["One", " two", " three"]))
    send(owner_client, "Count to three.")
    reply = finished(last_reply())
    assert reply.finish_reason == "stop" and not reply.hit_length_limit
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "maximum length" not in page


def test_the_column_added_for_it_keeps_the_full_text_triggers_on_sqlite():
    """SQLite rebuilds a table to add a column, which drops its triggers: 0005 restores them."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the triggers are SQLite's (PostgreSQL uses GIN indexes)")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            ["conversations_message"],
        )
        names = {row[0] for row in cursor.fetchall()}
    assert {f"conversations_message_fts_{n}" for n in ("ai", "ad", "au")} <= names
