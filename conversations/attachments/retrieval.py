"""What the model is given of a conversation's documents for one question.

The whole text of each when all fit the budget; otherwise the passages most relevant to
the question, found with the full-text index over AttachmentChunk (SQLite FTS5,
PostgreSQL GIN: no extra service), best first until the budget is spent, then shown in
document order, each labelled with its document and pages. With CHAT_DOCUMENT_RETRIEVAL
off: the documents' start, cut at the budget with a note saying so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from conversations.models import Attachment, AttachmentChunk

INTRO = (
    "The user attached these documents to the conversation. Use them to answer, and say "
    "which document (and page) you rely on."
)
RETRIEVED_NOTE = (
    "The documents are too long to include whole: only the passages most relevant to the "
    "question are included."
)
TRUNCATED_NOTE = (
    "[The rest of the documents was left out to fit the model's context window; "
    "only their start is included.]"
)
# A NUL ends FTS5's quoted string early and psycopg refuses it (as history.search, which
# sits above this package and so is not imported).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# No tokenizer averages more characters a token than this (English: about 4).
MAX_CHARS_PER_TOKEN = 32
# Candidate passages asked of the index; the budget takes what fits of them.
MAX_CANDIDATES = 200
MAX_QUESTION_TERMS = 32
# Words too common to tell passages apart (the index has no stop words of its own; the
# PostgreSQL ranking counts them like any other word).
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them then there
    these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours document documents page
    pages tell please explain say says said""".split()  # noqa: SIM905 - a list of 150 words is unreadable
)


@dataclass(frozen=True)
class Source:
    attachment_id: int
    name: str
    passages: str  # "whole", "pp. 12-13, 40", "passages 3, 7", "start only, cut to fit"

    def as_json(self) -> dict[str, Any]:
        return {"attachment": self.attachment_id, "name": self.name, "passages": self.passages}


@dataclass(frozen=True)
class DocumentContext:
    text: str  # what goes into the model's context for these documents ("" for none)
    sources: list[Source]  # named in the reply's footer


def document_context(
    documents: Sequence[Attachment],
    question: str,
    *,
    budget_tokens: int,
    count: Callable[[str], int],
) -> DocumentContext:
    """The documents' text for `question` within `budget_tokens` (counted with `count`).

    `documents` in conversation order, each the caller's own (they are not checked here).
    """
    documents = [d for d in documents if d.kind == Attachment.Kind.DOCUMENT and _length(d) > 0]
    if not documents or budget_tokens <= 0:
        return DocumentContext("", [])
    # Far too long to fit whatever the tokenizer: no need to read (or count) the texts.
    if sum(_length(d) for d in documents) <= budget_tokens * MAX_CHARS_PER_TOKEN:
        whole = "\n\n".join([INTRO, *(_block(d, d.text) for d in documents)])
        if count(whole) <= budget_tokens:
            return DocumentContext(whole, [Source(d.pk, d.name, "whole") for d in documents])
    if not settings.CHAT_DOCUMENT_RETRIEVAL:
        return _cut(documents, budget_tokens, count)
    return _retrieved(documents, question, budget_tokens, count)


def _length(document: Attachment) -> int:
    """Characters of the document's text; from `text_chars` when the caller annotated it
    (a `Length("text")`, with the text itself deferred), so the text is read only if needed.
    """
    chars = getattr(document, "text_chars", None)
    return int(chars) if chars is not None else len(document.text.strip())


def _block(document: Attachment, text: str, label: str = "") -> str:
    name = document.name.replace('"', "'")
    pages = f' pages="{document.pages}"' if document.pages else ""
    what = f" {label}" if label else ""
    return f'<document name="{name}"{pages}{what}>\n{text.strip()}\n</document>'


def _retrieved(
    documents: list[Attachment], question: str, budget: int, count: Callable[[str], int]
) -> DocumentContext:
    order = {d.pk: position for position, d in enumerate(documents)}
    ranked = relevant_chunks(list(order), question, limit=MAX_CANDIDATES)
    if not ranked:
        # Nothing in the question matches: each document's first passages, in order.
        ranked = list(
            AttachmentChunk.objects.filter(
                attachment_id__in=list(order), index__lt=max(1, MAX_CANDIDATES // len(order))
            )
        )
        # Each document's first passage, then each one's second…: all get their start.
        ranked.sort(key=lambda c: (c.index, order[c.attachment_id]))
    spent = count("\n\n".join([INTRO, RETRIEVED_NOTE])) + sum(
        count(_block(d, "")) for d in documents
    )
    chosen: list[AttachmentChunk] = []
    for chunk in ranked:
        cost = count(_passage(chunk))
        if spent + cost > budget:
            continue
        chosen.append(chunk)
        spent += cost
    chosen.sort(key=lambda c: (order[c.attachment_id], c.index))
    blocks, sources = [], []
    for document in documents:
        mine = [c for c in chosen if c.attachment_id == document.pk]
        if not mine:
            continue
        blocks.append(_block(document, "\n\n".join(_passage(c) for c in mine), "excerpts"))
        sources.append(Source(document.pk, document.name, _labels(mine)))
    if not blocks:
        return DocumentContext("", [])
    return DocumentContext("\n\n".join([INTRO, RETRIEVED_NOTE, *blocks]), sources)


def _passage(chunk: AttachmentChunk) -> str:
    return f"[{_where(chunk)}]\n{chunk.text}"


def _where(chunk: AttachmentChunk) -> str:
    if chunk.page_from is None:
        return f"passage {chunk.index + 1}"
    if chunk.page_to is None or chunk.page_to == chunk.page_from:
        return f"page {chunk.page_from}"
    return f"pages {chunk.page_from}–{chunk.page_to}"


def _labels(chunks: list[AttachmentChunk]) -> str:
    """ "p. 4", "pp. 4-5, 9" (neighbouring pages joined) or "passages 2, 7"."""
    if chunks[0].page_from is None:
        numbers = ", ".join(str(c.index + 1) for c in chunks)
        return f"passage{'s' if len(chunks) > 1 else ''} {numbers}"
    spans: list[list[int]] = []
    for chunk in chunks:
        first, last = chunk.page_from or 0, chunk.page_to or chunk.page_from or 0
        if spans and first <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], last)
        else:
            spans.append([first, last])
    text = ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
    many = len(spans) > 1 or spans[0][0] != spans[0][1]
    return f"{'pp.' if many else 'p.'} {text}"


