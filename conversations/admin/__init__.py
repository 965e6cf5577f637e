"""The staff's view of every conversation and message (with their attachments), and bulk
exports of them; each user's limits on generations, on the user's page.

Messages are read-only here: they are a record of what was said and generated.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator, smart_split, unescape_string_literal

from conversations.attachments import selectors as attachment_selectors
from conversations.forms import AdminImportForm
from conversations.models import Attachment, Conversation, ImportJob, Message
from conversations.params import parse_ids
from conversations.transfer import jobs
from conversations.web import attachments as web_attachments
from conversations.web import transfer as web_transfer

# Texts longer than this are folded into a <details> element showing the start.
FOLD_CHARS = 300
FOLD_LINES = 6
LIST_PREVIEW_CHARS = 80

_PRE = "white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60em; margin: 0"


def _text_html(content: str, error: str = "") -> SafeString:
    if not content:
        body = format_html("<em>(no text)</em>")
    elif len(content) <= FOLD_CHARS and content.count("\n") < FOLD_LINES:
        body = format_html('<div style="{}">{}</div>', _PRE, content)
    else:
        summary = Truncator(" ".join(content.split())).chars(120)
        body = format_html(
            '<details><summary>{} <small>({} characters)</small></summary><div style="{}">{}'
            "</div></details>",
            summary,
            len(content),
            _PRE,
            content,
        )
    if error:
        body = format_html(
            '{}<div style="{}; color: var(--error-fg)"><strong>Error:</strong> {}</div>',
            body,
            _PRE,
            error,
        )
    return body


def _message_count() -> Coalesce:
    # A correlated subquery rather than Count() over a join: the changelist's count queries
    # and its search (which joins messages) then need no GROUP BY.
    per_conversation = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(per_conversation, output_field=IntegerField()), Value(0))


class ReadOnly:
    """Messages are a record of what was said: the admin shows them, never edits them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(ReadOnly, admin.TabularInline[Message, Conversation]):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    show_change_link = True
    readonly_fields = (
        "created",
        "role",
        "status",
        "text",
        "reply_to",
        "model",
        "completion_tokens",
        "total_ms",
    )
    # The rest of a message (settings it was generated with, timings) is on its own page,
    # one click away: fifteen columns squeezed the text to a few letters a line.
    fields = readonly_fields
    ordering = ["created", "id"]

    @admin.display(description="text")
    def text(self, message: Message) -> SafeString:
        return _text_html(message.content, message.error)

    @admin.display(description="reply to")
    def reply_to(self, message: Message) -> str:
        return f"#{message.parent_id}" if message.parent_id else ""


