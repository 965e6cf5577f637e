"""The model module: one HTTP client per event loop, errors in our own words."""

from __future__ import annotations

import asyncio

import pytest

from conversations.llm import registry as llm
from conversations.llm.backends import openai as openai_backend
from conversations.llm.base import BadCredentials, BadRequest, Chunk, NotConfigured
from tests.support.fake_openai import Reply


async def _collect(**kwargs) -> list[Chunk]:
    return [chunk async for chunk in llm.stream_chat(**kwargs)]


def test_it_shares_one_http_client_per_event_loop(fake_openai):
    async def two_calls():
        await _collect(messages=[{"role": "user", "content": "a"}], model="m")
        first = openai_backend._http_client()
        await _collect(messages=[{"role": "user", "content": "b"}], model="m")
        return first, openai_backend._http_client()

    loop_a = asyncio.new_event_loop()
    loop_b = asyncio.new_event_loop()
    try:
        a1, a2 = loop_a.run_until_complete(two_calls())
        b1, _ = loop_b.run_until_complete(two_calls())
    finally:
        loop_a.close()
        loop_b.close()
    assert a1 is a2
    assert a1 is not b1


def test_it_streams_text_usage_and_the_served_model(fake_openai):
    fake_openai.script(Reply(tokens=["A", "B"], model="served-model-2024"))
    chunks = asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert "".join(c.text for c in chunks) == "AB"
    assert chunks[-1].completion_tokens == 2
    assert any(c.finish_reason == "stop" for c in chunks)
    assert {c.model for c in chunks if c.model} == {"served-model-2024"}
    body = fake_openai.requests[-1]
    assert body["stream_options"] == {"include_usage": True}


def test_without_key_or_base_url_it_says_not_configured(settings):
    settings.LLM_BACKEND = "openai"
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    assert not llm.is_configured()
    with pytest.raises(NotConfigured, match="No language model is configured"):
        asyncio.run(_collect(messages=[], model="m"))


def test_a_base_url_alone_is_enough_for_a_local_server(settings, fake_openai):
    settings.OPENAI_API_KEY = ""
    assert llm.is_configured()
    chunks = asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert "".join(c.text for c in chunks) == "Hello from the fake model."
    assert fake_openai.headers[-1]["Authorization"] == "Bearer not-needed"


def test_a_rate_limit_is_retried_when_retries_are_on(settings, fake_openai):
    settings.OPENAI_MAX_RETRIES = 1
    fake_openai.script(Reply(status=429), Reply(tokens=["ok"]))
    chunks = asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert "".join(c.text for c in chunks) == "ok"
    assert len(fake_openai.requests) == 2


def test_the_providers_auth_message_is_not_passed_on(fake_openai):
    fake_openai.script(Reply(status=401))
    with pytest.raises(BadCredentials) as info:
        asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert "sk-" not in info.value.user_message
    assert "OPENAI_API_KEY" in info.value.user_message


def test_a_server_that_rejects_stream_options_is_asked_again_without(fake_openai):
    fake_openai.script(
        Reply(status=400, error_message="Unrecognized request argument supplied: stream_options"),
        Reply(tokens=["fine"]),
    )
    chunks = asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert "".join(c.text for c in chunks) == "fine"
    assert "stream_options" in fake_openai.requests[0]
    assert "stream_options" not in fake_openai.requests[1]


def test_other_bad_requests_are_not_repeated(fake_openai):
    fake_openai.script(Reply(status=400, error_message="maximum context length exceeded"))
    with pytest.raises(BadRequest, match="maximum context length"):
        asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert len(fake_openai.requests) == 1


def test_a_malformed_base_url_is_explained(settings):
    settings.OPENAI_BASE_URL = "http://127.0.0.1:abc/v1"
    with pytest.raises(NotConfigured, match="model server address is not a valid URL"):
        asyncio.run(_collect(messages=[{"role": "user", "content": "hi"}], model="m"))
