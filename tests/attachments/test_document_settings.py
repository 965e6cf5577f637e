"""Document limits that cannot work stop the start with the fix (system check E021)."""

from __future__ import annotations

import pytest

from conversations.attachments.documents import DocumentRejected, read_document
from conversations.checks import check_document_limits
from tests.attachments import builders


def test_the_defaults_pass():
    assert check_document_limits(None) == []


@pytest.mark.parametrize(
    ("name", "value", "fix"),
    [
        ("CHAT_DOCUMENT_MAX_MEMORY", 64 * 1024 * 1024, "at least 268435456"),
        ("CHAT_DOCUMENT_MAX_SECONDS", 0.2, "at least 1"),
        ("CHAT_DOCUMENT_CONTEXT_SHARE", 0, "above 0 and at most 1"),
        ("CHAT_DOCUMENT_CONTEXT_SHARE", 1.5, "above 0 and at most 1"),
        ("CHAT_DOCUMENT_MAX_PAGES", 0, "at least 1"),
    ],
)
def test_a_limit_that_cannot_work_is_refused_with_the_fix(settings, name, value, fix):
    setattr(settings, name, value)
    errors = check_document_limits(None)
    assert [e.id for e in errors] == ["chatsite.E021"]
    assert errors[0].msg.startswith(name) and fix in errors[0].hint


def test_the_lowest_memory_the_check_allows_still_reads_a_pdf(settings):
    settings.CHAT_DOCUMENT_MAX_MEMORY = 256 * 1024 * 1024
    assert "Still readable." in read_document(builders.pdf(["Still readable."]), name="a.pdf").text
    assert "Hi." in read_document(builders.docx_file(["Hi."]), name="a.docx").text


def test_too_many_page_breaks_in_a_word_file_are_refused(settings):
    settings.CHAT_DOCUMENT_MAX_PAGES = 3
    data = builders.docx_file([f"Page {n}" for n in range(6)], page_break_before={1, 2, 3, 4, 5})
    with pytest.raises(DocumentRejected) as caught:
        read_document(data, name="long.docx")
    assert caught.value.user_message == (
        "This Word document has more than 3 pages, the most a document may have."
    )
