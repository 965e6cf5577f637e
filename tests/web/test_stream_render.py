"""A streaming reply's `render` events: the Markdown so far as sanitized, well-formed HTML."""

from __future__ import annotations

import html
import itertools
import re
from html.parser import HTMLParser

import pytest

from conversations.models import Message
from conversations.rendering import render_markdown
from tests.support.factories import ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send
from tests.support.sse import read_stream

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


def renders_with_text(received: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Each `render` event with the reply's text as the `delta` events had sent it by then."""
    text, out = "", []
    for event, data, at in received:
        if event == "delta":
            text += html.unescape(data)
        elif event == "render":
            out.append((text, data, at))
    return out


def test_render_events_show_an_unclosed_fence_as_a_code_block_that_ends_in_the_reply(
    asgi_server, owner_client, fake_openai
):
    fake_openai.script(Reply(tokens=FENCED, delay=0.2))
    send(owner_client, "Some code")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    full = "".join(FENCED)
    renders = renders_with_text(received)
    # Every render is the whole text so far (one SSE event, however many lines it has).
    for text, data, _ in renders:
        assert data == render_markdown(text), (text, data)
        tags = balanced_tags(data)
        assert set(tags) <= {"p", "div", "span", "button", "pre", "code", "strong"}, tags
        assert "<script" not in data and "<b>" not in data
    mid_fence = [data for text, data, _ in renders if text.count("```") == 1]
    assert len(mid_fence) >= 2, renders
    for data in mid_fence:
        # The open fence is a code block, and the reply's HTML ends right after it.
        assert '<pre class="highlight"><code>' in data
        assert data.endswith("</code></pre></div>"), data
    # Markup in the code is shown as code.
    shown = [html.unescape(re.sub(r"<[^>]*>", "", data)) for data in mid_fence]
    assert any("<script>alert(1)</script>" in text for text in shown), shown
    # The end: the whole reply rendered, right before `done`.
    assert [event for event, _, _ in received[-2:]] == ["render", "done"]
    assert renders[-1][1] == render_markdown(full)
    assert renders[-1][1].endswith("<p>After the <strong>code</strong>.</p>")
    assert finished(reply).content == full


def test_render_events_are_throttled_and_only_for_new_text(asgi_server, owner_client, fake_openai):
    tokens = [f"w{i} " for i in range(60)]
    fake_openai.script(Reply(tokens=tokens, delay=0.03))
    send(owner_client, "Quickly")
    reply = last_reply()
    received = read_stream(asgi_server, owner_client, reply)
    deltas = [data for event, data, _ in received if event == "delta"]
    renders = renders_with_text(received)
    streaming = renders[:-1]  # the last one is the one before `done`
    # About 1.8 s of tokens and a render at most every 0.15 s: far fewer renders than deltas.
    assert len(streaming) >= 2, renders
    span = streaming[-1][2] - streaming[0][2]
    assert len(streaming) <= span / 0.15 + 2, [(len(t), at) for t, _, at in renders]
    assert len(deltas) >= 2 * len(streaming), (len(deltas), len(streaming))
    # Spaced out (0.15 s when sent; arrival may jitter), unlike the deltas (0.03 s).
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(streaming)]
    assert all(gap > 0.07 for gap in gaps), gaps
    # Never the same text twice while streaming: unchanged text is not rendered again.
    texts = [text for text, _, _ in streaming]
    assert len(set(texts)) == len(texts) and "" not in texts
    assert renders[-1][0] == "".join(tokens)
    assert renders[-1][1] == render_markdown("".join(tokens))
    finished(reply)


def test_a_reply_followed_in_the_database_is_rendered_too(
    asgi_server, owner_client, owner, settings
):
    """No live generator in this process: the stream follows the database, and renders it."""
    settings.CHAT_STALE_AFTER = 0.6
    reply = ReplyFactory(
        conversation__owner=owner, content="Half:\n```js\nlet a", status=Message.Status.STREAMING
    )
    received = read_stream(asgi_server, owner_client, reply)
    renders = renders_with_text(received)
    assert renders and all(data == render_markdown(text) for text, data, _ in renders)
    assert renders[0][0] == "Half:\n```js\nlet a"
    assert renders[0][1].endswith("</code></pre></div>") and "<pre" in renders[0][1]
    assert [event for event, _, _ in received[-2:]] == ["render", "done"]
    assert 'data-status="interrupted"' in received[-1][1]
