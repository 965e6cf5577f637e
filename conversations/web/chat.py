from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape
from django.views import defaults
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    push_url,
    reswap,
    retarget,
    trigger_client_event,
)

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

from . import importer, selectors, services, transfer
from .forms import ConversationSettingsForm, EditForm, ImportForm, MessageForm, RenameForm
from .models import Conversation, Message
from .rendering import render_markdown, render_markdown_uncached
from .runner import runner

TEMPLATE = "conversations/chat.html"


class Request(HttpRequest):
    """What the views behind @login_required get: HtmxMiddleware's details and a real user."""

    htmx: HtmxDetails
    user: User


TEXT = "text/plain; charset=utf-8"
KEEPALIVE_SECONDS = 15.0
DB_POLL_SECONDS = 0.5
# A streaming reply is re-rendered as Markdown at most this often.
RENDER_SECONDS = 0.15


def _page_context(
    request: Request,
    conversation: Conversation | None,
    form: MessageForm | None = None,
    sidebar: selectors.ConversationPage | None = None,
    settings_form: ConversationSettingsForm | None = None,
) -> dict[str, Any]:
    thread: list[Message] = []
    if conversation is not None:
        services.replies_interrupt_stale(conversation=conversation)
        thread = selectors.thread(conversation=conversation)
    return {
        "conversation": conversation,
        "sidebar": sidebar or selectors.conversation_list(user=request.user),
        "thread": thread,
        "last_id": thread[-1].pk if thread else None,
        "busy": any(m.is_in_flight for m in thread),
        "form": form or MessageForm(),
        "settings_form": settings_form or ConversationSettingsForm.for_conversation(conversation),
    }


@login_required
@require_GET
def chat(request: Request) -> HttpResponse:
    return render(request, TEMPLATE, _page_context(request, None))


@login_required
@require_GET
def conversation(request: Request, conversation_id: int) -> HttpResponse:
    """The conversation; with `?m=<id>` (a search result) the branch holding that message.

    Opening a message of another branch switches to it as the version switcher does, then
    redirects to the plain URL (a reload must not switch back). An `m` that is not a
    message of this conversation is ignored.
    """
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    target = selectors.conversation_message(conversation=conv, message_id=request.GET.get("m", ""))
    if target is not None:
        # While a reply is being written it stays on screen (ConversationBusy), as with
        # the switcher.
        if not selectors.is_shown(message=target, conversation=conv):
            with contextlib.suppress(services.ConversationBusy):
                services.conversation_show(message=target)
        return redirect(f"{conv.get_absolute_url()}#m-{target.pk}")
    return render(request, TEMPLATE, _page_context(request, conv))


@login_required
@require_GET
def older_conversations(request: Request) -> HttpResponse:
    """The next page of the sidebar: list items for htmx, the whole page without it."""
    page = selectors.conversation_list(user=request.user, older_than=request.GET.get("before", ""))
    if request.htmx:
        return render(request, f"{TEMPLATE}#sidebar_items", {"sidebar": page})
    return render(request, TEMPLATE, _page_context(request, None, sidebar=page))


