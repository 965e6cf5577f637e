"""Downloads of a user's conversations and the import page with its jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from conversations.chat import selectors
from conversations.forms import ImportForm
from conversations.models import Conversation, ImportJob
from conversations.transfer import jobs
from conversations.transfer import selectors as transfer_selectors
from conversations.transfer.export import EXPORT_FORMATS, FILENAME_PREFIX, export_filename
from conversations.web.htmx import Request

USER_EXPORT_FORMATS = ("markdown", "json")


@require_GET
def export_conversation(request: Request, conversation_id: int, fmt: str) -> StreamingHttpResponse:
    """One of the user's conversations as a Markdown or JSON download (streamed)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    if fmt not in USER_EXPORT_FORMATS:
        raise Http404("No such export format.")
    return export_response(
        Conversation.objects.filter(pk=conv.pk, owner=request.user),
        fmt=fmt,
        request=request,
        filename_prefix=f"chatsite-conversation-{conv.pk}",
    )


@require_GET
def export_all(request: Request, fmt: str) -> StreamingHttpResponse:
    """Every conversation of the user (and no one else's) as one download (streamed)."""
    if fmt not in USER_EXPORT_FORMATS:
        raise Http404("No such export format.")
    return export_response(
        Conversation.objects.filter(owner=request.user), fmt=fmt, request=request
    )


IMPORT_TEMPLATE = "conversations/import.html"


@require_http_methods(["GET", "POST"])
def import_page(request: Request) -> HttpResponse:
    """Upload an export (ChatGPT's or chatsite's); it is imported in the background."""
    form = ImportForm()
    status = 200
    busy: ImportJob | None = None
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = jobs.import_job_create(
                    owner=request.user, upload=form.cleaned_data["file"], requested_by=request.user
                )
            except jobs.ImportBusy as exc:
                form.add_error("file", str(exc))
                busy = exc.job
            except jobs.ImportRefused as exc:
                form.add_error("file", str(exc))
            else:
                return redirect(job)
        status = 413 if form.has_error("file", code="too_big") else 422
        if busy is not None:
            status = 409  # the file may be fine: it conflicts with the running import
    jobs.import_jobs_expire(owner=request.user)
    context = {
        "form": form,
        "busy": busy,
        "jobs": transfer_selectors.import_jobs_recent(user=request.user),
        "max_bytes": settings.CHAT_IMPORT_MAX_BYTES,
    }
    return render(request, IMPORT_TEMPLATE, context, status=status)


@require_http_methods(["GET", "POST"])
def import_job(request: Request, job_id: int) -> HttpResponse:
    """An import's progress, then its report. htmx polls the `job` fragment every second.

    A POST cancels it (the page's Cancel button, a plain form: no JavaScript needed).
    """
    jobs.import_jobs_expire(owner=request.user)
    job = transfer_selectors.import_job_get(user=request.user, job_id=job_id)
    if request.method == "POST":
        jobs.import_job_cancel(job=job)
        job.refresh_from_db()
        if not request.htmx:
            return redirect(job)
    if request.htmx:
        return render(request, f"{IMPORT_TEMPLATE}#job", {"job": job})
    return render(request, IMPORT_TEMPLATE, {"job": job})


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Every step runs in the request's one sync thread, so the generator keeps using the
    # same database connection (and, on PostgreSQL, the same open cursor).
    step = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    while (chunk := await step()) is not None:
        yield chunk


def export_response(
    queryset: QuerySet[Conversation],
    *,
    fmt: str,
    request: HttpRequest | None = None,
    filename_prefix: str = FILENAME_PREFIX,
) -> StreamingHttpResponse:
    """A streamed download of `queryset` in `fmt` ("json", "csv" or "markdown").

    Pass the request: under ASGI the chunks are then produced by an async iterator, without
    which Django would build the whole export in memory before sending a byte.
    """
    exporter, content_type, extension = EXPORT_FORMATS[fmt]
    chunks: Iterator[str] = exporter(queryset)
    body: Iterator[str] | AsyncIterator[str] = (
        _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    )
    response = StreamingHttpResponse(body, content_type=content_type)
    filename = export_filename(extension, prefix=filename_prefix)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Accel-Buffering"] = "no"
    return response
