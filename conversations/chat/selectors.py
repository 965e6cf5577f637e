"""Reads. Every query that takes a user only ever returns that user's rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import prefetch_related_objects

from conversations import tree
from conversations.generation import lifecycle
from conversations.models import Conversation, Message, Versions
from conversations.params import parse_id

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def conversation_get(*, user: User, conversation_id: int) -> Conversation:
    """The user's conversation; Conversation.DoesNotExist also for other users' ids."""
    return Conversation.objects.get(pk=conversation_id, owner=user)


def message_get(*, user: User, conversation_id: int, message_id: int) -> Message:
    """The user's message; Message.DoesNotExist also for other users' ids."""
    return Message.objects.select_related("conversation").get(
        pk=message_id, conversation_id=conversation_id, conversation__owner=user
    )


async def message_find(*, user: User, conversation_id: int, message_id: int) -> Message | None:
    """The user's message, or None — also for other users' ids (async, for the stream)."""
    return (
        await Message.objects.filter(
            pk=message_id, conversation_id=conversation_id, conversation__owner=user
        )
        .select_related("conversation")
        .afirst()
    )


def message_is_last(*, message: Message) -> bool:
    """Whether nothing follows `message`: it ends its branch."""
    return not Message.objects.filter(parent_id=message.pk).exists()


# --- The message tree ----------------------------------------------------------------
# A conversation's messages form a tree; the page shows one branch, root to
# `Conversation.current`. Trees are small (one conversation), so each is loaded in one
# query and walked in Python.


def thread(*, conversation: Conversation, through: Message | None = None) -> list[Message]:
    """The branch shown: root to `conversation.current` (or to the newest leaf if unset);
    with `through`, the branch holding that message instead (its newest continuation).

    Each message gets `versions`: its place among its alternatives; an orphaned reply
    shows as interrupted (`lifecycle.as_seen`). Two queries (the messages, their attachments).
    """
    messages = list(conversation.messages.all())
    children = tree.children(messages)
    by_id = {m.pk: m for m in messages}
    if through is not None and through.pk in by_id:
        leaf: Message | None = tree.newest_leaf_under(by_id[through.pk], children)
    else:
        leaf = tree.shown_leaf(conversation, messages, children)
    path = tree.path_to(leaf, by_id)
    for message in path:
        message.versions = tree.versions(message, children[message.parent_id])
        lifecycle.as_seen(message)
    # The images and documents shown with the user's messages: one more query.
    prefetch_related_objects([m for m in path if m.role == Message.Role.USER], "attachments")
    return path


def shown_leaf_id(*, conversation: Conversation) -> int | None:
    """The last message of the branch shown (what a new question follows)."""
    messages = list(conversation.messages.only("id", "parent_id", "created"))
    leaf = tree.shown_leaf(conversation, messages, tree.children(messages))
    return leaf.pk if leaf is not None else None


def conversation_message(*, conversation: Conversation, message_id: str) -> Message | None:
    """The conversation's message with id `message_id` (a URL parameter), or None."""
    pk = parse_id(message_id)
    return None if pk is None else conversation.messages.filter(pk=pk).first()


def is_shown(*, message: Message, conversation: Conversation) -> bool:
    """Whether `message` is on the branch the conversation page shows."""
    messages = list(conversation.messages.only("id", "parent_id", "created"))
    leaf = tree.shown_leaf(conversation, messages, tree.children(messages))
    return any(m.pk == message.pk for m in tree.path_to(leaf, {m.pk: m for m in messages}))


def newest_leaf_id(*, message: Message) -> int:
    """The most recent end of the branches under `message` (what showing it shows)."""
    messages = list(
        Message.objects.filter(conversation_id=message.conversation_id).only(
            "id", "parent_id", "created"
        )
    )
    by_id = {m.pk: m for m in messages}
    return tree.newest_leaf_under(by_id.get(message.pk, message), tree.children(messages)).pk


def message_versions(*, message: Message) -> Versions:
    """`message`'s place among its alternatives (for rendering it alone). One query."""
    siblings = list(
        Message.objects.filter(
            conversation_id=message.conversation_id,
            parent_id=message.parent_id,
            role=message.role,
        ).only("id", "role")
    )
    return tree.versions(message, siblings)


def in_flight_reply(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(
        role=Message.Role.ASSISTANT, status__in=Message.IN_FLIGHT
    ).last()


# --- Imports ---------------------------------------------------------------------------


# --- Search ----------------------------------------------------------------------------
