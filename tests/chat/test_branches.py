"""Branches: regenerate, edit, switching versions, and that the model sees one branch only."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from conversations.generation import context as gen_context
from conversations.models import Conversation, Message
from tests.support.factories import MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def bodies(html: str) -> list[str]:
    """The text of each shown message (replies are rendered Markdown: tags dropped)."""
    found = re.findall(r'<div class="msg-body[^"]*"[^>]*>(.*?)</div>', html, re.S)
    return [re.sub(r"<[^>]+>", "", body).strip() for body in found]


def page(client, conversation: Conversation) -> str:
    return client.get(conversation.get_absolute_url()).content.decode()


def show(client, message: Message, **extra):
    return client.post(reverse("show", args=[message.conversation_id, message.pk]), **extra)


def regenerate(client, reply: Message, **extra):
    return client.post(reverse("retry", args=[reply.conversation_id, reply.pk]), **extra)


def edit(client, message: Message, content: str, **extra):
    url = reverse("edit", args=[message.conversation_id, message.pk])
    return client.post(url, {"content": content}, **extra)


@pytest.fixture
def tree(owner):
    """alice's conversation with two versions of the first question, the second with two
    versions of its reply:  q1 → a1 → q2 → a2   and   q1' → b1 | b1'  (shown: b1')."""
    q1 = MessageFactory(conversation__owner=owner, content="ALPHA question")
    conversation = q1.conversation
    a1 = ReplyFactory(conversation=conversation, parent=q1, content="ALPHA answer")
    q2 = MessageFactory(conversation=conversation, parent=a1, content="ALPHA follow-up")
    a2 = ReplyFactory(conversation=conversation, parent=q2, content="ALPHA second answer")
    q1b = MessageFactory(conversation=conversation, parent=None, content="BRAVO question")
    b1 = ReplyFactory(conversation=conversation, parent=q1b, content="BRAVO answer one")
    b2 = ReplyFactory(conversation=conversation, parent=q1b, content="BRAVO answer two")
    return conversation, {"q1": q1, "a1": a1, "q2": q2, "a2": a2, "q1b": q1b, "b1": b1, "b2": b2}


def test_it_shows_the_newest_branch_with_the_place_of_each_version(owner_client, tree):
    conversation, m = tree
    html = page(owner_client, conversation)
    assert bodies(html) == ["BRAVO question", "BRAVO answer two"]
    assert "ALPHA" not in html
    assert "Version 2 of 2" in html  # both the question and the reply are version 2 of 2
    assert html.count('aria-label="Previous version"') == 2
    assert html.count('aria-label="Next version"') == 2
    # The last versions' Next buttons are disabled; Previous leads to the earlier version.
    assert html.count('aria-label="Next version" disabled') == 2
    assert f'action="/c/{conversation.pk}/m/{m["q1"].pk}/show/"' in html


def test_switching_to_a_version_shows_its_newest_continuation(owner_client, tree):
    conversation, m = tree
    response = show(owner_client, m["q1"], **HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#thread"
    assert bodies(response.content.decode()) == [
        "ALPHA question",
        "ALPHA answer",
        "ALPHA follow-up",
        "ALPHA second answer",
    ]
    conversation.refresh_from_db()
    assert conversation.current_id == m["a2"].pk
    assert "BRAVO" not in page(owner_client, conversation)

    # Back to the other version of the question: nothing of either branch was lost.
    show(owner_client, m["q1b"])
    assert bodies(page(owner_client, conversation)) == ["BRAVO question", "BRAVO answer two"]
    show(owner_client, m["b1"])
    assert bodies(page(owner_client, conversation)) == ["BRAVO question", "BRAVO answer one"]
    assert Message.objects.filter(conversation=conversation).count() == 7


def test_switching_without_javascript_redirects_to_the_conversation(owner_client, tree):
    conversation, m = tree
    response = show(owner_client, m["q1"])
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.pk}/#m-{m['q1'].pk}"


def test_regenerate_keeps_the_old_reply_as_a_sibling(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["First", " answer"]), Reply(tokens=["Second", " answer"]))
    send(owner_client, "Tell me something")
    first = finished(last_reply())
    assert "Regenerate</button>" in page(owner_client, first.conversation)

    response = regenerate(owner_client, first, **HTMX)
    assert response.status_code == 200
    second = finished(last_reply())
    assert second.pk != first.pk
    assert second.parent_id == first.parent_id
    assert second.content == "Second answer"
    first.refresh_from_db()
    assert first.content == "First answer"  # kept
    conversation = Conversation.objects.get()
    assert conversation.current_id == second.pk
    html = page(owner_client, conversation)
    assert bodies(html) == ["Tell me something", "Second answer"]
    assert "Version 2 of 2" in html
    # The model was asked the same question again, without the first answer.
    assert fake_openai.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Tell me something"}
    ]
    show(owner_client, first)
    assert bodies(page(owner_client, conversation)) == ["Tell me something", "First answer"]


