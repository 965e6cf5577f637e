"""Attaching images in a real browser: by the button (a file input), by paste, and without
JavaScript; the thumbnail shows in the thread, the reply arrives, the full image opens."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import composer, expect, expect_complete, log_in, orm
from tests.support import images
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASTE = """async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 40; canvas.height = 30;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#00c000'; ctx.fillRect(0, 0, 40, 30);
  const blob = await new Promise(resolve => canvas.toBlob(resolve, 'image/png'));
  const data = new DataTransfer();
  data.items.add(new File([blob], 'pasted.png', {type: 'image/png'}));
  const box = document.querySelector('#composer textarea');
  box.focus();
  const event = new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});
  return !box.dispatchEvent(event);  // true: the page took the files (default prevented)
}"""


@pytest.fixture
def vision(settings):
    settings.OPENAI_MODEL = "fake-vision-model"


def thumbnails(page: Any) -> Any:
    return page.locator("#thread [data-role=user] .msg-attachments img")


def expect_loaded(image: Any) -> None:
    expect(image).to_be_visible()
    image.page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )


def test_attach_by_the_button_see_the_thumbnail_and_the_reply(
    chromium, fake_openai, vision, tmp_path
):
    fake_openai.script(Reply(tokens=["A", " red", " square."]))
    picture = tmp_path / "red-square.png"
    picture.write_bytes(images.png(64, 48))
    page = chromium.new_context().new_page()
    log_in(page)
    page.set_input_files("#composer input[name=attachments]", str(picture))
    chip = page.locator("#attach-chips .attach-chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("red-square.png")
    chip.get_by_role("textbox", name="Description of red-square.png").fill("A red square")
    composer(page).fill("What is this?")
    composer(page).press("Enter")
    expect_complete(page, "A red square.")
    image = thumbnails(page)
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "A red square")
    expect_loaded(image)
    # Sent: the chips are gone, the input empty.
    expect(chip).to_have_count(0)
    assert (
        page.evaluate(
            "() => document.querySelector('#composer input[name=attachments]').files.length"
        )
        == 0
    )
    sent = fake_openai.requests[-1]["messages"][-1]["content"]
    assert [part["type"] for part in sent] == ["text", "image_url"]
    # The thumbnail is a link (keyboard-focusable) that opens the full image.
    link = page.get_by_role("link", name="View image: A red square")
    link.focus()
    link.press("Enter")
    viewer = page.locator("dialog#image-viewer")
    expect(viewer).to_be_visible()
    expect_loaded(viewer.locator("img"))
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(link).to_be_focused()


def test_paste_a_screenshot_remove_a_chip_and_send(chromium, fake_openai, vision, tmp_path):
    fake_openai.script(Reply(tokens=["Green."]))
    other = tmp_path / "other.png"
    other.write_bytes(images.png(10, 10))
    page = chromium.new_context().new_page()
    log_in(page)
    page.set_input_files("#composer input[name=attachments]", str(other))
    assert page.evaluate(PASTE) is True
    chips = page.locator("#attach-chips .attach-chip")
    expect(chips).to_have_count(2)
    page.get_by_role("button", name="Remove other.png").click()
    expect(chips).to_have_count(1)
    expect(chips).to_contain_text("pasted.png")
    composer(page).fill("What colour?")
    page.get_by_role("button", name="Send").click()
    expect_complete(page, "Green.")
    image = thumbnails(page)
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "pasted.png")
    expect_loaded(image)
    names = orm(
        lambda: list(
            __import__("conversations.models").models.Attachment.objects.values_list(
                "name", flat=True
            )
        )
    )
    assert names == ["pasted.png"]


def test_a_refused_file_says_why_under_the_message_box(chromium, fake_openai, vision, tmp_path):
    fake = tmp_path / "not-really.png"
    fake.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    page = chromium.new_context().new_page()
    log_in(page)
    page.set_input_files("#composer input[name=attachments]", str(fake))
    composer(page).fill("Look")
    composer(page).press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("not-really.png")
    expect(page.locator("#composer-error")).to_contain_text("attach the files again")
    expect(composer(page)).to_have_value("Look")
    assert fake_openai.requests == []


def test_without_javascript_attach_by_the_file_input_and_see_the_result(
    chromium, fake_openai, vision, tmp_path
):
    fake_openai.script(Reply(tokens=["A", " picture."]))
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(images.jpeg_with_gps())
    page = chromium.new_context(java_script_enabled=False).new_page()
    log_in(page)
    page.get_by_label("Attach files").set_input_files(str(picture))
    page.get_by_label("Image description (alt text, optional)").fill("My holiday")
    composer(page).fill("Where is this?")
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/"))
    expect(page.locator("#thread [data-role=assistant] .msg-body")).to_have_text(
        "A picture.", timeout=15_000
    )
    image = thumbnails(page)
    expect(image).to_have_attribute("alt", "My holiday")
    expect_loaded(image)
    link = page.get_by_role("link", name="View image: My holiday")
    href = link.get_attribute("href")
    response = page.request.get(href)
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
    assert b"SpyCam" not in response.body()


DROP = """async () => {
  const data = new DataTransfer();
  data.items.add(new File(['col,row\\n1,2\\n'], 'table.csv', {type: 'text/csv'}));
  const form = document.getElementById('composer');
  const over = new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true});
  form.querySelector('textarea').dispatchEvent(over);
  const dragging = form.classList.contains('dragging');
  const drop = new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true});
  form.querySelector('textarea').dispatchEvent(drop);
  return dragging && drop.defaultPrevented;
}"""


def test_drop_a_file_on_the_composer(chromium, fake_openai, vision):
    fake_openai.script(Reply(tokens=["Two", " numbers."]))
    page = chromium.new_context().new_page()
    log_in(page)
    assert page.evaluate(DROP) is True
    chip = page.locator("#attach-chips .attach-chip")
    expect(chip).to_contain_text("table.csv")
    composer(page).fill("What is in it?")
    composer(page).press("Enter")
    expect_complete(page, "Two numbers.")
    document = page.locator("#thread [data-role=user] .attachment-document")
    expect(document).to_contain_text("table.csv")
    expect(document).to_contain_text("text/csv")
    assert "col,row" in fake_openai.requests[-1]["messages"][0]["content"]
