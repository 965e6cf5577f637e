"""Writes of a conversation's turns: send, edit, regenerate, show a version, settings.

The user's message is committed before the model is called: the reply is created
`pending` in the same transaction, and generation starts on commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import chatlog
from conversations.attachments import services as attachment_services
from conversations.chat import limits, selectors
from conversations.generation.lifecycle import replies_interrupt_stale, reply_start
from conversations.llm import registry as llm
from conversations.llm import vision
from conversations.models import Conversation, Message
from conversations.options import ConversationSettings

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


class ConversationBusy(Exception):
    """A reply is still being written in this conversation."""

    message = "A reply is still being written. Wait for it to finish, or press Stop."


class LimitReached(ConversationBusy):
    """Over the user's per-minute limit: refused like a busy conversation, nothing saved."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _admit(user_id: int) -> str | None:
    """The user's limits (`limits.admit`): None, or the error to end the reply with."""
    try:
        return limits.admit(user_id=user_id)
    except limits.TooManyPerMinute as exc:
        raise LimitReached(exc.message) from None


def provisional_title(*, text: str, words: int = 8, chars: int = 60) -> str:
    """A conversation's first title: the first words of its first message."""
    first = " ".join(text.split()[:words])
    if len(first) > chars:
        first = first[: chars - 1].rstrip() + "…"
    elif len(text.split()) > words:
        first += "…"
    return first or "New chat"


def _lock_idle(conversation_id: int) -> Conversation:
    # Serialise sends to one conversation: two tabs can never start two replies.
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    # A reply orphaned by a dead server must not block the conversation for good.
    replies_interrupt_stale(conversation=conversation)
    if selectors.in_flight_reply(conversation=conversation) is not None:
        raise ConversationBusy()
    return conversation


def _pending_reply(
    *, conversation: Conversation, question_id: int | None, refused: str | None = None
) -> Message:
    """Create the reply that the runner will write, show it, and mark the conversation active.

    The reply records the settings it is generated with: the conversation's, or the site's
    defaults where the conversation has none. With `refused` (a user's limit was reached)
    the reply is created ended as an error with those words, and the model is not called:
    it shows in the thread, with Retry.
    """
    now = timezone.now()
    temperature = conversation.temperature
    max_tokens = conversation.max_tokens
    if max_tokens is None:
        max_tokens = settings.CHAT_MAX_TOKENS or None
    model = conversation.model or llm.default_model()
    if max_tokens is None and llm.model_option(model).backend == "local":
        # A small local model can ramble until its window is full, holding the only slot:
        # without a limit of the user's, a local reply stops at LOCAL_MODEL_MAX_TOKENS.
        max_tokens = settings.LOCAL_MODEL_MAX_TOKENS or None
    reply = Message.objects.create(
        conversation=conversation,
        parent_id=question_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.ERROR if refused else Message.Status.PENDING,
        error=refused or "",
        model=model,
        system_prompt=conversation.system_prompt,
        temperature=settings.CHAT_TEMPERATURE if temperature is None else temperature,
        max_tokens=max_tokens,
    )
    Conversation.objects.filter(pk=conversation.pk).update(updated=now, current=reply)
    conversation.updated = now
    conversation.current = reply
    if refused:
        username = conversation.owner.get_username()
        transaction.on_commit(lambda: chatlog.log_message(reply, username=username))
    else:
        transaction.on_commit(lambda: reply_start(reply=reply))
    return reply


def images_refused(*, conversation: Conversation, question: Message) -> str | None:
    """Why the reply to `question` cannot be asked for (its images, a model that cannot
    see them), or None. Said before any call: the question and its images are kept."""
    model = conversation.model or llm.default_model()
    if vision.takes_images(model):
        return None
    if not any(attachment.is_image for attachment in question.attachments.all()):
        return None
    label = llm.model_option(model).label
    return (
        f"The model “{label}” cannot see images, so it was not asked. Choose a model that "
        "can in Settings, then press Retry."
    )


