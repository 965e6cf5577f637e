"""Full-text search over the user's history: message text and conversation titles.

SQLite: external-content FTS5 tables kept in sync by triggers (the text is not stored
twice). PostgreSQL: GIN expression indexes on exactly the expression Django's
`SearchVector(field, config="simple")` produces, so searches use them. Other databases:
nothing (search is not offered there).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SQLITE_FORWARD = [
    # unicode61 with remove_diacritics: "cafe" finds "café"; case never matters.
    """CREATE VIRTUAL TABLE conversations_message_fts USING fts5(
        content, content='conversations_message', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER conversations_message_fts_ai AFTER INSERT ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER conversations_message_fts_ad AFTER DELETE ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER conversations_message_fts_au AFTER UPDATE OF content
    ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('rebuild')",
    """CREATE VIRTUAL TABLE conversations_conversation_fts USING fts5(
        title, content='conversations_conversation', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER conversations_conversation_fts_ai AFTER INSERT
    ON conversations_conversation BEGIN
        INSERT INTO conversations_conversation_fts(rowid, title) VALUES (new.id, new.title);
    END""",
    """CREATE TRIGGER conversations_conversation_fts_ad AFTER DELETE
    ON conversations_conversation BEGIN
        INSERT INTO conversations_conversation_fts(conversations_conversation_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
    END""",
    """CREATE TRIGGER conversations_conversation_fts_au AFTER UPDATE OF title
    ON conversations_conversation BEGIN
        INSERT INTO conversations_conversation_fts(conversations_conversation_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
        INSERT INTO conversations_conversation_fts(rowid, title) VALUES (new.id, new.title);
    END""",
    "INSERT INTO conversations_conversation_fts(conversations_conversation_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS conversations_message_fts_ai",
    "DROP TRIGGER IF EXISTS conversations_message_fts_ad",
    "DROP TRIGGER IF EXISTS conversations_message_fts_au",
    "DROP TABLE IF EXISTS conversations_message_fts",
    "DROP TRIGGER IF EXISTS conversations_conversation_fts_ai",
    "DROP TRIGGER IF EXISTS conversations_conversation_fts_ad",
    "DROP TRIGGER IF EXISTS conversations_conversation_fts_au",
    "DROP TABLE IF EXISTS conversations_conversation_fts",
]
# Must match SearchVector(..., config="simple"): to_tsvector('simple'::regconfig, COALESCE(x, '')).
POSTGRES_FORWARD = [
    """CREATE INDEX IF NOT EXISTS msg_content_fts ON conversations_message
    USING GIN (to_tsvector('simple'::regconfig, COALESCE(content, '')))""",
    """CREATE INDEX IF NOT EXISTS conv_title_fts ON conversations_conversation
    USING GIN (to_tsvector('simple'::regconfig, COALESCE(title, '')))""",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS msg_content_fts",
    "DROP INDEX IF EXISTS conv_title_fts",
]


def _run(statements: dict[str, list[str]]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_import_job"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
            elidable=False,
        ),
    ]
