"""Assistant replies as HTML: Markdown, highlighted code, then an allow-list sanitizer.

Three layers, each enough on its own against markup in a model's output:

1. markdown-it parses with ``html=False``: raw HTML in the text is text, never markup.
2. Our renderer rules emit only a few known tags: fenced code is highlighted by Pygments
   into ``<span class>``; images become a plain link (nothing on the page may load a remote
   resource); table alignment becomes a class (no ``style`` attributes).
3. nh3 (ammonia) re-parses the result and keeps only allow-listed tags, attributes, classes
   and URL schemes (http, https, mailto; relative URLs denied), and gives every link
   ``rel="noopener noreferrer nofollow"``.

The sanitizer's HTML5 parser also closes whatever a partial reply leaves open, so the HTML
of any prefix of a reply is well-formed and stays inside its container.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
# A fence's info string names the language; anything else in it is not shown or used.
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_ALIGN = {"text-align:left": "left", "text-align:center": "center", "text-align:right": "right"}
# Long code is shown unhighlighted: Pygments' cost grows with it, and one page shows many.
MAX_HIGHLIGHT_CHARS = 100_000

_TOKEN_CLASSES = {cls for cls in STANDARD_TYPES.values() if cls}

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr",
    "th", "td", "span", "div", "button",
}  # fmt: skip

_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    # Dropped with their content, not just unwrapped (html=False means they never get here).
    clean_content_tags={"script", "style", "iframe", "object", "embed", "svg", "math"},
    attributes={"a": {"href", "title"}, "ol": {"start"}, "button": {"type"}},
    allowed_classes={
        "span": _TOKEN_CLASSES | {"code-lang", "img-alt"},
        "div": {"code-block", "code-head"},
        "pre": {"highlight"},
        "button": {"copy"},
        "th": {"align-left", "align-center", "align-right"},
        "td": {"align-left", "align-center", "align-right"},
    },
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def _fence(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    words = token.info.strip().split()
    name = words[0] if words and _LANGUAGE.fullmatch(words[0]) else ""
    # The fence's last newline ends the block; it is not part of the code one copies.
    code = token.content.removesuffix("\n")
    body = ""
    if name and len(code) <= MAX_HIGHLIGHT_CHARS:
        try:
            lexer = get_lexer_by_name(name.lower(), stripnl=False, ensurenl=False)
        except ClassNotFound:
            pass
        else:
            body = highlight(code, lexer, HtmlFormatter(nowrap=True))
            # Pygments ends the last line with a newline the code did not have.
            if not code.endswith("\n"):
                body = body.removesuffix("\n")
    if not body:
        body = escape(code)
    label = f'<span class="code-lang">{escape(name)}</span>' if name else "<span></span>"
    return (
        '<div class="code-block"><div class="code-head">'
        f'{label}<button type="button" class="copy">Copy</button></div>'
        f'<pre class="highlight"><code>{body}</code></pre></div>\n'
    )


def _code_block(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # An indented code block is a fence without a language.
    tokens[idx].info = ""
    return _fence(self, tokens, idx, options, env)


def _image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """No <img>: a link the reader may follow, so the page itself never loads it."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    src = str(token.attrGet("src") or "")
    text = f'<span class="img-alt">Image: {escape(alt)}</span>'
    return f'<a href="{escape(src)}">{text}</a>' if src else text


def _cell_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    align = _ALIGN.get(str(token.attrGet("style") or ""))
    return f'<{token.tag} class="align-{align}">' if align else f"<{token.tag}>"


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    # Text shows as written: "&amp;" in a reply is shown as "&amp;", not decoded to "&".
    md.disable("entity")
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("image", _image)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


_md = _parser()


def render_markdown_uncached(text: str) -> str:
    """render_markdown() without its cache: for the many passing prefixes of a streaming reply."""
    return _cleaner.clean(_md.render(text)).strip()


_render = functools.lru_cache(maxsize=1024)(render_markdown_uncached)


def render_markdown(text: str) -> SafeString:
    """A reply's Markdown as sanitized HTML, safe to put inside any block element."""
    return mark_safe(_render(text))  # noqa: S308 - nh3's allow-list output


# A line that opens or closes fenced code: up to 3 spaces, then 3+ backticks or tildes.
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class BlockSplitter:
    """Where a growing reply's finished Markdown blocks end, found as the text arrives.

    A block is finished at a blank line outside fenced code, or at the line that closes a
    fence. What comes before is rendered once (`feed` returns it); only the open block
    after it changes as text arrives. Each call reads only the new complete lines, so the
    cost of a piece does not grow with the reply. Defined on prefixes: the same text gives
    the same split however it was fed.
    """

    def __init__(self, text: str = "") -> None:
        self.open = ""
        self._scanned = 0  # how much of `open` is complete lines already read
        self._fence = ""
        if text:
            self.feed(text)

    def feed(self, piece: str) -> str:
        """Add text; return the part of the open block that is now finished ("" if none)."""
        self.open += piece
        end = 0
        while True:
            newline = self.open.find("\n", self._scanned)
            if newline < 0:
                break
            line = self.open[self._scanned : newline]
            self._scanned = newline + 1
            fence = _FENCE.match(line)
            if self._fence:
                marker = fence.group(1) if fence else ""
                if (
                    marker
                    and marker[0] == self._fence[0]
                    and len(marker) >= len(self._fence)
                    and not line.strip()[len(marker) :]
                ):
                    self._fence = ""
                    end = self._scanned
            elif fence:
                self._fence = fence.group(1)
            elif not line.strip():
                end = self._scanned
        finished, self.open = self.open[:end], self.open[end:]
        self._scanned -= end
        return finished


def split_blocks(text: str) -> tuple[str, str]:
    """(finished blocks, open block) of a reply's text so far (see BlockSplitter)."""
    splitter = BlockSplitter()
    finished = splitter.feed(text)
    return finished, splitter.open


def pygments_css() -> str:
    """The stylesheet for highlighted code (static/chatsite/code.css), light and dark.

    Dark applies with ``<html data-theme="dark">``, or with no data-theme when the system
    prefers dark; light otherwise.
    """

    def rules(style: str, prefixes: list[str]) -> str:
        formatter: Any = HtmlFormatter(style=style)
        lines = formatter.get_style_defs(prefixes).splitlines()
        return "\n".join(line for line in lines if line.lstrip().startswith(tuple(prefixes)))

    light = rules(LIGHT_STYLE, ["[data-theme=light] .highlight"])
    dark = rules(DARK_STYLE, ["[data-theme=dark] .highlight"])
    system_light = rules(LIGHT_STYLE, [":root:not([data-theme]) .highlight"])
    system_dark = rules(DARK_STYLE, [":root:not([data-theme]) .highlight"])
    return (
        "/* Generated by conversations.rendering.pygments_css(): do not edit by hand.\n"
        "   Regenerate: python -c 'from conversations.rendering import pygments_css as c;"
        ' print(c(), end="")\' > static/chatsite/code.css */\n'
        f"{light}\n{dark}\n"
        f"@media (prefers-color-scheme: light) {{\n{system_light}\n}}\n"
        f"@media (prefers-color-scheme: dark) {{\n{system_dark}\n}}\n"
    )
