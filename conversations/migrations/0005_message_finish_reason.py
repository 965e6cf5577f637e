"""Message.finish_reason, filled for earlier replies that reached their maximum length.

On SQLite, adding a column rebuilds the table, which drops the full-text triggers of
0004: they are created again (any later migration that alters conversations_message
must do the same).
"""

import importlib
from typing import Any

from django.db import migrations, models
from django.db.models import F

_search = importlib.import_module("conversations.migrations.0004_history_search")
MESSAGE_TRIGGERS = [sql for sql in _search.SQLITE_FORWARD if "TRIGGER conversations_message_" in sql]


def message_triggers(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in ("ai", "ad", "au"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS conversations_message_fts_{name}")
    for sql in MESSAGE_TRIGGERS:
        schema_editor.execute(sql)
    schema_editor.execute(
        "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('rebuild')"
    )


def length_limited(apps, schema_editor):
    # Before this field, "reached its maximum length" was read from the token counts.
    Message = apps.get_model("conversations", "Message")
    Message.objects.filter(
        max_tokens__isnull=False,
        completion_tokens__gte=F("max_tokens"),
        status="complete",
    ).update(finish_reason="length")


class Migration(migrations.Migration):

    dependencies = [
        ('conversations', '0004_history_search'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='finish_reason',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.RunPython(message_triggers, message_triggers, elidable=False),
        migrations.RunPython(length_limited, migrations.RunPython.noop),
    ]
