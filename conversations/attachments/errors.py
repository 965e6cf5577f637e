"""The one refusal of the attachments package: a file that cannot be attached."""

from __future__ import annotations


class AttachmentRejected(Exception):
    """A file that cannot be attached; `user_message` says which and why (shown inline)."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message
