"""Passages and retrieval: the whole text when it fits, else the passages the question is
about (full-text index), labelled with their pages; the reply records and names them."""

from __future__ import annotations

import functools
import re

import pytest

from conversations.attachments import retrieval
from conversations.attachments.chunking import MAX_CHARS, passages
from conversations.attachments.documents import read_document
from conversations.generation import context as gen_context
from conversations.llm import registry as llm
from conversations.llm.context import text_of
from conversations.models import Attachment, AttachmentChunk, Message
from tests.attachments import builders
from tests.attachments.support import attach
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory
from tests.support.fake_openai import Reply
from tests.support.helpers import finished, last_reply, send

FACT = "The aurora turbine overheated at 4,200 RPM during the night shift of 3 March."
QUESTION = "At what speed did the aurora turbine overheat?"


def _filler(number: int) -> str:
    lines = [
        f"Section {number}. The committee reviewed routine maintenance logs for hall {number}.",
        "Staff rotas were confirmed and the cafeteria menu was approved without changes.",
        "Fire exits were checked; the signage in corridor B was replaced with new panels.",
        "Minutes were circulated to all departments and archived in the records office.",
        "Parking allocations for visitors remain unchanged until the next quarterly review.",
    ]
    if number == 40:
        lines.append("The backup turbine in hall 40 was inspected and found in order.")
    if number == 217:
        lines.append(FACT)
    return "\n".join(lines)


@functools.cache
def manual_pdf() -> bytes:
    """A 300-page PDF: routine pages, one about a turbine, one (217) with the answer."""
    return builders.pdf([_filler(n) for n in range(1, 301)])


def count(text: str) -> int:
    return llm.count_tokens([{"role": "system", "content": text}], model="fake-model")


@pytest.fixture
def conversation(owner):
    return ConversationFactory(owner=owner)


@pytest.fixture
def manual(conversation):
    question = MessageFactory(conversation=conversation, content="Here is the manual.")
    ReplyFactory(conversation=conversation, content="Thanks, I have read it.")
    return attach(question, manual_pdf(), "manual.pdf")


def test_passages_stay_within_size_and_page_and_cover_the_text():
    pages = ["Alpha one. " * 30, "Beta two.\n\n" + "Gamma three is long. " * 200, "Delta."]
    text = "\n\n".join(pages)
    starts = [0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4]
    spans = list(passages(text, starts))
    assert all(0 < end - start <= MAX_CHARS for start, end in spans)
    assert not any(start < s < end for start, end in spans for s in starts)
    words = " ".join(text[a:b] for a, b in spans).split()
    assert words == text.split()


@pytest.mark.django_db
def test_save_chunks_writes_passages_with_their_pages_and_the_text(manual):
    manual.refresh_from_db()
    assert manual.pages == 300 and FACT in manual.text
    chunks = list(manual.chunks.all())
    assert [c.index for c in chunks] == list(range(len(chunks)))
    fact = [c for c in chunks if "aurora turbine" in c.text]
    assert len(fact) == 1 and (fact[0].page_from, fact[0].page_to) == (217, 217)
    assert {c.page_from for c in chunks} == set(range(1, 301))


@pytest.mark.django_db
def test_retrieval_picks_the_page_the_question_is_about_from_300_pages(manual):
    # Room for one page's passage (about 150 tokens) and the labels, not for two.
    budget = count(retrieval.INTRO + retrieval.RETRIEVED_NOTE) + count(_filler(217)) + 60
    found = retrieval.document_context([manual], QUESTION, budget_tokens=budget, count=count)
    assert "[page 217]\n" in found.text and FACT in found.text
    # Best first until the budget: the page naming only "turbine" did not fit with it.
    assert "hall 40" not in found.text
    assert "cafeteria" in found.text  # the page's own text, not just the fact
    assert found.text.count("[page ") == 1
    assert [s.as_json() for s in found.sources] == [
        {"attachment": manual.pk, "name": "manual.pdf", "passages": "p. 217"}
    ]
    assert count(found.text) <= budget


