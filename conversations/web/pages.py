"""Pages that are not about one conversation: help, favicon, sign-up, the 400 handler."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from conversations.web.htmx import TEXT, Request

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def readme_section(heading: str) -> str:
    """One `## heading` section of the README (the text up to the next `## `)."""
    readme = Path(settings.BASE_DIR) / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return ""
    start = text.find(f"\n## {heading}\n")
    if start == -1:
        return ""
    body = text[start + len(heading) + 5 :]
    end = body.find("\n## ")
    return (body if end == -1 else body[:end]).strip()


@require_GET
def help_models(request: Request) -> HttpResponse:
    """The README's "Connecting a model" section, served by the app (it works offline)."""
    return render(
        request,
        "conversations/help.html",
        {"title": "Connecting a model", "text": readme_section("Connecting a model")},
    )


@login_not_required
@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page (the admin's too): point them at ours."""
    return redirect(static("chatsite/favicon.svg"), permanent=True)


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is switched off on this server.")
    if request.user.is_authenticated:
        return redirect("chat")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # The new account has no failed logins to check: straight to the model backend.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(reverse("chat"))
    return render(request, "registration/signup.html", {"form": form})


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400. A post over DATA_UPLOAD_MAX_MEMORY_SIZE is a message far too long: say so.

    The composer shows a text/plain error body as it is; other 400s get the usual page,
    rendered without Django's CSRF-protected default view: that one reads the form again,
    and a form that could not be read (a charset other than UTF-8, say) then made a 500.
    """
    if not isinstance(exception, RequestDataTooBig):
        return HttpResponse(render_to_string("400.html"), status=400)
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if request.headers.get("HX-Request") == "true":
        text = f"That message is too long to send (the limit is {limit} characters)."
        return HttpResponse(text, status=413, content_type=TEXT)
    return HttpResponse(render_to_string("413.html", {"limit": limit}), status=413)
