"""Replies rendered as Markdown: what it shows, and that nothing in a reply can run or load."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.models import Message
from conversations.rendering import pygments_css, render_markdown
from tests.support.factories import ConversationFactory

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    "span", "div", "button",
}  # fmt: skip
VOID = {"br", "hr"}
ALLOWED_ATTRS = {"href", "title", "rel", "class", "type", "start"}
LINK_SCHEMES = ("http://", "https://", "mailto:")


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs


class Checker(HTMLParser):
    """Parses rendered HTML; records every element and whether the tags balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))
        if tag not in VOID:
            self.problems.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")


def check(html: str) -> Checker:
    """Parse `html` and assert it is balanced and holds only allow-listed markup."""
    checker = Checker()
    checker.feed(html)
    checker.close()
    assert not checker.problems, (checker.problems, html)
    assert not checker.stack, (f"left open: {checker.stack}", html)
    for element in checker.elements:
        assert element.tag in ALLOWED_TAGS, (element.tag, html)
        for name, value in element.attrs.items():
            assert name in ALLOWED_ATTRS, (element.tag, name, html)
            assert not name.startswith("on"), (name, html)
            if name == "href":
                assert value and value.lower().startswith(LINK_SCHEMES), (value, html)
        if element.tag == "a":
            assert element.attrs.get("rel") == "noopener noreferrer nofollow", html
    return checker


def text_of(html: str) -> str:
    return "".join(check(html).text)


def tags(html: str, name: str) -> list[Element]:
    return [e for e in check(html).elements if e.tag == name]


# --- What Markdown shows ---------------------------------------------------------------


def test_it_renders_headings_emphasis_and_lists():
    html = render_markdown("# Title\n\n## Sub\n\n**bold** and *it*\n\n- one\n- two\n\n1. a\n2. b")
    assert "<h1>Title</h1>" in html
    assert "<h2>Sub</h2>" in html
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert [len(tags(html, t)) for t in ("ul", "ol", "li")] == [1, 1, 4]


def test_it_renders_tables_with_alignment_as_classes_not_styles():
    html = render_markdown("| Name | Qty |\n| :--- | ---: |\n| tea | 2 |\n| cake | 10 |")
    assert len(tags(html, "table")) == 1
    assert [e.attrs.get("class") for e in tags(html, "th")] == ["align-left", "align-right"]
    assert len(tags(html, "td")) == 4
    assert "style" not in html


def test_it_highlights_fenced_code_with_a_language_and_adds_a_copy_button():
    html = render_markdown("Look:\n\n```python\ndef greet(name):\n    return 'hi ' + name\n```")
    keywords = [e for e in tags(html, "span") if e.attrs.get("class") == "k"]
    assert keywords, html  # "def", "return" highlighted as keywords
    assert '<span class="code-lang">python</span>' in html
    [button] = tags(html, "button")
    assert button.attrs == {"type": "button", "class": "copy"}
    assert [e.attrs.get("class") for e in tags(html, "pre")] == ["highlight"]
    # The copied text is the code exactly, without the fence's closing newline.
    code = html.split("<code>")[1].split("</code>")[0]
    assert text_of(code) == "def greet(name):\n    return 'hi ' + name"


def test_code_without_a_known_language_is_escaped_plain_text():
    html = render_markdown("```nosuchlang\n<b>x</b> & y\n```\n\n    indented <i>\n")
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in html
    assert "&lt;i&gt;" in html
    assert len(tags(html, "button")) == 2
    assert not tags(html, "b") and not tags(html, "i")


def test_inline_code_is_escaped():
    html = render_markdown("Use `<script>alert(1)</script>` carefully")
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in html
    assert not tags(html, "script")


def test_links_get_rel_noopener_noreferrer_nofollow():
    html = render_markdown(
        "[docs](https://example.com/a?b=1&c=2) and <http://x.test> and [mail](mailto:me@example.com)"
    )
    links = tags(html, "a")
    assert [a.attrs["href"] for a in links] == [
        "https://example.com/a?b=1&c=2",
        "http://x.test",
        "mailto:me@example.com",
    ]
    assert all(a.attrs["rel"] == "noopener noreferrer nofollow" for a in links)


