"""`manage.py import_conversations FILE [--owner USERNAME]`: load a chatsite JSON export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.transfer.chatsite import conversations_import_json
from conversations.transfer.results import ImportFormatError


class Command(BaseCommand):
    help = (
        "Import conversations from a chatsite JSON export (made by the admin's export "
        "action). Conversations already present are skipped, so it is safe to run twice. "
        "Exits with an error if any conversation in the file could not be imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='The JSON export to read, or "-" for standard input.')
        parser.add_argument(
            "--owner",
            metavar="USERNAME",
            help="Give every conversation to this user instead of the exported owners.",
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
            if file == "-":
                result = conversations_import_json(data=sys.stdin.buffer, owner=target)
            else:
                with Path(file).open("rb") as f:
                    result = conversations_import_json(data=f, owner=target)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from exc
        except ImportFormatError as exc:
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