def _composer_error(
    request: Request,
    conversation: Conversation | None,
    form: MessageForm,
    status: int,
    settings_form: ConversationSettingsForm | None = None,
) -> HttpResponse:
    """Refused input: the composer with its error inline (HTMX), or the page (no JS)."""
    context = _page_context(request, conversation, form, settings_form=settings_form)
    if request.htmx:
        response = render(request, f"{TEMPLATE}#composer", context, status=status)
        return reswap(retarget(response, "#composer"), "outerHTML")
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_POST
def send(request: Request, conversation_id: int | None = None) -> HttpResponse:
    conv = (
        selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        if conversation_id is not None
        else None
    )
    form = MessageForm(request.POST)
    # A new chat's first message carries its settings (the composer's settings panel).
    settings_form = ConversationSettingsForm(request.POST) if conv is None else None
    settings_valid = settings_form is None or settings_form.is_valid()
    if not form.is_valid() or not settings_valid:
        return _composer_error(request, conv, form, status=422, settings_form=settings_form)
    defaults = services.conversation_defaults()
    try:
        new_conv, question, reply = services.message_send(
            user=request.user,
            conversation=conv,
            content=form.cleaned_data["content"],
            options=settings_form.options(defaults=defaults) if settings_form else None,
        )
    except services.ConversationBusy as exc:
        form.add_error("content", exc.message)
        return _composer_error(request, conv, form, status=409)

    if not request.htmx:
        # Without JavaScript there is no stream to watch: answer once the reply is done.
        services.reply_wait(reply=reply, timeout=settings.CHAT_NOJS_WAIT)
        return redirect(new_conv)

    if conv is None:
        # The first message: show the whole new conversation and move the URL to it.
        context = _page_context(request, new_conv)
        html = render_to_string(f"{TEMPLATE}#chat", context, request=request)
        response = HttpResponse(html + _sidebar_oob(request, new_conv))
        response = reswap(retarget(response, "#chat"), "innerHTML")
        return push_url(response, new_conv.get_absolute_url())
    context = {"thread": [question, reply], "last_id": reply.pk}
    html = render_to_string(f"{TEMPLATE}#messages", context, request=request)
    return HttpResponse(html + _sidebar_oob(request, new_conv))


def _sidebar_oob(request: Request, conversation: Conversation) -> str:
    return render_to_string(
        f"{TEMPLATE}#sidebar",
        {
            "conversation": conversation,
            "sidebar": selectors.conversation_list(user=request.user),
            "oob": True,
        },
        request=request,
    )


def _message_response(request: Request, message: Message) -> HttpResponse:
    if not request.htmx:
        return redirect(message.conversation)
    return HttpResponse(render_message(message.pk, request=request))


def render_message(message_id: int, request: HttpRequest | None = None) -> str:
    message = Message.objects.get(pk=message_id)
    message.versions = selectors.message_versions(message=message)
    is_last = selectors.message_is_last(message=message)
    return render_to_string(
        f"{TEMPLATE}#message",
        {
            "message": message,
            "last_id": message.pk if is_last else None,
            "title_poll": services.title_may_change(message=message),
        },
        request=request,
    )


