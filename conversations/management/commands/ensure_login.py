"""Make sure someone can log in: on a fresh install, create an admin with a random password."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "If there is no user yet, create a superuser 'admin' with a random password and print it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write(
                "Log in with your existing account. New login: "
                "python manage.py createsuperuser (or /accounts/signup/ if sign-up is on)."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the first login: username '{username}', password '{password}'\n"
                "(shown once; change it in the admin, or run: "
                f"python manage.py changepassword {username})"
            )
        )
