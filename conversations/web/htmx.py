"""Small helpers of the web layer, each for a pattern the views repeat."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django_htmx.http import reswap, retarget

from conversations.generation import lifecycle
from conversations.models import Conversation, Message

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

TEXT = "text/plain; charset=utf-8"
P = ParamSpec("P")


class Request(HttpRequest):
    """What views get: HtmxMiddleware's details and a real user (LoginRequiredMiddleware)."""

    htmx: HtmxDetails
    user: User


def busy_answer(message: str) -> HttpResponse:
    """409 for htmx: a reply is still being written; the words go under the composer."""
    busy = HttpResponse(message, status=409, content_type=TEXT)
    return reswap(retarget(busy, "#composer-error"), "innerHTML")


class AfterReply(HttpResponseRedirect):
    """A redirect to send once `reply` has ended (see `waits_for_reply`)."""

    def __init__(self, reply: Message, to: Conversation | str) -> None:
        super().__init__(resolve_url(to))
        self.reply_id = reply.pk


def after_reply(reply: Message, to: Conversation | str) -> HttpResponse:
    """Without JavaScript there is no stream to watch: answer once the reply is done.

    Only in a view decorated with `waits_for_reply`, which does the waiting.
    """
    return AfterReply(reply, to)


def waits_for_reply(
    view: Callable[P, HttpResponse],
) -> Callable[P, Coroutine[Any, Any, HttpResponse]]:
    """Run a sync view, then wait for the reply of its `AfterReply` off its thread.

    A request's synchronous work runs on a thread that other requests share
    (`web.lanes`): a wait of up to CHAT_NOJS_WAIT seconds must not hold it.
    """

    @functools.wraps(view)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        response = await sync_to_async(view)(*args, **kwargs)
        if isinstance(response, AfterReply):
            await lifecycle.reply_ended(reply_id=response.reply_id, timeout=settings.CHAT_NOJS_WAIT)
        return response

    return wrapped
