"""The context budget: what does not fit the model's window is left out, oldest first."""

from __future__ import annotations

import pytest

from conversations.generation import context as gen_context
from conversations.llm import context as llm_context
from conversations.llm import registry as llm
from conversations.models import Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def text(label: str, chars: int = 150) -> str:
    return (label + " " + "x" * chars)[:chars]


@pytest.fixture
def small_window(settings):
    # 400 tokens; with no maximum reply length, 100 are kept for the reply: 300 for the prompt.
    settings.CHAT_CONTEXT_WINDOW = 400


def long_conversation(owner, pairs: int = 4):
    conversation = ConversationFactory(owner=owner)
    for i in range(pairs):
        MessageFactory(conversation=conversation, content=text(f"turn{i}-question"))
        ReplyFactory(conversation=conversation, content=text(f"turn{i}-answer"))
    return conversation


def test_the_oldest_turns_are_left_out_and_the_page_says_so(
    owner_client, owner, fake_openai, small_window
):
    conversation = long_conversation(owner)
    fake_openai.script(Reply(tokens=["Fits."]))
    send(owner_client, text("newest-question"), conversation)
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE

    sent = fake_openai.requests[-1]["messages"]
    # Every message costs 54 tokens here (150 bytes), the system prompt 13: all of it
    # (13 + 9 * 54 + 3 = 502) is over 300; without the two oldest turns it is 286.
    assert sent[0] == {"role": "system", "content": "You are a test assistant."}
    assert sent[-1]["content"].startswith("newest-question")
    contents = " ".join(m["content"] for m in sent)
    assert "turn0" not in contents and "turn1" not in contents
    assert "turn2-question" in contents and "turn3-answer" in contents
    assert len(sent) == 1 + 4 + 1
    assert llm.count_tokens(sent, model="fake-model") <= 300
    assert reply.omitted == 4

    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "4 earlier messages were left out to fit the model's context window." in html


def test_nothing_is_left_out_when_it_fits(owner_client, owner, fake_openai):
    conversation = long_conversation(owner)
    fake_openai.script(Reply(tokens=["ok"]))
    send(owner_client, "short", conversation)
    reply = finished(last_reply())
    assert reply.omitted == 0
    assert len(fake_openai.requests[-1]["messages"]) == 1 + 8 + 1
    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert "left out to fit" not in html


def test_the_maximum_reply_length_is_kept_free(owner, small_window):
    conversation = long_conversation(owner, pairs=2)
    question = MessageFactory(conversation=conversation, content=text("newest"))
    roomy = ReplyFactory(conversation=conversation, parent=question, status="pending")
    tight = ReplyFactory(conversation=conversation, parent=question, status="pending")
    Message.objects.filter(pk=tight.pk).update(max_tokens=180)
    tight.refresh_from_db()
    # 100 tokens kept for the reply: 300 for the prompt; 180 kept: only 220.
    assert llm_context.prompt_budget(model="fake-model", max_tokens=None) == 300
    assert llm_context.prompt_budget(model="fake-model", max_tokens=180) == 220
    # A maximum past half the window still leaves half of it for the prompt.
    assert llm_context.prompt_budget(model="fake-model", max_tokens=32768) == 200
    assert gen_context.reply_context(reply=roomy).omitted == 0
    assert gen_context.reply_context(reply=tight).omitted == 2


def test_a_question_too_long_for_the_window_is_cut_from_its_start(
    owner_client, owner, fake_openai, small_window
):
    conversation = long_conversation(owner, pairs=1)
    question = "START " + "y" * 3000 + " END"
    fake_openai.script(Reply(tokens=["Still answered."]))
    send(owner_client, question, conversation)
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.omitted == 2
    sent = fake_openai.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert len(sent) == 2
    assert sent[1]["content"].startswith(llm_context.TRUNCATED_NOTE)
    assert sent[1]["content"].endswith(" END")
    assert "START" not in sent[1]["content"]
    assert llm.count_tokens(sent, model="fake-model") <= 300
    # What was saved is the whole question.
    assert Message.objects.get(role="user", content__startswith="START").content == question


def test_per_model_windows_are_used(owner, settings):
    settings.CHAT_CONTEXT_WINDOWS = {"big-model": 100_000}
    settings.CHAT_CONTEXT_WINDOW = 400
    conversation = long_conversation(owner)
    question = MessageFactory(conversation=conversation, content=text("newest"))
    reply = ReplyFactory(
        conversation=conversation, parent=question, status="pending", model="big-model"
    )
    assert gen_context.reply_context(reply=reply).omitted == 0
    Message.objects.filter(pk=reply.pk).update(model="fake-model")
    reply.refresh_from_db()
    assert gen_context.reply_context(reply=reply).omitted == 4


def test_a_context_length_error_from_the_server_is_shown_inline(owner_client, fake_openai):
    message = (
        "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9000 tokens. Please reduce the length of the messages."
    )
    fake_openai.script(Reply(status=400, error_message=message))
    send(owner_client, "Too long for the server")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "maximum context length" in reply.error
    html = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "maximum context length" in html
    assert "Retry</button>" in html
