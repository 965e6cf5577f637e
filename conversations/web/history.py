"""Views of the history: the sidebar's next page, rename, delete, the automatic
title's arrival, and search.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    trigger_client_event,
)

from conversations.chat import selectors, titles
from conversations.forms import RenameForm
from conversations.history import search as fulltext
from conversations.history import services as history
from conversations.history import sidebar
from conversations.models import Conversation
from conversations.params import parse_page
from conversations.web.chat import TEMPLATE, page_context
from conversations.web.htmx import Request

HISTORY = "conversations/history.html"


def _title_changed(response: HttpResponse, conversation: Conversation) -> HttpResponse:
    # history.js applies it to the header, the sidebar and the page title.
    return trigger_client_event(
        response, "chatsite:title", {"id": conversation.pk, "title": conversation.title}
    )


@require_GET
def older_conversations(request: Request) -> HttpResponse:
    """The next page of the sidebar: list items for htmx, the whole page without it."""
    page = sidebar.conversation_list(user=request.user, older_than=request.GET.get("before", ""))
    if request.htmx:
        return render(request, f"{TEMPLATE}#sidebar_items", {"sidebar": page})
    return render(request, TEMPLATE, page_context(request, None, sidebar=page))


@require_POST
def rename(request: Request, conversation_id: int) -> HttpResponse:
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            context = {"conversation": conv, "rename_form": form}
            return render(request, f"{HISTORY}#header", context, status=422)
        context = page_context(request, conv) | {"rename_form": form}
        return render(request, TEMPLATE, context, status=422)
    conv = history.conversation_rename(conversation=conv, title=form.cleaned_data["title"])
    if not request.htmx:
        return redirect(conv)
    response = render(request, f"{HISTORY}#header", {"conversation": conv})
    return _title_changed(response, conv)


@require_http_methods(["GET", "POST"])
def delete(request: Request, conversation_id: int) -> HttpResponse:
    """GET: a confirmation page (works without JavaScript). POST: delete, go to a new chat."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    if request.method == "GET":
        context = page_context(request, None) | {
            "conversation": conv,
            "message_count": conv.messages.count(),
        }
        return render(request, "conversations/delete.html", context)
    history.conversation_delete(user=request.user, conversation=conv)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("chat"))
    return redirect("chat")


@require_GET
def conversation_title(request: Request, conversation_id: int) -> HttpResponse:
    """The title, once an automatic title being generated for it is settled (for htmx)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    conv = titles.conversation_title_wait(
        conversation=conv, timeout=settings.CHAT_TITLE_TIMEOUT + 1
    )
    if not request.htmx:
        return redirect(conv)
    return _title_changed(HttpResponse(""), conv)


@require_GET
def search(request: Request) -> HttpResponse:
    query = fulltext.search_clean(request.GET.get("q", "")).strip()
    page = parse_page(request.GET.get("page"), maximum=fulltext.SEARCH_MAX_PAGE)
    results = fulltext.search(user=request.user, query=query, page=page)
    context = page_context(request, None) | {"results": results, "search_query": query}
    return render(request, "conversations/search.html", context)
