"""Writes on whole conversations: rename and delete (which stops a reply still being
written and logs the deletion).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.db import transaction

from conversations import chatlog
from conversations.generation.lifecycle import reply_stop
from conversations.models import Conversation, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Give the conversation the user's title; automatic titles never replace it after this."""
    Conversation.objects.filter(pk=conversation.pk).update(title=title, title_set_by_user=True)
    conversation.title, conversation.title_set_by_user = title, True
    return conversation


def conversation_delete(*, user: User, conversation: Conversation) -> int:
    """Delete the conversation with all its messages, and log it; returns the message count.

    A reply still being written is stopped first, so that nothing writes to deleted rows.
    Its attachments' files are deleted from storage once the deletion is committed
    (`attachment_services.file_delete_after`, which also covers a user deleted whole).
    """
    for reply in conversation.messages.filter(status__in=Message.IN_FLIGHT):
        reply_stop(reply=reply)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        count = locked.messages.count()
        title = locked.title
        # The tree's SET_NULL links (parent, current) would otherwise be updated row by row.
        Conversation.objects.filter(pk=locked.pk).update(current=None)
        locked.messages.update(parent=None)
        locked.delete()
        transaction.on_commit(
            lambda: chatlog.log_deleted(
                username=user.get_username(),
                conversation_id=conversation.pk,
                title=title,
                message_count=count,
            )
        )
    return count