def test_regenerate_is_refused_while_a_reply_is_being_written(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["done"]), Reply(tokens=["slow"] * 5, delay=0.3))
    send(owner_client, "One")
    first = finished(last_reply())
    send(owner_client, "Two", first.conversation)
    busy = last_reply()
    assert busy.is_in_flight
    # Neither the finished reply of another turn nor the one being written.
    for reply in (first, busy):
        response = regenerate(owner_client, reply, **HTMX)
        assert response.status_code == 409
        assert "still being written" in response.content.decode()
    switch = show(owner_client, first, **HTMX)
    assert switch.status_code == 409
    finished(busy)
    assert Message.objects.count() == 4


def test_an_edit_is_a_new_version_of_the_question_with_a_new_reply(owner_client, fake_openai):
    fake_openai.script(
        Reply(tokens=["Answer", " A"]), Reply(tokens=["Answer", " B"]), Reply(tokens=["Edited"])
    )
    send(owner_client, "Question one")
    a = finished(last_reply())
    send(owner_client, "Question two", a.conversation)
    b = finished(last_reply())
    original = Message.objects.get(content="Question one")

    form = owner_client.get(reverse("edit", args=[original.conversation_id, original.pk]), **HTMX)
    assert form.status_code == 200
    assert "Question one</textarea>" in form.content.decode()

    response = edit(owner_client, original, "Question one, rephrased", **HTMX)
    assert response.status_code == 200
    reply = finished(last_reply())
    question = reply.parent
    assert question.content == "Question one, rephrased"
    assert question.parent_id == original.parent_id is None
    assert reply.content == "Edited"
    conversation = Conversation.objects.get()
    assert conversation.current_id == reply.pk
    html = page(owner_client, conversation)
    assert bodies(html) == ["Question one, rephrased", "Edited"]
    assert "Version 2 of 2" in html
    # The model saw the edited question alone: nothing of the original branch.
    assert fake_openai.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Question one, rephrased"}
    ]
    # The original and everything after it are kept.
    show(owner_client, original)
    assert bodies(page(owner_client, conversation)) == [
        "Question one",
        "Answer A",
        "Question two",
        "Answer B",
    ]
    assert b.pk in Message.objects.values_list("pk", flat=True)


def test_editing_a_later_question_keeps_what_came_before(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["A1"]), Reply(tokens=["A2"]), Reply(tokens=["A2 again"]))
    send(owner_client, "Q1")
    a1 = finished(last_reply())
    send(owner_client, "Q2", a1.conversation)
    finished(last_reply())
    edit(owner_client, Message.objects.get(content="Q2"), "Q2 edited", **HTMX)
    finished(last_reply())
    assert fake_openai.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2 edited"},
    ]
    assert bodies(page(owner_client, a1.conversation)) == ["Q1", "A1", "Q2 edited", "A2 again"]


def test_edit_refuses_an_empty_text_and_replies(owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner)
    question = MessageFactory(conversation=reply.conversation, content="Keep me")
    response = edit(owner_client, question, "   ", **HTMX)
    assert response.status_code == 422
    assert response["HX-Retarget"] == f"#m-{question.pk}"
    assert "Type a message before sending." in response.content.decode()
    assert edit(owner_client, reply, "Not mine to edit").status_code == 400
    url = reverse("edit", args=[reply.conversation_id, reply.pk])
    assert owner_client.get(url).status_code == 400
    assert Message.objects.count() == 2


