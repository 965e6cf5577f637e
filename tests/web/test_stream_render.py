"""A streaming reply's `block` and `tail` events: finished Markdown blocks rendered once,
the open block re-rendered, always sanitized, well-formed HTML; bursts coalesced."""

from __future__ import annotations

import html
import itertools
import re
from html.parser import HTMLParser

import pytest

from conversations.models import Message
from conversations.rendering import BlockSplitter, render_markdown, split_blocks
from tests.support.factories import ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send
from tests.support.sse import events, http_client, read_stream, stream_url

pytestmark = pytest.mark.django_db(transaction=True)

FENCED = [
    "Look:\n\n",
    "```python\n",
    "x = '<b>'\n",
    "<script>alert(1)</script>\n",
    "y = 2\n",
    "```\n",
    "\nAfter the **code**.",
]
VOID = {"br", "hr"}


class Balance(HTMLParser):
    """Every tag closed, in order, nothing left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()


def balanced_tags(fragment: str) -> list[str]:
    parser = Balance()
    parser.feed(fragment)
    parser.close()
    assert not parser.open, parser.open
    return parser.tags


def page_view(received: list[tuple[str, str, float]]) -> list[tuple[str, list[str], str, str]]:
    """What the page shows after each `block`/`tail` event: (text so far by the deltas,
    the blocks appended, the open block shown, which event)."""
    text, blocks, tail, out = "", [], "", []
    for event, data, _ in received:
        if event == "delta":
            text += html.unescape(data)
        elif event == "block":
            blocks.append(data)
            out.append((text, list(blocks), tail, event))
        elif event == "tail":
            tail = data
            out.append((text, list(blocks), tail, event))
    return out


def test_an_open_fence_shows_as_code_and_is_rendered_once_when_it_closes(
    asgi_server, owner_client, fake_openai
):
    fake_openai.script(Reply(tokens=FENCED, delay=0.2))
    send(owner_client, "Some code")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    full = "".join(FENCED)
    for text, blocks, tail, _ in page_view(received):
        finished_part, _ = split_blocks(text)
        # The page holds the finished blocks, each rendered once, and the open one.
        assert "".join(blocks) == "".join(
            render_markdown(b) + "\n" for b in _blocks_of(finished_part)
        ), (
            text,
            blocks,
        )
        for fragment in [*blocks, tail]:
            tags = balanced_tags(fragment)
            assert set(tags) <= {"p", "div", "span", "button", "pre", "code", "strong"}, tags
            assert "<script" not in fragment and "<b>" not in fragment
    tails = [(text, data) for text, _, data, event in page_view(received) if event == "tail"]
    mid_fence = [data for text, data in tails if text.count("```") == 1]
    assert len(mid_fence) >= 2, tails
    for data in mid_fence:
        # The open fence is a code block, and the open block's HTML ends right after it.
        assert '<pre class="highlight"><code>' in data
        assert data.endswith("</code></pre></div>"), data
    shown = [html.unescape(re.sub(r"<[^>]*>", "", data)) for data in mid_fence]
    assert any("<script>alert(1)</script>" in text for text in shown), shown
    # Once closed, the whole fence is one block, sent once.
    blocks = [data for event, data, _ in received if event == "block"]
    code_blocks = [data for data in blocks if "<pre" in data]
    assert len(code_blocks) == 1 and code_blocks[0].endswith("</code></pre></div>\n")
    assert received[-1][0] == "done"
    assert "<p>After the <strong>code</strong>.</p>" in received[-1][1]
    assert finished(reply).content == full


def _blocks_of(text: str) -> list[str]:
    """The blocks a stream would have sent for `text`, finished part fed line by line."""
    splitter, out = BlockSplitter(), []
    for line in text.splitlines(keepends=True):
        done = splitter.feed(line)
        if done:
            out.append(done)
    return out


def test_an_event_costs_what_its_block_costs_not_what_the_reply_is(
    asgi_server, owner_client, fake_openai
):
    paragraphs = [f"Paragraph {i} has **a few** words in it.\n\n" for i in range(300)]
    fake_openai.script(Reply(tokens=paragraphs, delay=0.001))
    send(owner_client, "A long one")
    reply = last_reply()
    with http_client(asgi_server, owner_client) as http:
        with http.stream("GET", stream_url(reply) + "&deltas=0") as response:
            received = list(events(response))
    full = "".join(paragraphs)
    assert len(full) > 12_000
    streamed = [(event, data) for event, data, _ in received if event in ("block", "tail")]
    assert len(streamed) >= 5
    # Nothing is sent twice: the blocks add up to the reply's HTML once (a page of
    # re-renders would be ~100 times that), and the open block never holds more than
    # the one paragraph being written.
    whole = len(render_markdown(full))
    sent = sum(len(data) for event, data in streamed if event == "block")
    assert sent <= whole * 1.05, (sent, whole)
    tails = [len(data) for event, data in streamed if event == "tail"]
    assert max(tails, default=0) < 200, tails
    # The page asked for no deltas; the blocks together are the whole reply, each once.
    assert not [event for event, _, _ in received if event == "delta"]
    blocks = "".join(data for event, data in streamed if event == "block")
    assert blocks.count("<p>Paragraph ") == 300
    assert re.findall(r"Paragraph (\d+)", blocks) == [str(i) for i in range(300)]
    finished(reply)


def test_a_burst_from_the_model_is_coalesced_into_a_few_events(
    asgi_server, owner_client, fake_openai
):
    tokens = [f"t{i} " for i in range(200)]
    fake_openai.script(Reply(tokens=tokens))
    send(owner_client, "All at once")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    deltas = [data for event, data, _ in received if event == "delta"]
    assert html.unescape("".join(deltas)) == "".join(tokens)
    # 200 tokens with no delay between them: a handful of pieces, not 200 events.
    assert len(deltas) <= 40, len(deltas)
    finished(reply)


def test_the_open_block_is_re_rendered_throttled_and_only_for_new_text(
    asgi_server, owner_client, fake_openai
):
    tokens = [f"w{i} " for i in range(60)]
    fake_openai.script(Reply(tokens=tokens, delay=0.03))
    send(owner_client, "Quickly")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    deltas = [data for event, data, _ in received if event == "delta"]
    tails = _tails_at(received)
    # About 1.8 s of tokens and a render at most every 0.15 s: far fewer renders than deltas.
    assert len(tails) >= 2, tails
    span = tails[-1][2] - tails[0][2]
    assert len(tails) <= span / 0.15 + 2, [(len(t), at) for t, _, at in tails]
    assert len(deltas) >= 2 * len(tails), (len(deltas), len(tails))
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(tails)]
    assert all(gap > 0.07 for gap in gaps), gaps
    # Each is the open block as it was then, never the same text twice.
    assert all(data == render_markdown(text) for text, data, _ in tails)
    texts = [text for text, _, _ in tails]
    assert len(set(texts)) == len(texts) and "" not in texts
    assert received[-1][0] == "done"
    finished(reply)


def _tails_at(received: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Each `tail` event with the text the deltas had sent by then, and its arrival."""
    text, out = "", []
    for event, data, at in received:
        if event == "delta":
            text += html.unescape(data)
        elif event == "tail":
            out.append((text, data, at))
    return out


