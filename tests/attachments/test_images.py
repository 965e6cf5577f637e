"""Images as stored: recognised by content, bounded before decoding, cleaned, scaled."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conversations.attachments.images import ImageRejected, looks_like_image, read_image
from tests.support import images


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("fmt", "kwargs", "content_type"),
    [
        ("PNG", {}, "image/png"),
        ("JPEG", {}, "image/jpeg"),
        ("WEBP", {}, "image/png"),
        ("GIF", {}, "image/png"),
    ],
)
def test_each_accepted_format_is_recognised_and_re_encoded(fmt, kwargs, content_type):
    data = images.image_bytes(fmt, 64, 48, **kwargs)
    assert looks_like_image(data[:16])
    stored = read_image(data, name=f"picture.{fmt.lower()}")
    assert stored.content_type == content_type
    assert (stored.width, stored.height) == (64, 48)
    assert _open(stored.data).format == content_type.split("/")[1].upper()


def test_a_gif_keeps_its_first_frame():
    stored = read_image(images.animated_gif(), name="anim.gif")
    image = _open(stored.data).convert("RGB")
    assert image.getpixel((5, 5)) == (255, 0, 0)
    assert getattr(_open(stored.data), "n_frames", 1) == 1


def test_transparency_is_kept_as_png():
    out = io.BytesIO()
    Image.new("RGBA", (20, 20), (10, 120, 200, 100)).save(out, format="WEBP", lossless=True)
    stored = read_image(out.getvalue(), name="alpha.webp")
    assert stored.content_type == "image/png"
    assert _open(stored.data).mode == "RGBA"


def test_exif_and_gps_are_stripped_and_the_orientation_applied():
    original = images.jpeg_with_gps(80, 40, orientation=6)
    assert _open(original).getexif().get_ifd(0x8825)  # the fixture really has GPS
    stored = read_image(original, name="holiday.jpg")
    image = _open(stored.data)
    assert not image.getexif()
    assert "exif" not in image.info and "icc_profile" not in image.info
    assert b"SpyCam" not in stored.data and b"Exif" not in stored.data
    # Orientation 6: turned upright, the 80 x 40 picture is 40 x 80 with red on top.
    assert (stored.width, stored.height) == (40, 80)
    top = image.convert("RGB").getpixel((20, 10))
    bottom = image.convert("RGB").getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_large_images_are_scaled_down_to_the_longest_side(settings):
    settings.CHAT_IMAGE_MAX_SIDE = 500
    stored = read_image(images.png(2000, 1000), name="wide.png")
    assert (stored.width, stored.height) == (500, 250)
    assert _open(stored.data).size == (500, 250)


def test_a_pixel_bomb_is_refused_before_it_is_decoded():
    bomb = images.pixel_bomb_png(100_000, 100_000)
    assert len(bomb) < 2000
    with pytest.raises(ImageRejected, match="too many pixels"):
        read_image(bomb, name="bomb.png")


def test_the_pixel_limit_is_a_setting(settings):
    settings.CHAT_IMAGE_MAX_PIXELS = 100 * 100
    with pytest.raises(ImageRejected, match=r"too many pixels \(200 × 100\)"):
        read_image(images.png(200, 100), name="a.png")
    assert read_image(images.png(100, 100), name="b.png").width == 100


def test_a_truncated_image_is_refused():
    noisy = Image.effect_noise((300, 300), 50).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    data = out.getvalue()
    with pytest.raises(ImageRejected, match="damaged or incomplete"):
        read_image(data[: len(data) // 2], name="cut.png")


def test_a_png_named_jpg_is_read_as_the_png_it_is():
    stored = read_image(images.png(10, 10), name="photo.jpg")
    assert stored.content_type == "image/png"


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        b"<!doctype html><script>alert(1)</script>",
        b"%!PS-Adobe-3.0 EPSF-3.0\n",
        b"BM" + b"\x00" * 60,  # a BMP: an image, but not one this site takes
    ],
)
def test_what_is_not_png_jpeg_webp_or_gif_is_refused(data):
    assert not looks_like_image(data[:16]) or data.startswith(b"BM")
    with pytest.raises(ImageRejected, match="not an image this site takes"):
        read_image(data, name="image.png")