def test_edit_works_without_javascript(owner_client, owner, fake_openai, settings):
    question = MessageFactory(conversation__owner=owner, content="Plain question")
    ReplyFactory(conversation=question.conversation, parent=question)
    url = reverse("edit", args=[question.conversation_id, question.pk])
    html = owner_client.get(url).content.decode()
    assert "<html" in html
    assert f'action="{url}"' in html
    assert "Plain question</textarea>" in html
    fake_openai.script(Reply(tokens=["No", " JS"]))
    response = owner_client.post(url, {"content": "Plain question, edited"})
    assert response.status_code == 302
    assert bodies(page(owner_client, question.conversation))[-2:] == [
        "Plain question, edited",
        "No JS",
    ]


def test_the_model_sees_only_the_shown_branch(owner_client, tree, fake_openai):
    conversation, m = tree
    fake_openai.script(Reply(tokens=["CHARLIE"]), Reply(tokens=["DELTA"]))
    send(owner_client, "CHARLIE next", conversation)
    reply = finished(last_reply())
    assert reply.parent.parent_id == m["b2"].pk
    sent = fake_openai.requests[-1]["messages"]
    assert [x["content"] for x in sent] == [
        "You are a test assistant.",
        "BRAVO question",
        "BRAVO answer two",
        "CHARLIE next",
    ]
    assert "ALPHA" not in str(sent) and "answer one" not in str(sent)

    show(owner_client, m["q1"])
    send(owner_client, "DELTA next", conversation)
    finished(last_reply())
    sent = fake_openai.requests[-1]["messages"]
    assert [x["content"] for x in sent[1:]] == [
        "ALPHA question",
        "ALPHA answer",
        "ALPHA follow-up",
        "ALPHA second answer",
        "DELTA next",
    ]
    assert "BRAVO" not in str(sent) and "CHARLIE" not in str(sent)


def test_the_context_never_holds_error_text_nor_what_came_after(owner):
    q1 = MessageFactory(conversation__owner=owner, content="Q1")
    failed = ReplyFactory(
        conversation=q1.conversation, parent=q1, status="error", content="partial", error="boom"
    )
    q2 = MessageFactory(conversation=q1.conversation, parent=failed, content="Q2")
    target = ReplyFactory(
        conversation=q1.conversation, parent=q2, status="pending", system_prompt="Sys"
    )
    MessageFactory(conversation=q1.conversation, parent=target, content="After")
    assert gen_context.model_context(reply=target) == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Q1"},
        {"role": "user", "content": "Q2"},
    ]


@pytest.mark.django_db
def test_a_stranger_gets_404_on_switch_edit_and_regenerate(stranger_client, tree):
    conversation, m = tree
    for response in (
        show(stranger_client, m["q1"], **HTMX),
        edit(stranger_client, m["q1"], "injected", **HTMX),
        stranger_client.get(reverse("edit", args=[conversation.pk, m["q1"].pk])),
        stranger_client.get(reverse("message", args=[conversation.pk, m["q1"].pk]), **HTMX),
        regenerate(stranger_client, m["b2"], **HTMX),
    ):
        assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.current_id is None
    assert Message.objects.count() == 7


def test_cancelling_an_edit_shows_the_message_again(owner_client, tree):
    conversation, m = tree
    url = reverse("message", args=[conversation.pk, m["q1b"].pk])
    html = owner_client.get(url, **HTMX).content.decode()
    assert bodies(html) == ["BRAVO question"]
    assert "Version 2 of 2" in html
    assert owner_client.get(url).status_code == 302


def test_a_branchy_page_costs_a_fixed_number_of_queries(
    owner_client, tree, django_assert_max_num_queries
):
    conversation, m = tree
    parent = m["b2"]
    for i in range(20):
        question = MessageFactory(conversation=conversation, parent=parent, content=f"Q{i}")
        MessageFactory(conversation=conversation, parent=parent, content=f"Q{i} bis")
        parent = ReplyFactory(conversation=conversation, parent=question)
        ReplyFactory(conversation=conversation, parent=question)
    with django_assert_max_num_queries(6):
        response = owner_client.get(conversation.get_absolute_url())
    assert response.status_code == 200
    assert response.content.decode().count("<article") == 2 + 40
