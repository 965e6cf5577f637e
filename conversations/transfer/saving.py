"""What every importer shares when it writes conversations: text, date range, saving.

Both importers (chatsite's JSON export and ChatGPT's export) build unsaved
`Conversation` and `Message` objects with the timestamps to keep, then hand them to
`conversation_create`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import connection

from conversations.models import Conversation, Message

# Dates outside these are taken as corrupt: far-future ones overflow date arithmetic later
# (the sidebar's grouping), and nothing was written before 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

BATCH_SIZE = 500


def conversation_create(
    conversation: Conversation,
    messages: Sequence[tuple[Message, Message | None]],
    *,
    current: Message | None = None,
) -> None:
    """Save an imported conversation and its messages, keeping all their timestamps.

    `conversation` is unsaved, with its owner and the `created`/`updated` to keep;
    `messages` are (unsaved message, its parent among them or None), in the order to
    create them: time order, as threads are ordered by (created, id) and new ids follow
    creation order. `current` (one of them) becomes the branch shown. Run it in a
    transaction: it writes several statements.
    """
    # auto_now(_add) overwrites timestamps on save and bulk_create, so they are written
    # back afterwards with update() / bulk_update(), which leave them alone.
    created, updated = conversation.created, conversation.updated
    stamps = [(message.created, message.updated) for message, _ in messages]
    conversation.save()
    rows = [message for message, _ in messages]
    if rows:
        for row in rows:
            row.conversation = conversation
        if connection.features.can_return_rows_from_bulk_insert:
            Message.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        else:
            for row in rows:
                row.save()
        for (row, parent), (row_created, row_updated) in zip(messages, stamps, strict=True):
            row.parent = parent
            row.created, row.updated = row_created, row_updated
        Message.objects.bulk_update(rows, ["parent", "created", "updated"], batch_size=BATCH_SIZE)
    Conversation.objects.filter(pk=conversation.pk).update(
        created=created, updated=updated, current=current
    )
    conversation.created, conversation.updated, conversation.current = created, updated, current