@login_required
@require_POST
def stop(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    reply = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    services.reply_stop(reply=reply)
    return _message_response(request, reply)


@login_required
@require_POST
def retry(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """Regenerate the last reply (Retry, for a failed one): the old one stays an alternative."""
    reply = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    try:
        new = services.reply_regenerate(reply=reply)
    except services.NotRetryable as exc:
        return HttpResponse(exc.message, status=400, content_type=TEXT)
    except services.ConversationBusy as exc:
        return _busy(exc)
    if not request.htmx:
        services.reply_wait(reply=new, timeout=settings.CHAT_NOJS_WAIT)
        return redirect(reply.conversation)
    return _thread_response(request, reply.conversation_id)


# --- Branches: edit, switch versions; settings --------------------------------------


def _busy(exc: services.ConversationBusy) -> HttpResponse:
    busy = HttpResponse(exc.message, status=409, content_type=TEXT)
    return reswap(retarget(busy, "#composer-error"), "innerHTML")


def _thread_response(request: Request, conversation_id: int) -> HttpResponse:
    """The branch now shown, swapped in for the thread (htmx)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    thread = selectors.thread(conversation=conv)
    context = {"thread": thread, "last_id": thread[-1].pk if thread else None}
    html = render_to_string(f"{TEMPLATE}#messages", context, request=request)
    return reswap(retarget(HttpResponse(html), "#thread"), "innerHTML")


@login_required
@require_GET
def message(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """One message as shown in the thread (htmx: cancelling an edit); the page without JS."""
    found = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    return _message_response(request, found)


@login_required
@require_http_methods(["GET", "POST"])
def edit(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """A user message sent again with new text, as an alternative: the form, then the send."""
    original = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    if original.role != Message.Role.USER:
        return HttpResponse(services.NotEditable.message, status=400, content_type=TEXT)
    if request.method == "GET":
        form = EditForm(initial={"content": original.content})
        return _edit_form(request, original, form, status=200)
    form = EditForm(request.POST)
    if not form.is_valid():
        return _edit_form(request, original, form, status=422)
    try:
        _question, reply = services.message_edit(
            user=request.user, message=original, content=form.cleaned_data["content"]
        )
    except services.ConversationBusy as exc:
        if request.htmx:
            return _busy(exc)
        form.add_error("content", exc.message)
        return _edit_form(request, original, form, status=409)
    if not request.htmx:
        services.reply_wait(reply=reply, timeout=settings.CHAT_NOJS_WAIT)
        return redirect(original.conversation)
    return _thread_response(request, original.conversation_id)


def _edit_form(request: Request, original: Message, form: EditForm, status: int) -> HttpResponse:
    """The message with its edit form in place of its text: alone (htmx) or in the page."""
    if request.htmx:
        original.versions = selectors.message_versions(message=original)
        context = {"message": original, "editing": original.pk, "edit_form": form}
        response = render(request, f"{TEMPLATE}#message", context, status=status)
        return reswap(retarget(response, f"#m-{original.pk}"), "outerHTML")
    context = _page_context(request, original.conversation)
    context |= {"editing": original.pk, "edit_form": form}
    return render(request, TEMPLATE, context, status=status)


@login_required
@require_POST
def show(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """Switch to another version of a message: show its branch (most recent continuation)."""
    target = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    try:
        services.conversation_show(message=target)
    except services.ConversationBusy as exc:
        return _busy(exc)
    if not request.htmx:
        return redirect(f"{target.conversation.get_absolute_url()}#m-{target.pk}")
    return _thread_response(request, conversation_id)


@login_required
@require_POST
def conversation_settings(request: Request, conversation_id: int) -> HttpResponse:
    """Change the model and generation settings of the conversation's next replies."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    form = ConversationSettingsForm(request.POST, current_model=conv.model)
    saved = form.is_valid()
    if saved:
        current = services.ConversationSettings(
            model=conv.model,
            system_prompt=conv.system_prompt,
            temperature=conv.temperature,
            max_tokens=conv.max_tokens,
        )
        conv = services.conversation_update_settings(
            conversation=conv, options=form.options(defaults=current)
        )
        if not request.htmx:
            return redirect(conv)
        form = ConversationSettingsForm.for_conversation(conv)
    context = {"conversation": conv, "settings_form": form, "settings_saved": saved}
    status = 200 if saved else 422
    if request.htmx:
        return render(request, "conversations/settings_panel.html", context, status=status)
    return render(request, TEMPLATE, _page_context(request, conv) | context, status=status)


# --- Server-sent events --------------------------------------------------------------


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _phase_text(phase: str, ahead: int) -> str:
    if phase == "queued":
        waiting = f"{ahead} other {'reply' if ahead == 1 else 'replies'} first" if ahead else "next"
        return f"Queued: the model is busy with other replies (this one is {waiting})…"
    if phase == "loading":
        return "Loading the model (the first reply after a start takes a moment)…"
    return "Thinking…" if phase else ""


def _render_every(length: int) -> float:
    # Each render resends the whole reply: a long one re-renders less often, so the bytes
    # sent grow about linearly with its length, not with its square.
    return RENDER_SECONDS + length / 40_000


async def _render_partial(text: str) -> str:
    # Not render_markdown(): its cache is for whole replies, and a page is CPU work best kept
    # off the event loop.
    return await sync_to_async(render_markdown_uncached, thread_sensitive=False)(text)


async def _reply_events(message: Message, offset: int) -> AsyncIterator[str]:
    """`delta` events (escaped text from `offset`, id = length so far) for resuming clients,
    `render` events (the whole text so far as sanitized HTML, at most every RENDER_SECONDS
    and once more before the end) for the page, then `done` with the final article."""
    yield "retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    text, rendered, rendered_at = message.content, "", -RENDER_SECONDS
    live = runner.get(message.pk)
    if live is not None:
        phase = ("", 0)
        while True:
            snap = live.snapshot()
            if (snap.phase, snap.ahead) != phase and not snap.done:
                phase = (snap.phase, snap.ahead)
                yield _sse("phase", escape(_phase_text(snap.phase, snap.ahead)))
            if len(snap.text) > offset:
                yield _sse("delta", escape(snap.text[offset:]), len(snap.text))
                offset = len(snap.text)
            if snap.done:
                text = snap.text
                break
            wait = KEEPALIVE_SECONDS
            if snap.text != rendered:
                due = rendered_at + _render_every(len(snap.text)) - loop.time()
                if due <= 0:
                    yield _sse("render", await _render_partial(snap.text))
                    rendered, rendered_at = snap.text, loop.time()
                else:
                    wait = due  # render what is held back even if nothing more comes
            if not await live.changed(snap.version, wait) and wait == KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
    else:
        # Generated by another process, or by none any more: follow the database.
        idle = 0.0
        while True:
            current = await sync_to_async(services.reply_refresh)(message_id=message.pk)
            if len(current.content) > offset:
                yield _sse("delta", escape(current.content[offset:]), len(current.content))
                offset = len(current.content)
                idle = 0.0
            text = current.content
            if not current.is_in_flight:
                break
            if text != rendered:  # polls are slower than RENDER_SECONDS already
                yield _sse("render", await _render_partial(text))
                rendered = text
            await asyncio.sleep(DB_POLL_SECONDS)
            idle += DB_POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                idle = 0.0
    # The whole reply through the cached renderer: `done` renders the same text right after.
    yield _sse("render", await sync_to_async(render_markdown)(text))
    yield _sse("done", await sync_to_async(render_message)(message.pk))


async def reply_stream(request: HttpRequest, conversation_id: int, message_id: int) -> Any:
    """The reply as it grows: `delta` (escaped text) and `render` (HTML) events, then `done`.

    Watching is all this does: closing it never stops the reply.
    """
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    message = await selectors.message_find(
        user=user, conversation_id=conversation_id, message_id=message_id
    )
    if message is None:
        raise Http404("No such reply.")
    raw_offset = request.headers.get("Last-Event-ID") or request.GET.get("offset") or "0"
    # isdigit() accepts "²", which int() refuses; anything but 1-18 ASCII digits means "from 0".
    valid = raw_offset.isascii() and raw_offset.isdecimal() and len(raw_offset) <= 18
    offset = int(raw_offset) if valid else 0
    response = StreamingHttpResponse(
        _reply_events(message, offset), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


# --- History: rename, delete, titles, search -------------------------------------------

HISTORY = "conversations/history.html"


def _title_changed(response: HttpResponse, conversation: Conversation) -> HttpResponse:
    # history.js applies it to the header, the sidebar and the page title.
    return trigger_client_event(
        response, "chatsite:title", {"id": conversation.pk, "title": conversation.title}
    )


@login_required
@require_POST
def rename(request: Request, conversation_id: int) -> HttpResponse:
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            context = {"conversation": conv, "rename_form": form}
            return render(request, f"{HISTORY}#header", context, status=422)
        context = _page_context(request, conv) | {"rename_form": form}
        return render(request, TEMPLATE, context, status=422)
    conv = services.conversation_rename(conversation=conv, title=form.cleaned_data["title"])
    if not request.htmx:
        return redirect(conv)
    response = render(request, f"{HISTORY}#header", {"conversation": conv})
    return _title_changed(response, conv)


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: Request, conversation_id: int) -> HttpResponse:
    """GET: a confirmation page (works without JavaScript). POST: delete, go to a new chat."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    if request.method == "GET":
        context = _page_context(request, None) | {
            "conversation": conv,
            "message_count": conv.messages.count(),
        }
        return render(request, "conversations/delete.html", context)
    services.conversation_delete(user=request.user, conversation=conv)
    if request.htmx:
        return HttpResponseClientRedirect(reverse("chat"))
    return redirect("chat")


@login_required
@require_GET
def conversation_title(request: Request, conversation_id: int) -> HttpResponse:
    """The title, once an automatic title being generated for it is settled (for htmx)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    conv = services.conversation_title_wait(
        conversation=conv, timeout=settings.CHAT_TITLE_TIMEOUT + 1
    )
    if not request.htmx:
        return redirect(conv)
    return _title_changed(HttpResponse(""), conv)


@login_required
@require_GET
def search(request: Request) -> HttpResponse:
    query = selectors.search_clean(request.GET.get("q", "")).strip()
    raw_page = request.GET.get("page", "1")
    page = int(raw_page) if raw_page.isascii() and raw_page.isdecimal() and len(raw_page) < 6 else 1
    results = selectors.search(user=request.user, query=query, page=page)
    context = _page_context(request, None) | {"results": results, "search_query": query}
    return render(request, "conversations/search.html", context)


# --- Help -------------------------------------------------------------------------


@login_required
@require_GET
def help_models(request: Request) -> HttpResponse:
    """The README's "Connecting a model" section, served by the app (it works offline)."""
    return render(
        request,
        "conversations/help.html",
        {"title": "Connecting a model", "text": selectors.readme_section("Connecting a model")},
    )


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page (the admin's too): point them at ours."""
    return redirect(static("chatsite/favicon.svg"), permanent=True)


# --- Accounts -----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is switched off on this server.")
    if request.user.is_authenticated:
        return redirect("chat")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect(reverse("chat"))
    return render(request, "registration/signup.html", {"form": form})


# --- Errors -------------------------------------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400. A post over DATA_UPLOAD_MAX_MEMORY_SIZE is a message far too long: say so.

    The composer shows a text/plain error body as it is; other 400s get the usual page.
    """
    if not isinstance(exception, RequestDataTooBig):
        return defaults.bad_request(request, exception)
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if request.headers.get("HX-Request") == "true":
        text = f"That message is too long to send (the limit is {limit} characters)."
        return HttpResponse(text, status=413, content_type=TEXT)
    return HttpResponse(render_to_string("413.html", {"limit": limit}), status=413)


# --- Export and import --------------------------------------------------------------

USER_EXPORT_FORMATS = ("markdown", "json")


@login_required
@require_GET
def export_conversation(request: Request, conversation_id: int, fmt: str) -> StreamingHttpResponse:
    """One of the user's conversations as a Markdown or JSON download (streamed)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    if fmt not in USER_EXPORT_FORMATS:
        raise Http404("No such export format.")
    return transfer.export_response(
        Conversation.objects.filter(pk=conv.pk, owner=request.user),
        fmt=fmt,
        request=request,
        filename_prefix=f"chatsite-conversation-{conv.pk}",
    )


@login_required
@require_GET
def export_all(request: Request, fmt: str) -> StreamingHttpResponse:
    """Every conversation of the user (and no one else's) as one download (streamed)."""
    if fmt not in USER_EXPORT_FORMATS:
        raise Http404("No such export format.")
    return transfer.export_response(
        Conversation.objects.filter(owner=request.user), fmt=fmt, request=request
    )


IMPORT_TEMPLATE = "conversations/import.html"


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: Request) -> HttpResponse:
    """Upload an export (ChatGPT's or chatsite's); it is imported in the background."""
    form = ImportForm()
    status = 200
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = importer.import_job_create(
                    owner=request.user, upload=form.cleaned_data["file"], requested_by=request.user
                )
            except importer.ImportRefused as exc:
                form.add_error("file", str(exc))
            else:
                return redirect(job)
        status = 413 if form.has_error("file", code="too_big") else 422
    importer.import_jobs_expire(owner=request.user)
    context = {
        "form": form,
        "jobs": selectors.import_jobs_recent(user=request.user),
        "max_bytes": settings.CHAT_IMPORT_MAX_BYTES,
    }
    return render(request, IMPORT_TEMPLATE, context, status=status)


@login_required
@require_GET
def import_job(request: Request, job_id: int) -> HttpResponse:
    """An import's progress, then its report. htmx polls the `job` fragment every second."""
    importer.import_jobs_expire(owner=request.user)
    job = selectors.import_job_get(user=request.user, job_id=job_id)
    if request.htmx:
        return render(request, f"{IMPORT_TEMPLATE}#job", {"job": job})
    return render(request, IMPORT_TEMPLATE, {"job": job})
