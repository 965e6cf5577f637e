"""The app's configuration; `ready()` wires what must not happen at import time."""

from __future__ import annotations

import atexit

from django.apps import AppConfig
from django.core.signals import request_started
from django.db.models.signals import post_delete


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)
        from .attachments import services as attachment_services
        from .chat import titles
        from .generation import lifecycle
        from .transfer import jobs

        # A reply that ends complete gets its conversation an automatic title.
        lifecycle.on_complete(titles.schedule_for)
        # Replies still being written when the process exits are saved as interrupted.
        atexit.register(lifecycle.interrupt_live_at_exit)
        # A process's first request ends the imports a dead process left and removes their
        # uploads (not in ready(): no database here, and management commands need none).
        request_started.connect(jobs.import_startup_sweep, dispatch_uid="import_startup_sweep")
        # Deleting an attachment's row (with its conversation, its user...) deletes its file.
        post_delete.connect(
            attachment_services.file_delete_after,
            sender=self.get_model("Attachment"),
            dispatch_uid="attachment_file_delete",
        )
