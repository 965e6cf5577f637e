"""Message.reasoning (a reasoning model's thinking), its start and end, its tokens.

On SQLite, adding a column rebuilds the table, which drops the full-text triggers of
0004: they are created again, as 0005 does.
"""

import importlib

from django.db import migrations, models

message_triggers = importlib.import_module(
    "conversations.migrations.0005_message_finish_reason"
).message_triggers


class Migration(migrations.Migration):

    dependencies = [
        ('conversations', '0009_attachment_chunk_fts'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='reasoning',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='message',
            name='reasoning_ended',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='reasoning_started',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='reasoning_tokens',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(message_triggers, message_triggers, elidable=False),
    ]
