"""Small helpers of the web layer, each for a pattern the views repeat."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.http import reswap, retarget

from conversations.generation import lifecycle
from conversations.models import Conversation, Message

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

TEXT = "text/plain; charset=utf-8"


class Request(HttpRequest):
    """What views get: HtmxMiddleware's details and a real user (LoginRequiredMiddleware)."""

    htmx: HtmxDetails
    user: User


def busy_answer(message: str) -> HttpResponse:
    """409 for htmx: a reply is still being written; the words go under the composer."""
    busy = HttpResponse(message, status=409, content_type=TEXT)
    return reswap(retarget(busy, "#composer-error"), "innerHTML")


def after_reply(reply: Message, to: Conversation | str) -> HttpResponse:
    """Without JavaScript there is no stream to watch: answer once the reply is done."""
    lifecycle.reply_wait(reply=reply, timeout=settings.CHAT_NOJS_WAIT)
    return redirect(to)
