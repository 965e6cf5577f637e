"""Sending messages and getting replies, through the views, the service and the real
openai client talking to the fake server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply, validate_request
from tests.support.helpers import HTMX, finished, last_reply, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_first_message_creates_conversation_with_provisional_title(
    owner_client, owner, fake_openai
):
    fake_openai.script(Reply(tokens=["Paris", " is", " the", " capital."]))
    response = send(owner_client, "What is the capital of France and why is it there?")
    assert response.status_code == 200
    conversation = Conversation.objects.get()
    assert conversation.owner == owner
    assert conversation.title == "What is the capital of France and why…"
    assert response["HX-Push-Url"] == f"/c/{conversation.pk}/"
    assert response["HX-Retarget"] == "#chat"
    html = response.content.decode()
    assert 'data-role="user"' in html
    assert "What is the capital of France" in html
    assert 'data-status="pending"' in html
    # The new conversation is at the top of the sidebar.
    assert f'href="/c/{conversation.pk}/"' in html

    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Paris is the capital."
    assert reply.parent.content.startswith("What is the capital")
    assert reply.completion_tokens == 4
    assert reply.prompt_tokens and reply.prompt_tokens > 0
    assert reply.ttft_ms is not None and reply.total_ms is not None
    assert reply.total_ms >= reply.ttft_ms
    assert reply.model == "fake-model"


def test_user_message_is_saved_before_the_model_is_called(owner_client, fake_openai):
    fake_openai.script(Reply(first_delay=0.5))
    send(owner_client, "Remember me")
    fake_openai.wait_for_requests(1)
    # The model has been asked but has not answered yet: the question is already stored.
    question = Message.objects.get(role=Message.Role.USER)
    assert question.content == "Remember me"
    assert last_reply().status in Message.IN_FLIGHT
    finished(last_reply())


def test_history_and_system_prompt_are_sent_to_the_model(owner_client, owner, fake_openai):
    conversation = ConversationFactory(owner=owner, system_prompt="Be brief.")
    q1 = MessageFactory(conversation=conversation, content="First question")
    ReplyFactory(conversation=conversation, parent=q1, content="First answer")
    q2 = MessageFactory(conversation=conversation, content="Second question")
    ReplyFactory(
        conversation=conversation,
        parent=q2,
        content="half an answer",
        status=Message.Status.STOPPED,
    )
    q3 = MessageFactory(conversation=conversation, content="Third question")
    ReplyFactory(
        conversation=conversation,
        parent=q3,
        content="",
        status=Message.Status.ERROR,
        error="The model server had an internal error",
    )
    send(owner_client, "Fourth question", conversation)
    finished(last_reply())

    body = fake_openai.requests[-1]
    validate_request(body)
    assert body["model"] == "fake-model"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
        {"role": "assistant", "content": "half an answer"},
        {"role": "user", "content": "Third question"},
        {"role": "user", "content": "Fourth question"},
    ]
    assert fake_openai.headers[-1]["Authorization"] == (
        "Bearer sk-test-key-never-sent-anywhere-but-loopback"
    )


def test_a_second_send_while_a_reply_streams_is_refused(owner_client, owner, fake_openai):
    fake_openai.script(Reply(tokens=["slow"] * 5, delay=0.2))
    send(owner_client, "One")
    conversation = Conversation.objects.get()
    response = send(owner_client, "Two", conversation)
    assert response.status_code == 409
    assert "still being written" in response.content.decode()
    assert response["HX-Retarget"] == "#composer"
    # The refused text is kept in the composer, not dropped.
    assert "Two</textarea>" in response.content.decode()
    finished(last_reply())
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert len(fake_openai.requests) == 1


def test_the_next_message_goes_to_the_same_conversation(owner_client, owner, fake_openai):
    send(owner_client, "One")
    finished(last_reply())
    conversation = Conversation.objects.get()
    response = send(owner_client, "Two", conversation)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<article") == 2
    assert 'hx-swap-oob="true"' in html  # the sidebar moves this conversation to the top
    finished(last_reply())
    assert conversation.messages.count() == 4
    assert fake_openai.requests[-1]["messages"][-3:] == [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Hello from the fake model."},
        {"role": "user", "content": "Two"},
    ]


def test_without_javascript_the_form_posts_and_redirects_to_the_finished_reply(
    owner_client, fake_openai
):
    fake_openai.script(Reply(tokens=["No", " JS", " needed."], delay=0.05))
    response = send(owner_client, "Plain form post", htmx=False)
    conversation = Conversation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.pk}/"
    page = owner_client.get(response["Location"]).content.decode()
    assert "Plain form post" in page
    assert "No JS needed." in page
    assert last_reply().status == Message.Status.COMPLETE


def test_a_form_post_waiting_for_its_reply_does_not_hold_up_other_requests(owner, fake_openai):
    # Every request's synchronous work here runs on one thread (as on a lane): a no-JS
    # send that held it while the reply is written would stall every other page meanwhile.
    fake_openai.script(Reply(tokens=["Slow", " one."], first_delay=2))
    client = AsyncClient()

    async def scenario() -> None:
        await client.aforce_login(owner)
        posting = asyncio.create_task(client.post(reverse("send_new"), {"content": "Wait"}))
        await asyncio.to_thread(fake_openai.wait_for_requests, 1)
        started = time.monotonic()
        page = await client.get(reverse("chat"))
        assert page.status_code == 200
        assert time.monotonic() - started < 1.5
        assert not posting.done()
        response = await posting
        assert response.status_code == 302

    async_to_sync(scenario)()
    assert last_reply().status == Message.Status.COMPLETE


def test_stop_keeps_the_partial_text_and_closes_the_upstream_request(
    owner_client, owner, fake_openai
):
    fake_openai.script(Reply(tokens=[f"t{i} " for i in range(200)], delay=0.05))
    send(owner_client, "Write a lot")
    reply = last_reply()
    # Wait until some text has been saved.
    for _ in range(200):
        reply.refresh_from_db()
        if reply.content:
            break
        fake_openai.disconnected.wait(0.02)
    assert reply.content
    url = reverse("stop", args=[reply.conversation_id, reply.pk])
    response = owner_client.post(url, **HTMX)
    assert response.status_code == 200
    assert fake_openai.disconnected.wait(5), "the request to the model server was not closed"
    reply = finished(reply)
    assert reply.status == Message.Status.STOPPED
    assert reply.content.startswith("t0 ")
    assert len(reply.content) < len("".join(f"t{i} " for i in range(200)))
    html = response.content.decode()
    assert 'data-status="stopped"' in html
    assert "Stop</button>" not in html


def test_stop_without_javascript_redirects_back(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["a"] * 100, delay=0.05))
    send(owner_client, "Go")
    reply = last_reply()
    response = owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]))
    assert response.status_code == 302
    assert finished(reply).status == Message.Status.STOPPED


def test_stopping_a_finished_reply_changes_nothing(owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner, content="Done already")
    response = owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    assert response.status_code == 200
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Done already"


@pytest.mark.parametrize(
    ("scripted", "expected"),
    [
        (Reply(status=401), "rejected the API key"),
        (Reply(status=429), "rate limiting"),
        (Reply(status=500), "internal error"),
        (Reply(status=503), "internal error"),
        (Reply(status=404), "was not found"),
        (
            Reply(status=400, error_message="This model's maximum context length is 10"),
            "maximum context length",
        ),
    ],
    ids=[
        "bad-key",
        "rate-limited",
        "server-error",
        "unavailable",
        "model-not-found",
        "bad-request",
    ],
)
def test_each_model_error_gives_its_message_and_keeps_the_user_message(
    owner_client, fake_openai, scripted, expected
):
    fake_openai.script(scripted)
    send(owner_client, "Will this fail?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert expected in reply.error
    assert "sk-test" not in reply.error
    assert Message.objects.get(role=Message.Role.USER).content == "Will this fail?"
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert expected in page
    assert "Retry</button>" in page


def test_a_stream_that_breaks_halfway_keeps_the_partial_text(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["Half", " of", " it", " and", " more"], break_after=3))
    send(owner_client, "Break please")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert reply.content == "Half of it"
    assert "broke before the reply was finished" in reply.error


def test_a_stalled_server_times_out_and_keeps_the_partial_text(owner_client, fake_openai, settings):
    settings.OPENAI_TIMEOUT = 0.5
    fake_openai.script(Reply(tokens=["Before", " stall", " after"], stall_after=2, stall=3))
    send(owner_client, "Stall please")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert reply.content == "Before stall"
    assert "took too long" in reply.error


def test_an_unreachable_server_gives_a_clear_message(owner_client, settings, fake_openai):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    send(owner_client, "Anyone there?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "Cannot reach the model server." in reply.error
    assert "127.0.0.1" not in reply.error  # the address is for staff only (issue 11)


def test_retry_answers_the_same_message_again_and_keeps_the_failed_reply(owner_client, fake_openai):
    fake_openai.script(Reply(status=500), Reply(tokens=["Second", " time", " lucky"]))
    send(owner_client, "Try twice")
    failed = finished(last_reply())
    assert failed.status == Message.Status.ERROR
    response = owner_client.post(reverse("retry", args=[failed.conversation_id, failed.pk]), **HTMX)
    assert response.status_code == 200
    new = finished(last_reply())
    assert new.pk != failed.pk
    assert new.parent_id == failed.parent_id
    assert new.status == Message.Status.COMPLETE
    assert new.content == "Second time lucky"
    failed.refresh_from_db()
    assert failed.status == Message.Status.ERROR  # kept, not deleted
    # The retry's context has the question once and no error text.
    assert fake_openai.requests[-1]["messages"][1:] == [{"role": "user", "content": "Try twice"}]
    # The thread now shows the new reply in place of the failed one, which stays reachable
    # as the other version (branches: the failed attempt is a sibling, no longer inline).
    html = response.content.decode()
    assert response["HX-Retarget"] == "#thread"
    assert f'id="m-{new.pk}"' in html
    assert f'id="m-{failed.pk}"' not in html
    assert "Version 2 of 2" in html
    assert html.count("Retry</button>") == 0


def test_only_the_last_reply_of_a_branch_can_be_regenerated(owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner)
    MessageFactory(conversation=reply.conversation, parent=reply)
    response = owner_client.post(reverse("retry", args=[reply.conversation_id, reply.pk]))
    assert response.status_code == 400


def test_refusals_and_length_limits_are_kept_as_text(owner_client, fake_openai):
    fake_openai.script(Reply(tokens=["Cut", " off"], finish_reason="length"))
    send(owner_client, "Long please")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Cut off"


def test_a_recorded_openai_stream_is_saved_exactly(owner_client, fake_openai):
    from tests.support.fake_openai import STREAMS_DIR

    raw = next(STREAMS_DIR.glob("e2aad469*.bin")).read_bytes()
    fake_openai.script(Reply(raw=raw))
    send(owner_client, "Replay")
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE
    assert reply.content
    assert reply.completion_tokens is not None
    assert reply.model.startswith("gpt-4o")


def test_stop_right_after_send_records_the_reply_as_stopped(owner_client, fake_openai):
    """Stop may arrive before the generation has even begun; it must still end cleanly."""
    fake_openai.script(*[Reply(first_delay=5) for _ in range(5)])  # one per attempt
    for _ in range(5):
        send(owner_client, "Quick stop", Conversation.objects.first())
        reply = last_reply()
        owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
        reply = finished(reply)
        assert reply.status == Message.Status.STOPPED
        assert reply.total_ms is not None