def test_a_reply_followed_in_the_database_is_rendered_too(
    asgi_server, owner_client, owner, settings
):
    """No live generator in this process: the stream follows the database, and renders it."""
    settings.CHAT_STALE_AFTER = 0.6
    reply = ReplyFactory(
        conversation__owner=owner, content="Half:\n```js\nlet a", status=Message.Status.STREAMING
    )
    received = read_stream(asgi_server, owner_client, reply)
    tails = [data for event, data, _ in received if event == "tail"]
    assert tails and tails[0] == render_markdown("Half:\n```js\nlet a")
    assert tails[0].endswith("</code></pre></div>") and "<pre" in tails[0]
    assert received[-1][0] == "done"
    assert 'data-status="interrupted"' in received[-1][1]


@pytest.mark.parametrize(
    "text",
    [
        "One.\n\nTwo **bold**\n\n",
        "Code:\n\n```py\na = 1\n\nb = 2\n```\nAfter\n\nEnd",
        "~~~\n```\nstill code\n~~~\n\n",
        "````\n```\n````\nx\n\n",
        "   ```\nindented fence\n   ```\n\n    ```not a fence\n\ntail",
        "- a\n- b\n\n1. c\n\n| h |\n|---|\n| d |\n\n",
    ],
)
def test_a_reply_splits_into_the_same_blocks_however_its_text_arrives(text):
    whole = split_blocks(text)
    splitter, finished_text = BlockSplitter(), ""
    for char in text:
        finished_text += splitter.feed(char)
    assert (finished_text, splitter.open) == whole
    # Blank lines inside a fence never end a block: no block ends inside code.
    for block in _blocks_of(whole[0]):
        assert block.count("```") % 2 == 0 or block.count("~~~") % 2 == 0, block
