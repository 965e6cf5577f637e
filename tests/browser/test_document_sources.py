"""A document attached earlier in a conversation, in a real browser: the reply to a
question about one page of a 300-page PDF streams in and its footer names that page.

(Attaching by the composer is the upload's own browser test; here the document is attached
as the upload stores it.)
"""

from __future__ import annotations

import pytest

from tests.browser.support import composer, expect, expect_complete, last_reply, log_in, orm
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _conversation_with_the_manual() -> int:
    from django.contrib.auth import get_user_model

    from tests.attachments.support import attach
    from tests.attachments.test_retrieval import manual_pdf
    from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

    # The logged-in user as is (a factory would set the password again: a new session hash).
    conversation = ConversationFactory(owner=get_user_model().objects.get(username="alice"))
    question = MessageFactory(conversation=conversation, content="Here is the manual.")
    ReplyFactory(conversation=conversation, content="Thanks, I have read it.")
    attach(question, manual_pdf(), "manual.pdf")
    return conversation.pk


def test_the_reply_footer_names_the_page_the_answer_came_from(
    page, fake_openai, settings, tmp_path
):
    from tests.attachments.test_retrieval import FACT, QUESTION

    settings.MEDIA_ROOT = tmp_path / "media"
    log_in(page)
    conversation_id = orm(_conversation_with_the_manual)
    page.goto(f"/c/{conversation_id}/")
    fake_openai.script(Reply(tokens=["It ran at ", "4,200 RPM."]))
    composer(page).fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    expect_complete(page, "It ran at 4,200 RPM.")
    expect(last_reply(page).locator("footer .msg-sources")).to_have_text(
        " · Sources: manual.pdf (pp. 40, 217)"
    )
    assert FACT in fake_openai.requests[-1]["messages"][0]["content"]
    # And after a reload, from the saved reply.
    page.reload()
    expect(last_reply(page).locator("footer .msg-sources")).to_contain_text(
        "manual.pdf (pp. 40, 217)"
    )


def test_drop_a_300_page_pdf_in_the_composer_and_get_the_right_page(
    page, fake_openai, settings, tmp_path
):
    """Attached through the composer's file input, as a person does: the chip names it,
    the thread shows it with its pages, and the answer is grounded in the right page."""
    from tests.attachments.test_retrieval import FACT, QUESTION, manual_pdf

    settings.MEDIA_ROOT = tmp_path / "media"
    manual = tmp_path / "manual.pdf"
    manual.write_bytes(manual_pdf())
    log_in(page)
    page.set_input_files("#composer input[name=attachments]", str(manual))
    expect(page.locator("#attach-chips .attach-chip")).to_contain_text("manual.pdf")
    fake_openai.script(Reply(tokens=["It ran at ", "4,200 RPM."]))
    composer(page).fill(QUESTION)
    composer(page).press("Enter")
    expect_complete(page, "It ran at 4,200 RPM.")
    document = page.locator("#thread [data-role=user] .msg-attachments").last
    expect(document).to_contain_text("manual.pdf")
    expect(document).to_contain_text("300 pages")
    expect(last_reply(page).locator("footer .msg-sources")).to_contain_text("manual.pdf (pp.")
    expect(last_reply(page).locator("footer .msg-sources")).to_contain_text("217")
    sent = fake_openai.requests[-1]["messages"]
    assert any(FACT in str(message["content"]) for message in sent)
