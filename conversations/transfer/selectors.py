"""Reads of a user's import jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conversations.models import ImportJob

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def import_job_get(*, user: User, job_id: int) -> ImportJob:
    """The user's import job; ImportJob.DoesNotExist also for other users' ids."""
    return ImportJob.objects.get(pk=job_id, owner=user)


def import_jobs_recent(*, user: User, limit: int = 10) -> list[ImportJob]:
    return list(ImportJob.objects.filter(owner=user).defer("report")[:limit])
