"""The chat page and the turns of a conversation: send, stop, retry, edit, show a version,
settings. Thin: read the request, call one service, render a partial for htmx or the
whole page without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import (
    push_url,
    reswap,
    retarget,
)

from conversations.chat import selectors, titles
from conversations.chat import services as chat_services
from conversations.forms import ConversationSettingsForm, EditForm, MessageForm
from conversations.generation import events, lifecycle
from conversations.history import sidebar as history_sidebar
from conversations.models import Conversation, Message
from conversations.options import ConversationSettings
from conversations.params import parse_id
from conversations.web.htmx import TEXT, Request, after_reply, busy_answer, waits_for_reply

if TYPE_CHECKING:
    from datetime import datetime


TEMPLATE = "conversations/chat.html"


def page_context(
    request: Request,
    conversation: Conversation | None,
    form: MessageForm | None = None,
    sidebar: history_sidebar.ConversationPage | None = None,
    settings_form: ConversationSettingsForm | None = None,
    through: Message | None = None,
    before: int | None = None,
) -> dict[str, Any]:
    thread: list[Message] = []
    if conversation is not None:
        thread = selectors.thread(conversation=conversation, through=through)
    shown = _window(thread, before=before)
    return {
        # Shown through ?m= rather than the saved branch: a message sent follows it.
        "after": thread[-1].pk if through is not None and thread else None,
        "through": through,
        **_earlier(thread, shown),
        "conversation": conversation,
        "sidebar": sidebar or history_sidebar.conversation_list(user=request.user),
        "thread": shown,
        "last_id": thread[-1].pk if thread else None,
        "form": form or MessageForm(),
        "settings_form": settings_form or ConversationSettingsForm.for_conversation(conversation),
    }


def _window(thread: list[Message], *, before: int | None) -> list[Message]:
    """The part of the branch a page shows: its newest CHAT_THREAD_PAGE messages, or with
    `before` (a message of the branch), from that many earlier to the end."""
    end = len(thread)
    ids = [m.pk for m in thread]
    start = end - settings.CHAT_THREAD_PAGE
    if before is not None and before in ids:
        start = ids.index(before) - settings.CHAT_THREAD_PAGE
    return thread[max(start, 0) :]


def _earlier(thread: list[Message], shown: list[Message]) -> dict[str, Any]:
    """What the "Show earlier messages" link needs: how many are hidden, and where."""
    hidden = len(thread) - len(shown)
    return {"earlier_count": hidden, "earlier_before": shown[0].pk if hidden and shown else None}


@require_GET
def chat(request: Request) -> HttpResponse:
    return render(request, TEMPLATE, page_context(request, None))


@require_GET
def conversation(request: Request, conversation_id: int) -> HttpResponse:
    """The conversation; with `?m=<id>` (a search result) the branch holding that message.

    Only shown, never saved (a GET changes nothing): the branch saved stays until the
    user acts on the one shown — a message sent from it follows its last message. While
    a reply is being written, the saved branch stays on screen, with its Stop button.
    An `m` that is not a message of this conversation is ignored.
    """
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    target = selectors.conversation_message(conversation=conv, message_id=request.GET.get("m", ""))
    through = None
    if (
        target is not None
        and not selectors.is_shown(message=target, conversation=conv)
        and selectors.in_flight_reply(conversation=conv) is None
    ):
        through = target
    before = parse_id(request.GET.get("before"))
    return render(request, TEMPLATE, page_context(request, conv, through=through, before=before))


@require_GET
def earlier(request: Request, conversation_id: int) -> HttpResponse:
    """The CHAT_THREAD_PAGE messages of the branch before `?before=<id>` (for htmx; the
    link's own href, the whole page from there, works without JavaScript)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    through = selectors.conversation_message(conversation=conv, message_id=request.GET.get("m", ""))
    thread = selectors.thread(conversation=conv, through=through)
    ids = [m.pk for m in thread]
    before = parse_id(request.GET.get("before"))
    if not request.htmx or before not in ids:
        url = conv.get_absolute_url() + (f"?before={before}" if before in ids else "")
        return redirect(url)
    end = ids.index(before)
    chunk = thread[max(end - settings.CHAT_THREAD_PAGE, 0) : end]
    context = {"conversation": conv, "through": through, "thread": chunk}
    context |= _earlier(thread[:end], chunk)
    return render(request, f"{TEMPLATE}#messages", context)


def _composer_error(
    request: Request,
    conversation: Conversation | None,
    form: MessageForm,
    status: int,
    settings_form: ConversationSettingsForm | None = None,
) -> HttpResponse:
    """Refused input: the composer with its error inline (HTMX), or the page (no JS)."""
    # The branch the page showed, so that the message, once fixed, still follows it.
    after = parse_id(request.POST.get("after"))
    if request.htmx:
        # The composer alone: no thread, no sidebar.
        context = {
            "conversation": conversation,
            "form": form,
            "after": after,
            "settings_form": settings_form
            or ConversationSettingsForm.for_conversation(conversation),
        }
        response = render(request, f"{TEMPLATE}#composer", context, status=status)
        return reswap(retarget(response, "#composer"), "outerHTML")
    context = page_context(request, conversation, form, settings_form=settings_form)
    context["after"] = after
    return render(request, TEMPLATE, context, status=status)


@waits_for_reply
@require_POST
def send(request: Request, conversation_id: int | None = None) -> HttpResponse:
    conv = (
        selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        if conversation_id is not None
        else None
    )
    form = MessageForm(request.POST, request.FILES)
    # A new chat's first message carries its settings (the composer's settings panel).
    settings_form = ConversationSettingsForm(request.POST) if conv is None else None
    settings_valid = settings_form is None or settings_form.is_valid()
    if not form.is_valid() or not settings_valid:
        return _composer_error(request, conv, form, status=422, settings_form=settings_form)
    defaults = chat_services.conversation_defaults()
    try:
        new_conv, question, reply = chat_services.message_send(
            user=request.user,
            conversation=conv,
            after=parse_id(request.POST.get("after")),
            content=form.cleaned_data["content"],
            options=settings_form.options(defaults=defaults) if settings_form else None,
            attachments=form.cleaned_data["attachments"],
        )
    except chat_services.LimitReached as exc:
        # Over the per-minute limit nothing is saved: the text stays in the composer.
        form.add_error("content", exc.message)
        return _composer_error(request, conv, form, status=429)
    except chat_services.ConversationBusy as exc:
        form.add_error("content", exc.message)
        return _composer_error(request, conv, form, status=409)

    if not request.htmx:
        return after_reply(reply, new_conv)

    # What changed, no more: the new messages (in a new conversation, the conversation
    # around them) and the sidebar entry, which moves to the top, out of band.
    thread = [question, reply]
    if conv is None:
        context = {
            "conversation": new_conv,
            "thread": thread,
            "last_id": reply.pk,
            "form": MessageForm(),
            "settings_form": ConversationSettingsForm.for_conversation(new_conv),
        }
        html = render_to_string(f"{TEMPLATE}#chat", context, request=request)
        response = HttpResponse(html + _sidebar_move(request, new_conv, was=None))
        response = reswap(retarget(response, "#chat"), "innerHTML")
        return push_url(response, new_conv.get_absolute_url())
    context = {"thread": thread, "last_id": reply.pk}
    html = render_to_string(f"{TEMPLATE}#messages", context, request=request)
    return HttpResponse(html + _sidebar_move(request, new_conv, was=conv.updated))


def _sidebar_move(request: Request, conversation: Conversation, *, was: datetime | None) -> str:
    """The sidebar's changes, out of band: `conversation` (active at `was` before, None
    if new) on top, and the headings around where it was (one query)."""
    move = history_sidebar.conversation_moved(user=request.user, conversation=conversation, was=was)
    return render_to_string(
        f"{TEMPLATE}#sidebar_move",
        {"conversation": conversation, "move": move},
        request=request,
    )


def _message_response(request: Request, message: Message) -> HttpResponse:
    if not request.htmx:
        return redirect(message.conversation)
    return HttpResponse(render_message(message.pk, request=request))


def render_message(message_id: int, request: HttpRequest | None = None) -> str:
    message = lifecycle.as_seen(Message.objects.get(pk=message_id))
    message.versions = selectors.message_versions(message=message)
    is_last = selectors.message_is_last(message=message)
    return render_to_string(
        f"{TEMPLATE}#message",
        {
            "message": message,
            "last_id": message.pk if is_last else None,
            "title_poll": titles.title_may_change(message=message),
            "sse": events.names(),  # also without a request (the stream's `done`)
        },
        request=request,
    )


@require_POST
def stop(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    reply = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    lifecycle.reply_stop(reply=reply)
    return _message_response(request, reply)


@waits_for_reply
@require_POST
def retry(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """Regenerate the last reply (Retry, for a failed one): the old one stays an alternative."""
    reply = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    try:
        new = chat_services.reply_regenerate(reply=reply)
    except chat_services.NotRetryable as exc:
        return HttpResponse(exc.message, status=400, content_type=TEXT)
    except chat_services.ConversationBusy as exc:
        return busy_answer(exc.message)
    if not request.htmx:
        return after_reply(new, reply.conversation)
    return _thread_response(request, reply.conversation_id)


# --- Branches: edit, switch versions; settings --------------------------------------


def _thread_response(request: Request, conversation_id: int) -> HttpResponse:
    """The branch now shown, swapped in for the thread (htmx)."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    thread = selectors.thread(conversation=conv)
    shown = _window(thread, before=None)
    context = {"conversation": conv, "thread": shown, "last_id": thread[-1].pk if thread else None}
    context |= _earlier(thread, shown)
    html = render_to_string(f"{TEMPLATE}#messages", context, request=request)
    return reswap(retarget(HttpResponse(html), "#thread"), "innerHTML")


@require_GET
def message(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """One message as shown in the thread (htmx: cancelling an edit); the page without JS."""
    found = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    return _message_response(request, found)


@waits_for_reply
@require_http_methods(["GET", "POST"])
def edit(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """A user message sent again with new text, as an alternative: the form, then the send."""
    original = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    if original.role != Message.Role.USER:
        return HttpResponse(chat_services.NotEditable.message, status=400, content_type=TEXT)
    if request.method == "GET":
        form = EditForm(initial={"content": original.content})
        return _edit_form(request, original, form, status=200)
    form = EditForm(request.POST)
    if not form.is_valid():
        return _edit_form(request, original, form, status=422)
    try:
        _question, reply = chat_services.message_edit(
            user=request.user, message=original, content=form.cleaned_data["content"]
        )
    except chat_services.ConversationBusy as exc:
        if request.htmx:
            return busy_answer(exc.message)
        form.add_error("content", exc.message)
        return _edit_form(request, original, form, status=409)
    if not request.htmx:
        return after_reply(reply, original.conversation)
    return _thread_response(request, original.conversation_id)


def _edit_form(request: Request, original: Message, form: EditForm, status: int) -> HttpResponse:
    """The message with its edit form in place of its text: alone (htmx) or in the page."""
    if request.htmx:
        original.versions = selectors.message_versions(message=original)
        context = {"message": original, "editing": original.pk, "edit_form": form}
        response = render(request, f"{TEMPLATE}#message", context, status=status)
        return reswap(retarget(response, f"#m-{original.pk}"), "outerHTML")
    context = page_context(request, original.conversation)
    context |= {"editing": original.pk, "edit_form": form}
    return render(request, TEMPLATE, context, status=status)


@require_POST
def show(request: Request, conversation_id: int, message_id: int) -> HttpResponse:
    """Switch to another version of a message: show its branch (most recent continuation)."""
    target = selectors.message_get(
        user=request.user, conversation_id=conversation_id, message_id=message_id
    )
    try:
        chat_services.conversation_show(message=target)
    except chat_services.ConversationBusy as exc:
        return busy_answer(exc.message)
    if not request.htmx:
        return redirect(f"{target.conversation.get_absolute_url()}#m-{target.pk}")
    return _thread_response(request, conversation_id)


@require_POST
def conversation_settings(request: Request, conversation_id: int) -> HttpResponse:
    """Change the model and generation settings of the conversation's next replies."""
    conv = selectors.conversation_get(user=request.user, conversation_id=conversation_id)
    form = ConversationSettingsForm(request.POST, current_model=conv.model)
    saved = form.is_valid()
    if saved:
        current = ConversationSettings(
            model=conv.model,
            system_prompt=conv.system_prompt,
            temperature=conv.temperature,
            max_tokens=conv.max_tokens,
        )
        conv = chat_services.conversation_update_settings(
            conversation=conv, options=form.options(defaults=current)
        )
        if not request.htmx:
            return redirect(conv)
        form = ConversationSettingsForm.for_conversation(conv)
    context = {"conversation": conv, "settings_form": form, "settings_saved": saved}
    status = 200 if saved else 422
    if request.htmx:
        return render(request, "conversations/settings_panel.html", context, status=status)
    return render(request, TEMPLATE, page_context(request, conv) | context, status=status)


# --- Server-sent events --------------------------------------------------------------


# --- History: rename, delete, titles, search -------------------------------------------


# --- Help -------------------------------------------------------------------------


# --- Accounts -----------------------------------------------------------------------


# --- Errors -------------------------------------------------------------------------


# --- Export and import --------------------------------------------------------------
