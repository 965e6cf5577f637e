from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import urls as auth_urls
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.urls import URLPattern, URLResolver, include, path


def _only_with_email(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Password reset sends a link by email: without a mail server the pages are not there."""

    @functools.wraps(view)  # keeps login_not_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.PASSWORD_RESET_ENABLED:
            raise Http404("Password reset needs email, and none is configured.")
        return view(request, *args, **kwargs)

    return wrapper


def _account_urls() -> list[URLPattern | URLResolver]:
    patterns: list[URLPattern | URLResolver] = []
    for pattern in auth_urls.urlpatterns:
        if (
            isinstance(pattern, URLPattern)
            and pattern.name
            and pattern.name.startswith("password_reset")
        ):
            pattern = URLPattern(
                pattern.pattern,
                _only_with_email(pattern.callback),
                pattern.default_args,
                pattern.name,
            )
        patterns.append(pattern)
    return patterns


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(_account_urls())),
    path("", include("conversations.urls")),
]

handler400 = "conversations.web.pages.bad_request"
