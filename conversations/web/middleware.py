"""Middleware of the web layer: request ids, security headers, htmx-aware login redirects,
and 404 for rows not found."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.core.handlers.exception import response_for_exception
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.utils.deprecation import MiddlewareMixin
from django_htmx.http import HttpResponseClientRedirect

from conversations.chatlog import current_request_id
from conversations.models import Attachment, Conversation, ImportJob, Message

SyncGetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class ResponseMiddleware:
    """A middleware that works around the response, sync and async capable, so that under
    ASGI it costs no hop through a thread. Subclasses override `before`, `done`, `after`.
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
        state = self.before(request)
        try:
            response = cast(SyncGetResponse, self.get_response)(request)
        finally:
            self.done(state)
        return self.after(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        state = self.before(request)
        try:
            response = await cast(AsyncGetResponse, self.get_response)(request)
        finally:
            self.done(state)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> Any:
        """Before the view; what it returns is handed to `done`."""
        return None

    def done(self, state: Any) -> None:
        """After the view, whatever happened in it."""

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """The response to send."""
        return response


class RequestIdMiddleware(ResponseMiddleware):
    """Every request gets an id (request.id, a uuid4), sent back as `X-Request-ID` and put
    on every log record written while it is served, so a reported error can be found."""

    def before(self, request: HttpRequest) -> Any:
        return _start(request)

    def done(self, state: Any) -> None:
        current_request_id.reset(state)

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response["X-Request-ID"] = request.id  # type: ignore[attr-defined]
        return response


def _start(request: HttpRequest) -> Any:
    request.id = uuid.uuid4().hex  # type: ignore[attr-defined]
    return current_request_id.set(request.id)  # type: ignore[attr-defined]


class SecurityHeadersMiddleware(ResponseMiddleware):
    """Content-Security-Policy and Permissions-Policy on every response, from settings
    (CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY; empty: no header). Referrer-Policy is
    Django's SecurityMiddleware's (SECURE_REFERRER_POLICY)."""

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return _security_headers(response)


def _security_headers(response: HttpResponseBase) -> HttpResponseBase:
    for header, value in (
        ("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY),
        ("Permissions-Policy", settings.PERMISSIONS_POLICY),
    ):
        if value and header not in response:
            response[header] = value
    return response


def client_ip(request: HttpRequest) -> str:
    """The client's address for login throttling: behind LOGIN_PROXY_COUNT proxies that each
    append the address they saw to X-Forwarded-For, the entry the outermost one added
    (earlier entries are the client's to forge); else the connection's."""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    count = settings.LOGIN_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-count] if len(forwarded) >= count else remote


class HtmxLoginRedirectMiddleware(ResponseMiddleware):
    """An expired session during an htmx request sends the whole page to the login form.

    Without this, htmx would follow the redirect and swap the login page into the thread.
    """

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return _client_redirect(request, response)


def _client_redirect(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if (
        request.headers.get("HX-Request") == "true"
        and response.status_code == 302
        and response["Location"].startswith(resolve_url(settings.LOGIN_URL))
    ):
        return HttpResponseClientRedirect(response["Location"])
    return response


class NotFoundMiddleware(MiddlewareMixin):
    """A conversation, message, attachment or import job that is not there — or not the
    user's — is 404.

    Selectors look rows up by id and owner and raise the model's DoesNotExist; here that
    becomes the 404 page, for sync and async views alike.
    """

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        if isinstance(
            exception,
            Conversation.DoesNotExist
            | Message.DoesNotExist
            | ImportJob.DoesNotExist
            | Attachment.DoesNotExist,
        ):
            return response_for_exception(request, Http404("Not found."))
        return None


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Every page is private unless its view is marked @login_not_required.

    The admin is left to itself: it checks staff status and sends people to its own
    login page.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        match = request.resolver_match
        if match is not None and match.app_name == "admin":
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
