"""Images as stored: recognised by their bytes (Pillow), bounded before they are decoded,
re-encoded without metadata, turned upright and scaled down to what a model can use.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from conversations.attachments.errors import AttachmentRejected

# What Pillow may open: nothing else is tried, whatever the name says (no SVG, no EPS,
# no plug-in with a parser of its own). The first frame of a GIF.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
ACCEPTED = "PNG, JPEG, WebP or GIF"
# The first bytes of each, to tell an image from a document before Pillow sees it.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    content_type: str  # "image/png" or "image/jpeg"
    extension: str  # ".png" or ".jpg"
    width: int
    height: int


class ImageRejected(AttachmentRejected):
    """Not an image this site takes, or one past the limits; `user_message` says which."""


# The longest side of the thumbnails shown in the thread (pixels).
THUMBNAIL_SIDE = 320


def thumbnail_name(file_name: str) -> str:
    """Where the thumbnail of the stored file `file_name` is kept, beside it."""
    return f"{file_name}.thumb"


def thumbnail_of(data: bytes, *, content_type: str) -> bytes:
    """A small PNG (or JPEG, for photos) of a stored image (already cleaned and bounded)."""
    with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if content_type == "image/jpeg":
            image.convert("RGB").save(out, format="JPEG", quality=85)
        else:
            image.save(out, format="PNG")
        return out.getvalue()


def looks_like_image(head: bytes) -> bool:
    """Whether the file's first bytes are those of a PNG, JPEG, GIF or WebP."""
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def read_image(data: bytes, *, name: str) -> StoredImage:
    """The image in `data` as it is stored, or `ImageRejected` saying why not.

    Its size is read from the header and checked against CHAT_IMAGE_MAX_PIXELS before
    any pixel is decoded (a small file can declare billions of pixels). A truncated or
    damaged file is refused, never half-read. JPEGs stay JPEG (quality 90), the rest
    become PNG; EXIF (GPS included), ICC, text chunks and comments are all dropped,
    the EXIF orientation is applied first.
    """
    limit = settings.CHAT_IMAGE_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > limit:
                raise ImageRejected(_too_many_pixels(name, width, height, limit))
            source_format = image.format or ""
            if source_format == "JPEG":
                # Decode a big JPEG at a fraction of its size straight away (cheaper).
                side = settings.CHAT_IMAGE_MAX_SIDE
                image.draft("RGB", (side, side))
            _load(image)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(_too_many_pixels(name, 0, 0, limit)) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            f"“{name}” is not an image this site takes: attach a {ACCEPTED} file."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        raise ImageRejected(f"“{name}” is damaged or incomplete: it could not be read.") from None
    return _stored(image, source_format)


def _load(image: ImageFile.ImageFile) -> None:
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image.load()


def _too_many_pixels(name: str, width: int, height: int, limit: int) -> str:
    size = f" ({width} × {height})" if width else ""
    return (
        f"“{name}” has too many pixels{size}: the largest image this site takes has "
        f"{limit / 1e6:g} million."
    )


def _stored(image: Image.Image, source_format: str) -> StoredImage:
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    )
    keep_jpeg = source_format == "JPEG" and not has_alpha
    clean = upright.convert("RGBA" if has_alpha else "RGB")
    side = settings.CHAT_IMAGE_MAX_SIDE
    if max(clean.size) > side:
        clean.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A new image written from pixels only: nothing of the original's metadata is passed on.
    if keep_jpeg:
        clean.save(out, format="JPEG", quality=90, optimize=True)
        content_type, extension = "image/jpeg", ".jpg"
    else:
        clean.save(out, format="PNG", compress_level=6)
        content_type, extension = "image/png", ".png"
    return StoredImage(out.getvalue(), content_type, extension, clean.width, clean.height)