class AttachmentInline(ReadOnly, admin.TabularInline[Attachment, Any]):
    """What was attached: names (each a link to its file), types, sizes, hashes."""

    model = Attachment
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "message",
        "kind",
        "file_link",
        "caption",
        "content_type",
        "size",
        "dimensions",
        "pages",
        "sha256",
        "created",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attachment]:
        return super().get_queryset(request).select_related("message")

    @admin.display(description="name")
    def file_link(self, attachment: Attachment) -> SafeString:
        url = reverse("admin:conversations_attachment_file", args=[attachment.pk])
        return format_html('<a href="{}">{}</a>', url, attachment.name)

    @admin.display(description="pixels")
    def dimensions(self, attachment: Attachment) -> str:
        return f"{attachment.width} × {attachment.height}" if attachment.width else ""


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin[Conversation]):
    list_display = ["display_title", "owner_name", "model", "message_count", "updated", "created"]
    list_display_links = ["display_title"]
    list_select_related = ["owner"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), "model", "updated", "created"]
    # Message text is searched too, in get_search_results.
    search_fields = ["title", "owner__username"]
    search_help_text = "Finds conversations by title, by the text of any message, or by owner."
    ordering = ["-updated", "-id"]
    fields = ["owner", "title", "model", "system_prompt", "message_count", "created", "updated"]
    readonly_fields = ["owner", "message_count", "created", "updated"]
    inlines = [MessageInline, AttachmentInline]
    actions = ["export_json", "export_csv", "export_markdown"]
    # The chat page is its owner's only: for staff it would be a 404.
    view_on_site = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        qs = super().get_queryset(request).select_related("owner")
        return qs.annotate(message_count=_message_count())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        """Each word must be in the title, the owner's username or the text of a message.

        Messages are matched with EXISTS rather than a join, so no conversation is listed
        twice and no DISTINCT over whole rows (or their message counts) is needed.
        """
        for word in smart_split(search_term):
            if word[0] in "\"'" and word[-1] == word[0]:
                word = unescape_string_literal(word)
            in_messages = Exists(
                Message.objects.filter(conversation=OuterRef("pk"), content__icontains=word)
            )
            queryset = queryset.filter(
                Q(title__icontains=word) | Q(owner__username__icontains=word) | in_messages
            )
        return queryset, False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Conversations come from chatting or from `manage.py import_conversations`.
        return False

    @admin.display(description="title", ordering="title")
    def display_title(self, conversation: Conversation) -> str:
        return str(conversation)

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, conversation: Conversation) -> str:
        return conversation.owner.get_username()

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, conversation: Conversation) -> int:
        return int(conversation.message_count)  # type: ignore[attr-defined]

    # --- Import on behalf of a user (the same importer as the users' /import/ page) ---

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="conversations_conversation_import"),
            path(
                "import/<int:job_id>/",
                wrap(self.import_job_view),
                name="conversations_conversation_import_job",
            ),
            path(
                "attachment/<int:attachment_id>/",
                wrap(self.attachment_view),
                name="conversations_attachment_file",
            ),
            *super().get_urls(),
        ]

    def attachment_view(self, request: HttpRequest, attachment_id: int) -> HttpResponse:
        """An attached file, for staff who may view attachments (an image inline, a
        document as a download), with the headers its owner's view sends."""
        if not request.user.has_perm("conversations.view_attachment"):
            raise PermissionDenied
        found = get_object_or_404(Attachment, pk=attachment_id)
        return web_attachments.file_response(
            attachment_selectors.attachment_bytes(found),
            content_type=found.content_type,
            filename=found.name,
            sha256=found.sha256,
        )

    def _check_import_permission(self, request: HttpRequest) -> None:
        if not request.user.has_perm("conversations.add_conversation"):
            raise PermissionDenied

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """A form: a user and an export file, imported into that user's account."""
        self._check_import_permission(request)
        form = AdminImportForm(request.POST or None, request.FILES or None)
        status = 200
        if request.method == "POST":
            if form.is_valid():
                try:
                    job = jobs.import_job_create(
                        owner=form.cleaned_data["username"],
                        upload=form.cleaned_data["file"],
                        requested_by=request.user,  # type: ignore[arg-type]
                    )
                except jobs.ImportRefused as exc:
                    form.add_error("file", str(exc))
                else:
                    return redirect("admin:conversations_conversation_import_job", job.pk)
            status = 422
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import conversations",
            "form": form,
            "jobs": ImportJob.objects.select_related("owner").defer("report")[:20],
        }
        return TemplateResponse(request, "admin/conversations/import.html", context, status=status)

    def import_job_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """Progress of an import, then its report (reloads itself while it runs)."""
        self._check_import_permission(request)
        jobs.import_jobs_expire()
        job = get_object_or_404(ImportJob.objects.select_related("owner"), pk=job_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Import of {job.filename}",
            "job": job,
        }
        return TemplateResponse(request, "admin/conversations/import_job.html", context)

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """Refuse a selection that is not all ids before any action (an export) runs.

        Django filters by the posted `_selected_action` values as they come: "abc" or a NUL
        raises ValueError (a 500), and a 20-digit id reaches the database only once the
        download is streaming (OverflowError on SQLite, mid-download). The admin's own
        message and redirect say what was wrong instead.
        """
        if request.method == "POST" and "_select_across" not in request.POST:
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if parse_ids(selected) is None:
                self.message_user(
                    request,
                    "The selection is not a list of conversation ids; nothing was done. "
                    "Select the conversations again.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset, *args, **kwargs)

    def _export(
        self, request: HttpRequest, queryset: QuerySet[Conversation], fmt: str
    ) -> StreamingHttpResponse:
        # The changelist's queryset carries its message counts; exports need only the rows.
        selected = Conversation.objects.filter(pk__in=queryset.values("pk"))
        return web_transfer.export_response(selected, fmt=fmt, request=request)

    @admin.action(description="Export selected conversations as JSON", permissions=["view"])
    def export_json(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return self._export(request, queryset, "json")

    @admin.action(description="Export selected conversations as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return self._export(request, queryset, "csv")

    @admin.action(description="Export selected conversations as Markdown", permissions=["view"])
    def export_markdown(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return self._export(request, queryset, "markdown")


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin[ImportJob]):
    """Every user's imports; a running one can be cancelled (an action)."""

    list_display = ["filename", "owner", "status", "conversations_imported", "percent", "created"]
    list_filter = ["status", "created"]
    list_select_related = ["owner"]
    search_fields = ["filename", "owner__username"]
    ordering = ["-created", "-id"]
    actions = ["cancel"]
    readonly_fields = (
        "owner",
        "requested_by",
        "filename",
        "source",
        "status",
        "error",
        "conversations_imported",
        "messages_imported",
        "conversations_skipped",
        "duplicates",
        "bytes_read",
        "bytes_total",
        "created",
        "updated",
    )
    fields = readonly_fields
    exclude = ["report"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportJob]:
        return super().get_queryset(request).defer("report")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # imports start from an upload (Conversations → Import)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="read")
    def percent(self, job: ImportJob) -> str:
        return f"{job.percent}%"

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.change_importjob")

    @admin.action(description="Cancel selected imports", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
        cancelled = sum(
            jobs.import_job_cancel(job=job) for job in queryset.select_related(None).only("pk")
        )
        left = queryset.count() - cancelled
        text = f"Cancelled {cancelled} import{'' if cancelled == 1 else 's'}."
        if left:
            text += f" {left} had already ended."
        self.message_user(request, text, messages.SUCCESS if cancelled else messages.WARNING)


@admin.register(Message)
class MessageAdmin(ReadOnly, admin.ModelAdmin[Message]):
    list_display = [
        "id",
        "short_content",
        "conversation_link",
        "owner_name",
        "role",
        "status",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total_ms",
        "created",
    ]
    list_select_related = ["conversation__owner"]
    search_fields = ["content", "conversation__title", "conversation__owner__username"]
    search_help_text = "Finds messages by their text, their conversation's title, or owner."
    list_filter = ["role", "status", "model", "created"]
    ordering = ["-created", "-id"]
    # The messages table is the big one: skip counting all of it on every page.
    show_full_result_count = False
    readonly_fields = (
        "conversation",
        "owner_name",
        "parent",
        "role",
        "status",
        "model",
        "content",
        "reasoning",
        "reasoning_tokens",
        "reasoning_started",
        "reasoning_ended",
        "sources",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "total_ms",
        "created",
        "updated",
    )
    fields = readonly_fields
    inlines = [AttachmentInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("conversation__owner")

    @admin.display(description="text")
    def short_content(self, message: Message) -> str:
        return Truncator(" ".join(message.content.split())).chars(LIST_PREVIEW_CHARS)

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_link(self, message: Message) -> SafeString:
        url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">{}</a>', url, message.conversation)

    @admin.display(description="owner", ordering="conversation__owner__username")
    def owner_name(self, message: Message) -> str:
        return message.conversation.owner.get_username()


# Each user's limits on generations, on the user's page.
from conversations.admin import users as users  # noqa: E402
