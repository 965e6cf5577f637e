from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

SyncGetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class HtmxLoginRedirectMiddleware:
    """An expired session during an htmx request sends the whole page to the login form.

    Without this, htmx would follow the redirect and swap the login page into the thread.
    Sync and async capable, so that under ASGI it costs no hop through a thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: SyncGetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Django then awaits __call__; the switch itself happens inside it.
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        response = cast(SyncGetResponse, self.get_response)(request)
        return _client_redirect(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = await cast(AsyncGetResponse, self.get_response)(request)
        return _client_redirect(request, response)


def _client_redirect(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if (
        request.headers.get("HX-Request") == "true"
        and response.status_code == 302
        and response["Location"].startswith(resolve_url(settings.LOGIN_URL))
    ):
        return HttpResponseClientRedirect(response["Location"])
    return response
