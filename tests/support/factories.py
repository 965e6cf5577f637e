from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from conversations.models import Conversation, Message

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Conversation {n}")
    model = "fake-model"
    system_prompt = "You are a test assistant."


def _latest_message(message) -> Message | None:
    """A message made without a parent follows the conversation's newest one, as in a chat.

    Messages form a tree (migration 0002): without this, every factory-made question would
    be a root of its own, i.e. an alternative to the first question, not a follow-up.
    """
    return Message.objects.filter(conversation=message.conversation).order_by("id").last()


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    parent = factory.LazyAttribute(_latest_message)
    role = Message.Role.USER
    content = factory.Sequence(lambda n: f"Message text {n}")
    status = Message.Status.COMPLETE


class ReplyFactory(MessageFactory):
    role = Message.Role.ASSISTANT
    content = factory.Sequence(lambda n: f"Reply text {n}")
    model = "fake-model"
    prompt_tokens = 12
    completion_tokens = 5
    ttft_ms = 40
    total_ms = 120