def _cut(documents: list[Attachment], budget: int, count: Callable[[str], int]) -> DocumentContext:
    """The documents in order, as much of their start as fits, with a note saying so."""
    full = "\n\n".join(_block(d, d.text) for d in documents)

    def text(keep: int) -> str:
        return "\n\n".join([INTRO, full[:keep], TRUNCATED_NOTE])

    low, high = 0, len(full)
    while low < high:
        middle = (low + high + 1) // 2
        if count(text(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return DocumentContext("", [])
    sources, position = [], 0
    for document in documents:
        length = len(_block(document, document.text))
        if position >= low:
            break
        shown = "whole" if position + length <= low else "start only, cut to fit"
        sources.append(Source(document.pk, document.name, shown))
        position += length + 2
    return DocumentContext(text(low), sources)


def question_terms(question: str) -> list[str]:
    """The words of `question` worth searching for: lower-cased, no stop words, no repeats."""
    words = re.findall(r"\w+", _CONTROL.sub(" ", question).lower())
    terms = [w for w in dict.fromkeys(words) if w not in STOP_WORDS and len(w) > 1]
    return terms[:MAX_QUESTION_TERMS]


def relevant_chunks(
    attachment_ids: list[int], question: str, *, limit: int
) -> list[AttachmentChunk]:
    """Passages of these attachments matching any word of `question`, best first.

    Any word may match (a question's words are not all in the answer), each also as a
    prefix ("overheat" finds "overheated"); ranked by BM25 on SQLite, ts_rank on
    PostgreSQL. Every word is quoted: nothing in a question is operator syntax.
    """
    terms = question_terms(question)
    if not terms or not attachment_ids:
        return []
    if connection.vendor == "postgresql":
        return _relevant_postgresql(attachment_ids, terms, limit)
    if connection.vendor == "sqlite":
        return _relevant_sqlite(attachment_ids, terms, limit)
    return []


def _relevant_sqlite(
    attachment_ids: list[int], terms: list[str], limit: int
) -> list[AttachmentChunk]:
    match = " OR ".join(
        '"' + t.replace('"', '""') + '"' + ("*" if len(t) > 2 else "") for t in terms
    )
    return list(
        AttachmentChunk.objects.raw(
            'SELECT c.id, c.attachment_id, c."index", c.page_from, c.page_to, c.text'
            " FROM conversations_attachmentchunk_fts"
            " JOIN conversations_attachmentchunk c"
            " ON c.id = conversations_attachmentchunk_fts.rowid"
            " WHERE conversations_attachmentchunk_fts MATCH %s"
            " AND c.attachment_id IN (SELECT value FROM json_each(%s))"
            ' ORDER BY bm25(conversations_attachmentchunk_fts), c.attachment_id, c."index"'
            " LIMIT %s",
            [match, json.dumps(attachment_ids), limit],
        )
    )


def _relevant_postgresql(
    attachment_ids: list[int], terms: list[str], limit: int
) -> list[AttachmentChunk]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    # As history.search.postgresql_tsquery, but any word: only \w characters, each quoted.
    words = [w for term in terms for w in re.findall(r"\w+", term)]
    if not words:
        return []
    raw = " | ".join(f"'{w}'" + (":*" if len(w) > 2 else "") for w in words)
    ts_query = SearchQuery(raw, config="simple", search_type="raw")
    vector = SearchVector("text", config="simple")
    return list(
        AttachmentChunk.objects.annotate(_fts=vector)
        .filter(attachment_id__in=attachment_ids, _fts=ts_query)
        # Normalisation 1: divided by 1 + log(length), so long passages do not win by size.
        .annotate(_rank=SearchRank(vector, ts_query, normalization=1))
        .only("id", "attachment_id", "index", "page_from", "page_to", "text")
        .order_by("-_rank", "attachment_id", "index")[:limit]
    )
