"""Management commands used by scripts/run."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client


@pytest.mark.django_db
def test_ensure_login_creates_a_first_admin_whose_password_works():
    out = StringIO()
    call_command("ensure_login", stdout=out)
    password = re.search(r"password '([^']+)'", out.getvalue()).group(1)
    user = get_user_model().objects.get()
    assert user.username == "admin"
    assert user.is_superuser
    assert Client().login(username="admin", password=password)


@pytest.mark.django_db
def test_ensure_login_leaves_existing_users_alone(owner):
    out = StringIO()
    call_command("ensure_login", stdout=out)
    assert get_user_model().objects.count() == 1
    assert "createsuperuser" in out.getvalue()