@transaction.atomic
def message_send(
    *,
    user: User,
    conversation: Conversation | None,
    content: str,
    options: ConversationSettings | None = None,
    after: int | None = None,
    attachments: Sequence[attachment_services.Prepared] = (),
) -> tuple[Conversation, Message, Message]:
    """Save the user's message (creating the conversation if needed) and start the reply.

    The message follows the last message of the branch saved as shown, or message
    `after` of this conversation (the page showed another branch). A new conversation gets
    `options` (by default the site's). The message is committed and logged before the
    model is called, with its `attachments` (prepared: `attachment_services.prepare`); with
    images for a model that cannot see them, the reply ends at once saying so (the model is
    not called). Raises `ConversationBusy` if a reply is still being written in this
    conversation, `LimitReached` (nothing saved) over the user's per-minute limit; over
    their other limits the message is saved and its reply ended as an error.
    """
    refused = _admit(user.pk)
    if conversation is None:
        options = options or conversation_defaults()
        conversation = Conversation.objects.create(
            owner=user,
            title=provisional_title(text=content),
            model=options.model,
            system_prompt=options.system_prompt,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
        )
        leaf_id = None
    else:
        conversation = _lock_idle(conversation.pk)
        leaf_id = selectors.shown_leaf_id(conversation=conversation)
        if after is not None and conversation.messages.filter(pk=after).exists():
            leaf_id = after
    question = Message.objects.create(
        conversation=conversation,
        parent_id=leaf_id,
        role=Message.Role.USER,
        content=content,
        status=Message.Status.COMPLETE,
    )
    if attachment_services.attachments_save(message=question, prepared=attachments):
        refused = refused or images_refused(conversation=conversation, question=question)
    transaction.on_commit(lambda: chatlog.log_message(question, username=user.get_username()))
    reply = _pending_reply(conversation=conversation, question_id=question.pk, refused=refused)
    return conversation, question, reply


class NotRetryable(Exception):
    message = "Only the latest reply can be retried or regenerated, and only once it has finished."


@transaction.atomic
def reply_regenerate(*, reply: Message) -> Message:
    """Answer the same user message again with a new reply, shown in place of `reply`.

    `reply` is kept as an alternative (a sibling). Only a finished reply that ends its
    branch can be regenerated (`NotRetryable` otherwise); `ConversationBusy` while a
    reply is being written; the user's limits as for a send.
    """
    owner_id = Conversation.objects.values_list("owner_id", flat=True).get(pk=reply.conversation_id)
    refused = _admit(owner_id)
    conversation = _lock_idle(reply.conversation_id)
    reply.refresh_from_db()
    if not reply.is_regenerable or not selectors.message_is_last(message=reply):
        raise NotRetryable()
    question = Message.objects.filter(pk=reply.parent_id or 0).first()
    if question is not None:
        refused = refused or images_refused(conversation=conversation, question=question)
    return _pending_reply(conversation=conversation, question_id=reply.parent_id, refused=refused)


class NotEditable(Exception):
    message = "Only your own messages can be edited."


@transaction.atomic
def message_edit(*, user: User, message: Message, content: str) -> tuple[Message, Message]:
    """Send `content` in place of the user message `message`, and start its reply.

    The new message is an alternative to `message` (same parent); `message` and all that
    followed it are kept. Raises `NotEditable` for a reply, `ConversationBusy` while a
    reply is being written; the user's limits as for a send.
    """
    refused = _admit(user.pk)
    conversation = _lock_idle(message.conversation_id)
    if message.role != Message.Role.USER:
        raise NotEditable()
    question = Message.objects.create(
        conversation=conversation,
        parent_id=message.parent_id,
        role=Message.Role.USER,
        content=content,
        status=Message.Status.COMPLETE,
    )
    # The edited question keeps the original's images and documents.
    if attachment_services.attachments_copy(source=message, target=question):
        refused = refused or images_refused(conversation=conversation, question=question)
    transaction.on_commit(lambda: chatlog.log_message(question, username=user.get_username()))
    reply = _pending_reply(conversation=conversation, question_id=question.pk, refused=refused)
    return question, reply


@transaction.atomic
def conversation_show(*, message: Message) -> Conversation:
    """Show the branch through `message`: its most recent continuation.

    Refused (`ConversationBusy`) while a reply is being written, which stays on screen
    with its Stop button.
    """
    conversation = _lock_idle(message.conversation_id)
    conversation.current_id = selectors.newest_leaf_id(message=message)
    conversation.save(update_fields=["current"])
    return conversation


def conversation_update_settings(
    *, conversation: Conversation, options: ConversationSettings
) -> Conversation:
    """Change what the conversation's next replies are generated with."""
    conversation.model = options.model
    conversation.system_prompt = options.system_prompt
    conversation.temperature = options.temperature
    conversation.max_tokens = options.max_tokens
    conversation.save(update_fields=["model", "system_prompt", "temperature", "max_tokens"])
    return conversation


def conversation_defaults() -> ConversationSettings:
    """The settings of a new conversation, from the site's configuration."""
    return ConversationSettings(
        model=llm.default_model(), system_prompt=settings.CHAT_SYSTEM_PROMPT
    )