def test_text_shows_as_written():
    # Markup-like text and entities are shown, not interpreted.
    html = render_markdown("Hello world,\n\nthis is <b>not bold</b> &amp; a reply.")
    assert text_of(html) == "Hello world,\nthis is <b>not bold</b> &amp; a reply."
    # Single newlines are line breaks, as people write in a chat.
    assert len(tags(render_markdown("Day 1\nDay 2\nDay 3"), "br")) == 2


# --- Nothing in a reply runs or loads ----------------------------------------------------

XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1)  )",
    "[x](jav&#x61;script:alert(1))",
    "[x](jav\tascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "![x](data:image/svg+xml,<svg onload=alert(1)>)",
    '<svg onload="alert(1)"><circle r="9"/></svg>',
    "<math><mtext><script>alert(1)</script></mtext></math>",
    '<iframe src="https://evil.test/"></iframe>',
    "<style>body{display:none}</style>",
    '<div style="position:fixed;inset:0">cover</div>',
    "![tracker](http://evil.test/x.png)",
    '![x](http://evil.test/x.png "title" onerror=alert(1))',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    '```"><script>alert(1)</script>\ncode\n```',
    "```python onload=alert(1)\nx = 1\n```",
    '[a](https://ok.test "t\\"onmouseover=alert(1)")',
    '<a href="https://ok.test" onclick="alert(1)">x</a>',
    "<!-- comment --><![CDATA[x]]><?php x ?>",
    "<form action=https://evil.test><input name=p></form>",
    '<object data="x"></object><embed src="x"><link rel=stylesheet href=x><meta http-equiv=refresh>',
    "[x](/admin/)",
    "[x](//evil.test/)",
    "<base href=https://evil.test/>",
    "*<b onmouseover=alert(1)>*",
]


FORBIDDEN_TEXT = [
    "<script",
    "<iframe",
    "<svg",
    "<math",
    "<style",
    "<img",
    "<form",
    "<input",
    "<object",
    "<embed",
    "<link",
    "<meta",
    "<base",
    "<!--",
]


@pytest.mark.parametrize("payload", XSS)
def test_hostile_model_output_renders_inert(payload):
    html = render_markdown(f"Before\n\n{payload}\n\nAfter")
    checker = check(html)
    assert not [e for e in checker.elements if e.tag == "img"], html
    # check() parsed every element and attribute; this also catches a tag it might misread.
    # (Such words as text, escaped, are fine: "&lt;script" is not "<script".)
    lowered = html.lower()
    for bad in FORBIDDEN_TEXT:
        assert bad not in lowered, (bad, html)
    assert "Before" in html and "After" in html


def test_a_remote_image_is_a_link_to_follow_not_something_loaded():
    html = render_markdown("![a chart](http://evil.test/x.png)")
    [link] = tags(html, "a")
    assert link.attrs["href"] == "http://evil.test/x.png"
    assert text_of(html) == "Image: a chart"
    assert "<img" not in html


def test_a_hostile_fence_language_cannot_break_out_of_its_block():
    html = render_markdown('```"><script>alert(1)</script>\nprint(1)\n```')
    assert "code-lang" not in html  # not a language name: not shown at all
    assert text_of(html).endswith("print(1)")
    assert not tags(html, "script")


REPLY = """# Plan

Some **bold** text, a [link](https://example.com) and `code`.

| a | b |
|---|---|
| 1 | 2 |

```python
def f(x):
    return "<b>" + x  # comment
```

> quoted *text* with ~~strike~~

1. one
2. two
   - nested
"""


def test_every_prefix_of_a_reply_renders_well_formed():
    """While a reply streams, or when it is stopped, it may end anywhere."""
    for end in range(len(REPLY) + 1):
        check(render_markdown(REPLY[:end]))


def test_an_unclosed_fence_keeps_its_text_inside_the_block():
    html = render_markdown("Intro\n\n```js\nconst a = '</div></article><script>x</script>';")
    checker = check(html)
    [pre] = [e for e in checker.elements if e.tag == "pre"]
    assert pre.attrs["class"] == "highlight"
    assert "</article>" not in html and "&lt;/article&gt;" in html


