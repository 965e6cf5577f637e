"""Full-text index over documents' passages (retrieval), and the sources a reply used.

As 0004_history_search: SQLite, an external-content FTS5 table over
conversations_attachmentchunk kept in sync by triggers; PostgreSQL, a GIN expression index
on exactly what `SearchVector("text", config="simple")` produces. Passages are written once
and never updated, but an update trigger keeps the index right should one be.

Message.sources: on SQLite, adding a column rebuilds conversations_message, which drops
its full-text triggers (0004): they are created again, as 0005 does. A later migration
that alters conversations_attachmentchunk must likewise create this one's triggers again.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models

_finish_reason = importlib.import_module("conversations.migrations.0005_message_finish_reason")

SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE conversations_attachmentchunk_fts USING fts5(
        text, content='conversations_attachmentchunk', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER conversations_attachmentchunk_fts_ai AFTER INSERT
    ON conversations_attachmentchunk BEGIN
        INSERT INTO conversations_attachmentchunk_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER conversations_attachmentchunk_fts_ad AFTER DELETE
    ON conversations_attachmentchunk BEGIN
        INSERT INTO conversations_attachmentchunk_fts(conversations_attachmentchunk_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER conversations_attachmentchunk_fts_au AFTER UPDATE OF text
    ON conversations_attachmentchunk BEGIN
        INSERT INTO conversations_attachmentchunk_fts(conversations_attachmentchunk_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
        INSERT INTO conversations_attachmentchunk_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    "INSERT INTO conversations_attachmentchunk_fts(conversations_attachmentchunk_fts)"
    " VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS conversations_attachmentchunk_fts_ai",
    "DROP TRIGGER IF EXISTS conversations_attachmentchunk_fts_ad",
    "DROP TRIGGER IF EXISTS conversations_attachmentchunk_fts_au",
    "DROP TABLE IF EXISTS conversations_attachmentchunk_fts",
]
# Must match SearchVector("text", config="simple"): to_tsvector('simple'::regconfig, COALESCE(x, '')).
POSTGRES_FORWARD = [
    """CREATE INDEX IF NOT EXISTS chunk_text_fts ON conversations_attachmentchunk
    USING GIN (to_tsvector('simple'::regconfig, COALESCE("text", '')))""",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS chunk_text_fts",
]


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0008_attachments"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
            elidable=False,
        ),
        migrations.AddField(
            model_name="message",
            name="sources",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(
            _finish_reason.message_triggers, _finish_reason.message_triggers, elidable=False
        ),
    ]
