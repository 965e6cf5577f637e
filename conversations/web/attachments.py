"""An attachment's file, and an image's thumbnail: only to its owner (anyone else: 404),
never from a public URL, with headers that keep a browser from reading it as a page.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from conversations.attachments import selectors
from conversations.web.htmx import TEXT, Request

# Served as they are only: the types images are stored as. Anything else is a download.
INLINE_TYPES = {"image/png", "image/jpeg"}


def file_response(data: bytes, *, content_type: str, filename: str, sha256: str) -> HttpResponse:
    """A stored file as a response that a browser cannot take for a page of this site."""
    inline = content_type in INLINE_TYPES
    response = HttpResponse(
        data, content_type=content_type if inline else "application/octet-stream"
    )
    response["Content-Disposition"] = content_disposition_header(not inline, filename) or ""
    response["X-Content-Type-Options"] = "nosniff"
    # Even opened on its own, the file can run nothing and load nothing.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    response["ETag"] = f'"{sha256}"'
    return response


@require_safe
def attachment(request: Request, conversation_id: int, attachment_id: int) -> HttpResponse:
    """The stored file: an image inline, a document as a download."""
    found = selectors.attachment_get(
        user=request.user, conversation_id=conversation_id, attachment_id=attachment_id
    )
    return file_response(
        selectors.attachment_bytes(found),
        content_type=found.content_type,
        filename=found.name,
        sha256=found.sha256,
    )


@require_safe
def thumbnail(request: Request, conversation_id: int, attachment_id: int) -> HttpResponse:
    """A small version of an image, for the thread (404 for a document)."""
    found = selectors.attachment_get(
        user=request.user, conversation_id=conversation_id, attachment_id=attachment_id
    )
    if not found.is_image:
        return HttpResponse("Only images have thumbnails.", status=404, content_type=TEXT)
    content_type = "image/jpeg" if found.content_type == "image/jpeg" else "image/png"
    return file_response(
        selectors.thumbnail(found),
        content_type=content_type,
        filename=f"thumbnail-{found.name}",
        sha256=f"t-{found.sha256}",
    )