@pytest.mark.django_db
def test_retrieved_passages_come_in_document_order(manual):
    found = retrieval.document_context([manual], QUESTION, budget_tokens=2000, count=count)
    assert found.text.index("[page 40]") < found.text.index("[page 217]")
    assert found.sources[0].passages == "pp. 40, 217"
    assert '<document name="manual.pdf" pages="300" excerpts>' in found.text


@pytest.mark.django_db
def test_the_whole_text_when_it_fits(conversation):
    question = MessageFactory(conversation=conversation, content="q")
    notes = attach(question, b"# Notes\n\nThe door code is 7311.", "notes.md")
    table = attach(question, b"name,age\nAda,36\n", "people.csv")
    found = retrieval.document_context(
        [notes, table], "what is the door code", budget_tokens=1000, count=count
    )
    assert "The door code is 7311." in found.text and "Ada,36" in found.text
    assert found.text.index("notes.md") < found.text.index("people.csv")
    assert [(s.name, s.passages) for s in found.sources] == [
        ("notes.md", "whole"),
        ("people.csv", "whole"),
    ]


@pytest.mark.django_db
def test_without_retrieval_the_start_is_sent_cut_with_a_note(manual, settings):
    settings.CHAT_DOCUMENT_RETRIEVAL = False
    found = retrieval.document_context([manual], QUESTION, budget_tokens=1500, count=count)
    assert found.text.endswith(retrieval.TRUNCATED_NOTE)
    assert "Section 1." in found.text and FACT not in found.text
    assert count(found.text) <= 1500
    assert [(s.name, s.passages) for s in found.sources] == [
        ("manual.pdf", "start only, cut to fit")
    ]


@pytest.mark.django_db
def test_a_question_matching_nothing_gets_the_first_passages(manual):
    found = retrieval.document_context([manual], "zebra xylophone", budget_tokens=600, count=count)
    assert "[page 1]" in found.text and FACT not in found.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "question",
    ['"aurora" OR NEAR(turbine', "aurora* -turbine :col ^x", "\x00aurora\x00", "AND OR NOT", ""],
)
def test_question_syntax_never_reaches_the_index(manual, question):
    found = retrieval.document_context([manual], question, budget_tokens=600, count=count)
    assert found.text  # an answer, never an FTS5 syntax error


@pytest.mark.django_db
def test_only_the_given_documents_are_searched(manual, stranger):
    other = ConversationFactory(owner=stranger)
    theirs = attach(MessageFactory(conversation=other), FACT.encode(), "theirs.txt")
    chunks = retrieval.relevant_chunks([manual.pk], QUESTION, limit=50)
    assert chunks and all(c.attachment_id == manual.pk for c in chunks)
    assert retrieval.relevant_chunks([theirs.pk], QUESTION, limit=50)[0].attachment_id == theirs.pk


@pytest.mark.django_db
def test_deleted_documents_leave_the_index(manual):
    manual.delete()
    assert not AttachmentChunk.objects.exists()
    assert retrieval.relevant_chunks([manual.pk], QUESTION, limit=50) == []


