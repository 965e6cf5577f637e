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


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
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