def test_rendering_is_cached_and_returns_safe_strings():
    from django.utils.safestring import SafeString

    first = render_markdown("*same*")
    assert isinstance(first, SafeString)
    assert render_markdown("*same*") == first == "<p><em>same</em></p>"
    assert render_markdown("") == ""


def test_the_shipped_code_stylesheet_is_the_generated_one():
    shipped = Path(__file__).resolve().parent.parent / "static" / "chatsite" / "code.css"
    css = pygments_css()
    assert shipped.read_text(encoding="utf-8") == css, "regenerate static/chatsite/code.css"
    assert "[data-theme=dark] .highlight .k" in css
    assert "[data-theme=light] .highlight .k" in css
    assert "@media (prefers-color-scheme: dark)" in css


# --- In the page --------------------------------------------------------------------------

HOSTILE_REPLY = "\n\n".join([*XSS, "```python\nprint('ok')\n```"])


class PageScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self.in_script = True
        for name, value in attributes.items():
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.handlers.append((tag, name))
        if tag in ("iframe", "img", "svg", "math", "object", "embed", "base", "style"):
            self.handlers.append((tag, "element"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.inline.append(data)


@pytest.mark.django_db
def test_a_page_with_hostile_replies_runs_only_the_apps_own_scripts(owner, owner_client):
    conversation = ConversationFactory(owner=owner, title="<script>alert('title')</script>")
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=HOSTILE_REPLY
    )
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content=HOSTILE_REPLY,
        status=Message.Status.COMPLETE,
    )
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    parser = PageScripts()
    parser.feed(page)
    assert not parser.inline, parser.inline
    assert not parser.handlers, parser.handlers
    sources = [s.get("src") or "" for s in parser.scripts]
    assert sources and all(src.startswith("/static/") for src in sources), sources
    assert "/static/chatsite/keys.js" in sources and "/static/chatsite/theme.js" in sources
    # The reply is rendered (its code block has a Copy button); the question is plain text.
    assert page.count('class="copy"') == 3 == render_markdown(HOSTILE_REPLY).count('"copy"')
    assert 'class="msg-body md"' in page
    assert "```python" in page


@pytest.mark.django_db
def test_a_reply_still_streaming_shows_its_markdown_so_far(owner, owner_client):
    """A reloaded page mid-stream renders the partial text, as the stream's events do:
    the unclosed fence is a code block that ends inside the reply, not raw text or a page-
    swallowing <pre>."""
    conversation = ConversationFactory(owner=owner)
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="Code please"
    )
    partial = "Here:\n\n```py\nx = '<b>'"
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content=partial,
        status=Message.Status.STREAMING,
    )
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    article = page[page.index(f'id="m-{reply.pk}"') :]
    # The finished block ("Here:") is rendered once; the open one, the fence, as the
    # stream's `tail` event renders it: a code block that ends inside the reply.
    blocks = article[article.index('<div class="md-blocks"') :]
    blocks = blocks[blocks.index(">") + 1 :]
    assert blocks.startswith(render_markdown("Here:\n\n") + '\n</div><div class="md-tail"')
    tail = blocks[blocks.index('<div class="md-tail"') :]
    tail = tail[tail.index(">") + 1 :]
    assert tail.startswith(render_markdown("```py\nx = '<b>'") + "</div></div>"), tail[:300]
    assert "<pre" in tail[: tail.index("</div></div>")] and "&lt;b&gt;" in tail
    assert "<b>" not in article[: article.index("</article>")]
    assert "```" not in tail[: tail.index("</article>")]

    reply.status = Message.Status.STOPPED
    reply.save()
    page = owner_client.get(conversation.get_absolute_url()).content.decode()
    assert 'class="copy"' in page and "<pre" in page and "&lt;b&gt;" in page
    assert 'aria-live="polite" aria-busy="false"' in page


@pytest.mark.django_db
def test_the_chat_page_has_the_shortcuts_dialog_theme_menu_and_announcer(owner_client):
    page = owner_client.get(reverse("chat")).content.decode()
    assert '<dialog id="shortcuts"' in page
    assert 'id="theme-select"' in page
    assert 'id="announcer"' in page and 'role="status"' in page
    assert 'aria-controls="sidebar-list"' in page and 'aria-expanded="false"' in page
    assert 'href="#sidebar-list"' in page  # the menu without JavaScript