@pytest.mark.django_db
def test_the_questions_own_document_is_in_its_context(conversation):
    question = MessageFactory(conversation=conversation, content="What is the door code?")
    attach(question, b"The door code is 7311.", "code.txt")
    reply = ReplyFactory(
        conversation=conversation,
        parent=question,
        status="pending",
        system_prompt="You are a test assistant.",
    )
    context = gen_context.reply_context(reply=reply)
    system = context.messages[0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a test assistant.\n\n")
    assert "The door code is 7311." in system["content"]
    assert context.messages[-1] == {"role": "user", "content": "What is the door code?"}
    assert context.sources == [
        {"attachment": Attachment.objects.get().pk, "name": "code.txt", "passages": "whole"}
    ]


@pytest.mark.django_db
def test_another_branchs_documents_are_not_used(conversation):
    first = MessageFactory(conversation=conversation, content="Version one")
    attach(first, b"Only in version one.", "one.txt")
    # An edited question: a sibling of the first, with a reply of its own.
    second = MessageFactory(conversation=conversation, parent=None, content="Version two")
    reply = ReplyFactory(conversation=conversation, parent=second, status="pending")
    context = gen_context.reply_context(reply=reply)
    assert "Only in version one." not in str(context.messages)
    assert context.sources == []


@pytest.mark.django_db(transaction=True)
def test_the_model_gets_the_passage_and_the_footer_names_it(
    owner_client, conversation, manual, fake_openai
):
    fake_openai.script(Reply(tokens=["At ", "4,200 RPM", " (page 217)."]))
    send(owner_client, QUESTION, conversation)
    reply = finished(last_reply())
    assert reply.status == Message.Status.COMPLETE

    sent = fake_openai.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert FACT in sent[0]["content"] and "[page 217]" in sent[0]["content"]
    assert "Section 1." not in sent[0]["content"]  # not the whole manual
    assert sent[-1] == {"role": "user", "content": QUESTION}
    assert llm.count_tokens(sent, model="fake-model") <= 8192 - 1024
    assert reply.sources == [
        {"attachment": manual.pk, "name": "manual.pdf", "passages": "pp. 40, 217"}
    ]

    html = owner_client.get(conversation.get_absolute_url()).content.decode()
    footer = html[html.index(f'id="m-{reply.pk}"') :]
    footer = footer[footer.index('<footer class="msg-foot"') : footer.index("</footer>")]
    assert "Sources: " in footer and "manual.pdf (pp. 40, 217)" in footer


@pytest.mark.django_db(transaction=True)
def test_a_later_turn_still_uses_the_document(owner_client, conversation, manual, fake_openai):
    fake_openai.script(Reply(tokens=["First."]), Reply(tokens=["Second."]))
    send(owner_client, "Tell me about hall 40.", conversation)
    finished(last_reply())
    send(owner_client, QUESTION, conversation)
    reply = finished(last_reply())
    assert FACT in fake_openai.requests[-1]["messages"][0]["content"]
    assert "217" in reply.sources[0]["passages"]


def test_read_document_and_passages_agree_on_pages():
    document = read_document(builders.pdf(["One.", "Two.", "Three."]), name="p.pdf")
    spans = list(passages(document.text, document.page_starts))
    assert [document.text[a:b] for a, b in spans] == ["One.", "Two.", "Three."]


@pytest.mark.django_db
def test_the_migrations_leave_every_full_text_index_in_place():
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # Rebuilding a table (adding a column) drops its triggers: each must be back.
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            names = {row[0] for row in cursor.fetchall()}
            for table in ("message", "conversation", "attachmentchunk"):
                assert {f"conversations_{table}_fts_{n}" for n in ("ai", "ad", "au")} <= names
        else:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%%_fts'")
            names = {row[0] for row in cursor.fetchall()}
            assert {"msg_content_fts", "conv_title_fts", "chunk_text_fts"} <= names


@pytest.mark.django_db
def test_with_nothing_matching_every_document_gets_its_start(conversation):
    question = MessageFactory(conversation=conversation, content="q")
    first = attach(question, ("Alpha paragraph.\n\n" * 400).encode(), "first.txt")
    second = attach(question, ("Omega paragraph.\n\n" * 400).encode(), "second.txt")
    # Room for about two passages of ~400 tokens each: one of each document.
    found = retrieval.document_context([first, second], "zebra", budget_tokens=1000, count=count)
    assert "Alpha paragraph." in found.text and "Omega paragraph." in found.text
    assert [s.name for s in found.sources] == ["first.txt", "second.txt"]
    # Each document's first passage (a short last one may fill what room is left).
    assert all(re.fullmatch(r"passages? 1(, \d+)*", s.passages) for s in found.sources)


def test_the_question_is_read_from_content_parts_too():
    parts = [
        {"type": "text", "text": "What is on"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "page 3?"},
    ]
    assert text_of({"role": "user", "content": parts}) == "What is on page 3?"
    assert text_of({"role": "user", "content": "plain"}) == "plain"


@pytest.mark.django_db
def test_texts_far_too_long_to_fit_are_not_read(manual, django_assert_num_queries):
    from django.db.models.functions import Length

    row = Attachment.objects.defer("text").annotate(text_chars=Length("text")).get(pk=manual.pk)
    # One query: the index. Reading the 300 pages' text would be a second.
    with django_assert_num_queries(1):
        found = retrieval.document_context([row], QUESTION, budget_tokens=300, count=count)
    assert "[page 217]" in found.text
