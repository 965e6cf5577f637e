"""The tables: Conversation, Message (a tree per conversation, with status, finish reason,
tokens and timings), Attachment (an image or document sent with a message) and its
AttachmentChunk passages, ImportJob and UserLimits (a user's own limits on generations).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.storage import Storage, default_storage, storages
from django.db import models
from django.urls import reverse


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    # None: the site's default (settings.CHAT_TEMPERATURE / CHAT_MAX_TOKENS).
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField("maximum reply length (tokens)", null=True, blank=True)
    # Set once the user renames it: automatic titles never overwrite a user's title.
    title_set_by_user = models.BooleanField(default=False)
    # The last message of the branch shown (messages form a tree); None: the newest.
    current = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Where an imported conversation came from (a ChatGPT id, say): importing it again
    # finds it here and creates nothing new.
    external_id = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    # Last activity: bumped by the services whenever a message is added.
    updated = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-updated", "-id"]
        indexes = [models.Index(fields=["owner", "-updated", "-id"], name="conv_owner_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "external_id"],
                condition=~models.Q(external_id=""),
                name="conv_owner_external_id",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.pk])


@dataclass(frozen=True)
class Versions:
    """Where a message stands among its alternatives (same parent, same role): "2/3"."""

    index: int  # from 1
    count: int
    previous: int | None  # the id of the alternative before, None for the first
    next: int | None


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        INTERRUPTED = "interrupted", "Interrupted"
        ERROR = "error", "Error"

    IN_FLIGHT = (Status.PENDING, Status.STREAMING)
    FINISHED = (Status.COMPLETE, Status.STOPPED, Status.INTERRUPTED, Status.ERROR)

    # Set by the selectors on the messages they show; None: not computed.
    versions: Versions | None = None

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # Messages form a tree: a reply's parent is the user message it answers, a user
    # message's parent is the reply it follows (None for the first). Siblings are the
    # alternatives: regenerated replies, edited questions.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    # What a reply was generated with (the conversation's settings at the time).
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    # How many earlier messages were left out of the context to fit the model's window.
    omitted = models.PositiveIntegerField("messages left out of the context", default=0)
    external_id = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True, blank=True)
    total_ms = models.PositiveIntegerField("total time (ms)", null=True, blank=True)
    # Why the model stopped, as the backend said it: "stop", "length" (the maximum length
    # was reached), "content_filter"…; empty while writing or when it never said.
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    # The documents and passages a reply was given (generation.context), named in its
    # footer: [{"attachment": id, "name": "report.pdf", "passages": "pp. 12-13"}].
    sources = models.JSONField(default=list, blank=True)
    # A reasoning model's thinking, apart from the answer (never sent back by default),
    # when it began and ended (the answer's start), and its tokens as the server counted.
    reasoning = models.TextField(blank=True)
    reasoning_started = models.DateTimeField(null=True, blank=True)
    reasoning_ended = models.DateTimeField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Stop pressed in a process other than the one generating: that one stops at its next tick.
    stop_requested = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    # Last recorded progress of a reply; how interrupted replies are recognised.
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [
            models.Index(fields=["conversation", "created", "id"], name="msg_thread"),
            models.Index(fields=["status", "updated"], name="msg_status_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT

    @property
    def hit_length_limit(self) -> bool:
        """The model stopped because the reply reached its maximum length."""
        return self.finish_reason == "length" and not self.is_in_flight

    @property
    def is_retryable(self) -> bool:
        return self.role == self.Role.ASSISTANT and self.status in (
            self.Status.ERROR,
            self.Status.INTERRUPTED,
        )

    @property
    def is_regenerable(self) -> bool:
        return self.role == self.Role.ASSISTANT and self.status in self.FINISHED

    @property
    def reasoning_seconds(self) -> int | None:
        """How long it thought, in whole seconds (at least 1), or None if unknown."""
        if self.reasoning_started is None or self.reasoning_ended is None:
            return None
        seconds = (self.reasoning_ended - self.reasoning_started).total_seconds()
        return max(1, round(seconds))

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


def attachment_storage() -> Storage:
    """STORAGES["attachments"] when configured (S3-compatible, say), else the default."""
    if "attachments" in settings.STORAGES:
        return storages["attachments"]
    return default_storage


def attachment_path(instance: Attachment, filename: str) -> str:
    # A random name: the user's file name is kept in `name`, never in a path.
    suffix = PurePosixPath(filename).suffix.lower()[:10]
    return f"attachments/{instance.owner_id}/{uuid.uuid4().hex}{suffix}"


class Attachment(models.Model):
    """An image or a document sent with a user message; its bytes live in storage.

    Images are stored re-encoded (no metadata, scaled down); documents keep their bytes
    and the text extracted once at upload (`text`, split into `chunks` for retrieval).
    Served only through an owner-checked view, never from a public URL.
    """

    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        DOCUMENT = "document", "Document"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    file = models.FileField(upload_to=attachment_path, storage=attachment_storage, max_length=300)
    # The name the user gave the file (shown, exported); never used in a storage path.
    name = models.CharField(max_length=255)
    # What the content is (recognised from the bytes, not the name): "image/png", "application/pdf"…
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(help_text="Bytes as stored.")
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # Alt text of an image (the file name when the user gives none).
    caption = models.CharField(max_length=300, blank=True)
    # A document's extracted text, and its page count where it has pages (PDF).
    text = models.TextField(blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "id"]
        indexes = [models.Index(fields=["message", "id"], name="attachment_message")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} #{self.pk}"

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.IMAGE


class AttachmentChunk(models.Model):
    """A passage of a document's text, the unit retrieval picks when the whole is too long."""

    attachment = models.ForeignKey(Attachment, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    # The pages the passage spans (PDF), None for documents without pages.
    page_from = models.PositiveIntegerField(null=True, blank=True)
    page_to = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField()

    class Meta:
        ordering = ["attachment", "index"]
        constraints = [
            models.UniqueConstraint(fields=["attachment", "index"], name="chunk_attachment_index")
        ]

    def __str__(self) -> str:
        return f"Passage {self.index} of attachment {self.attachment_id}"


class ImportJob(models.Model):
    """An uploaded export being imported in the background, with its progress and report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        # Asked to stop (by its owner or staff); `error` says how far it got once it has.
        CANCELLED = "cancelled", "Cancelled"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_jobs"
    )
    # Who uploaded it: the owner, or a staff member importing on the owner's behalf.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    filename = models.CharField(max_length=255)
    # "chatgpt" or "chatsite", once the file has been recognised.
    source = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    conversations_imported = models.PositiveIntegerField(default=0)
    messages_imported = models.PositiveIntegerField(default=0)
    conversations_skipped = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    # Skipped entries: [{"entry", "title", "reason", "duplicate"}], capped in length.
    report = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    bytes_read = models.PositiveBigIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    # The worker's heartbeat: a running job not updated for a while has lost its worker.
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "-created"], name="importjob_owner_recent")]

    def __str__(self) -> str:
        return f"Import of {self.filename} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("import_job", args=[self.pk])

    @property
    def stopping(self) -> bool:
        """Cancelled, and its worker has not yet said where it stopped."""
        return self.status == self.Status.CANCELLED and not self.error

    @property
    def finished(self) -> bool:
        if self.status == self.Status.CANCELLED:
            return not self.stopping
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def active(self) -> bool:
        """Queued, running or still stopping: what counts as the owner's one import."""
        return not self.finished

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.bytes_total:
            return 0
        return min(99, self.bytes_read * 100 // self.bytes_total)


class UserLimits(models.Model):
    """One user's own limits on generations, where they differ from the site's defaults.

    Blank (None): the site's default (CHAT_MAX_CONCURRENT_REPLIES, CHAT_MAX_MESSAGES_PER_MINUTE,
    CHAT_MAX_TOKENS_PER_DAY); 0: no limit for this user.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_limits"
    )
    concurrent_replies = models.PositiveIntegerField(
        "replies at once",
        null=True,
        blank=True,
        help_text="Blank: the site's default. 0: no limit.",
    )
    messages_per_minute = models.PositiveIntegerField(
        "messages per minute",
        null=True,
        blank=True,
        help_text="Replies asked for (send, edit, retry) in any 60 seconds. Blank: the "
        "site's default. 0: no limit.",
    )
    tokens_per_day = models.PositiveBigIntegerField(
        "tokens per day",
        null=True,
        blank=True,
        help_text="Prompt and reply tokens since midnight (TIME_ZONE). Blank: the site's "
        "default. 0: no limit.",
    )

    class Meta:
        verbose_name = "limits"
        verbose_name_plural = "limits"

    def __str__(self) -> str:
        return f"Limits of user {self.user_id}"
