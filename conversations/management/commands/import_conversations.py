"""`manage.py import_conversations FILE [--owner USERNAME]`: import an export file.

It reads what the upload page reads, through the same pipeline (`jobs.file_import`):
a chatsite JSON export, a ChatGPT data export's .zip, its conversations.json or one of
its conversations-000.json shards; streamed, so memory stays flat whatever the size.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.transfer import jobs


@contextmanager
def _local_path(file: str) -> Iterator[str]:
    """The path to read `file` from; standard input ("-") is spooled to a temporary file."""
    if file != "-":
        yield file
        return
    fd, path = tempfile.mkstemp(prefix="chatsite-import-", suffix=".stdin")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1024 * 1024)
        yield path
    finally:
        os.unlink(path)


class Command(BaseCommand):
    help = (
        "Import conversations from an export file: a chatsite JSON export (made by the "
        "admin's export action) or a ChatGPT data export (.zip, conversations.json, or "
        "its conversations-000.json shards). Conversations already present are skipped, "
        "so it is safe to run twice. Exits with an error if any conversation in the file "
        "could not be imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='The export to read, or "-" for standard input.')
        parser.add_argument(
            "--owner",
            metavar="USERNAME",
            help="Give every conversation to this user instead of the exported owners "
            "(required for a ChatGPT export, which names none).",
        )

    def handle(self, *args: Any, file: str, owner: str | None = None, **options: Any) -> None:
        target = None
        if owner is not None:
            user_model = get_user_model()
            try:
                target = user_model._default_manager.get_by_natural_key(owner)
            except user_model.DoesNotExist as exc:
                raise CommandError(f"There is no user {owner!r}.") from exc
        try:
            with _local_path(file) as path:
                _, result = jobs.file_import(path=path, owner=target)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from exc
        except jobs.OwnerRequired as exc:
            raise CommandError(f"{file}: {exc} Give one with --owner USERNAME.") from exc
        except jobs.ImportRefused as exc:
            raise CommandError(f"{file}: {exc}") from exc

        first, second, *details = result.report()
        self.stdout.write(self.style.SUCCESS(first))
        self.stdout.write(second)
        verbose = options.get("verbosity", 1) >= 2
        for line, skipped in zip(details, result.skipped, strict=True):
            if not skipped.duplicate:
                self.stdout.write(self.style.ERROR(line))
            elif verbose:
                self.stdout.write(line)
        if result.duplicates and not verbose:
            self.stdout.write("  (run with -v 2 to list the conversations already present)")
        if result.errors:
            raise CommandError(
                f"{len(result.errors)} conversation(s) could not be imported (listed above)."
            )
