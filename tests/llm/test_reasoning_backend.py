"""Reasoning read wherever OpenAI-compatible servers put it, streamed apart from the answer."""

from __future__ import annotations

import asyncio

import pytest

from conversations.llm import registry as llm
from conversations.llm.base import Chunk, StreamBroken
from tests.support.fake_openai import Reply


async def _collect(**kwargs) -> list[Chunk]:
    return [chunk async for chunk in llm.stream_chat(**kwargs)]


def _stream(fake_openai, reply: Reply) -> tuple[str, str, list[Chunk]]:
    fake_openai.script(reply)
    chunks = asyncio.run(_collect(messages=[{"role": "user", "content": "2+2?"}], model="m"))
    reasoning, answer = "", ""
    for chunk in chunks:
        if chunk.rethink:
            reasoning, answer = reasoning + answer, ""
        reasoning += chunk.reasoning
        answer += chunk.text
    return reasoning, answer, chunks


@pytest.mark.parametrize(
    "form",
    ["reasoning_content", "reasoning", "reasoning_details", "openrouter", "summary", "think"],
)
def test_each_servers_reasoning_streams_apart_from_the_answer(fake_openai, form):
    reply = Reply(
        reasoning=["Two and ", "two ", "make four."], reasoning_format=form, tokens=["It is ", "4."]
    )
    reasoning, answer, chunks = _stream(fake_openai, reply)
    assert reasoning == "Two and two make four."
    assert answer == "It is 4."
    # Live: the reasoning arrives in pieces, before the answer, never all at the end.
    pieces = [c.reasoning for c in chunks if c.reasoning]
    assert len(pieces) >= 2
    first_answer = next(i for i, c in enumerate(chunks) if c.text)
    assert all(i < first_answer for i, c in enumerate(chunks) if c.reasoning)
    assert not any(c.rethink for c in chunks)


def test_a_closing_tag_without_an_opening_one_makes_the_text_before_it_reasoning(fake_openai):
    reply = Reply(
        reasoning=["Okay, the user ", "asks 2+2."], reasoning_format="think_unopened", tokens=["4."]
    )
    reasoning, answer, chunks = _stream(fake_openai, reply)
    assert (reasoning, answer) == ("Okay, the user asks 2+2.", "4.")
    assert sum(c.rethink for c in chunks) == 1


def test_tags_split_across_chunks_anywhere(fake_openai):
    reply = Reply(tokens=["<th", "ink", ">Hm", "m.</", "thi", "nk>", "\n\nDo", "ne."])
    reasoning, answer, _ = _stream(fake_openai, reply)
    assert (reasoning, answer) == ("Hmm.", "Done.")


def test_reasoning_tokens_are_recorded(fake_openai):
    reply = Reply(reasoning=["a", "b", "c"], tokens=["x"])
    _, _, chunks = _stream(fake_openai, reply)
    usage = [c for c in chunks if c.completion_tokens is not None]
    assert usage[-1].completion_tokens == 4
    assert usage[-1].reasoning_tokens == 3


def test_a_plain_reply_has_no_reasoning(fake_openai):
    reasoning, answer, chunks = _stream(fake_openai, Reply(tokens=["a < b", " and <thin", "gs>"]))
    assert (reasoning, answer) == ("", "a < b and <things>")
    assert all(c.reasoning_tokens in (None, 0) for c in chunks)


def _until_broken() -> list[Chunk]:
    """The chunks of a stream that breaks, up to the break (StreamBroken is raised)."""
    got: list[Chunk] = []

    async def run() -> None:
        async for chunk in llm.stream_chat(messages=[{"role": "user", "content": "q"}], model="m"):
            got.append(chunk)

    with pytest.raises(StreamBroken):
        asyncio.run(run())
    return got


def test_reasoning_before_a_broken_stream_is_kept(fake_openai):
    fake_openai.script(Reply(reasoning=["Thinking ", "hard"], tokens=["x"], break_after=2))
    got = _until_broken()
    assert "".join(c.reasoning for c in got) == "Thinking hard"


def test_text_held_back_as_a_possible_tag_is_not_lost_when_the_stream_breaks(fake_openai):
    fake_openai.script(Reply(tokens=["<think>deep</thi"], break_after=1))
    got = _until_broken()
    assert "".join(c.reasoning for c in got) == "deep</thi"


def test_the_local_backends_think_tags_are_split_the_same_way(monkeypatch):
    """A local GGUF model writes its thinking in the text: the registry splits every
    backend's stream, the local one's too."""
    from conversations.llm.backends import local

    async def local_stream(**kwargs):
        for piece in ["<th", "ink>Let me", " count.</thi", "nk>\n\n", "Three", "."]:
            yield Chunk(text=piece, model="local:tiny")
        yield Chunk(model="local:tiny", finish_reason="stop", completion_tokens=6)

    monkeypatch.setattr(local, "stream_chat", local_stream)
    chunks = asyncio.run(
        _collect(messages=[{"role": "user", "content": "1+2?"}], model="local:tiny")
    )
    assert "".join(c.reasoning for c in chunks) == "Let me count."
    assert "".join(c.text for c in chunks) == "Three."
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
