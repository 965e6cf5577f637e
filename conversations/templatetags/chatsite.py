"""The project's template tags and filters: `{% load chatsite %}`."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.utils.safestring import SafeString

from conversations.llm import registry as llm
from conversations.llm.backends import local
from conversations.llm.base import LOCAL_PREFIX
from conversations.models import Conversation
from conversations.rendering import render_markdown, split_blocks

register = template.Library()


@register.inclusion_tag("conversations/model_banner.html", takes_context=True)
def model_banner(
    context: template.Context, conversation: Conversation | None = None
) -> dict[str, Any]:
    """Which backend and model answer here: a local model says it runs offline.

    Only staff see which server answers (OPENAI_BASE_URL): it can name internal hosts.
    """
    if not llm.is_configured():
        local_wanted = settings.LLM_BACKEND != "openai"
        return {"kind": "none", "reason": local.unavailable_reason() if local_wanted else ""}
    model = conversation.model if conversation is not None and conversation.model else ""
    option = llm.model_option(model or llm.default_model())
    if option.backend == "local":
        info = local.model_info()
        if info is None:
            return {"kind": "local_missing", "reason": local.unavailable_reason()}
        return {"kind": "local", "label": info.label}
    if not llm.remote_configured() or settings.LLM_BACKEND == "local":
        return {"kind": "remote_missing", "model": option.id}
    user = context.get("user")
    staff = bool(user is not None and getattr(user, "is_staff", False))
    return {"kind": "remote", "label": option.label, "server": llm.server_label() if staff else ""}


@register.filter
def model_label(model: str) -> str:
    """A model id as people read it: "SmolLM2-135M-Instruct (local)", not "local:….Q4_1"."""
    if model.startswith(LOCAL_PREFIX):
        return f"{local.label(model.removeprefix(LOCAL_PREFIX))} (local)"
    return model


@register.filter(name="stream_parts")
def stream_parts(text: str) -> tuple[SafeString, SafeString]:
    """`{{ message.content|stream_parts }}`: a streaming reply's finished blocks and its
    open block, each as sanitized HTML (as the stream's `block` and `tail` events are)."""
    finished, open_block = split_blocks(str(text))
    return render_markdown(finished), render_markdown(open_block)


@register.filter(name="markdown", is_safe=True)
def markdown(text: str) -> SafeString:
    """`{{ message.content|markdown }}`: a reply's Markdown as sanitized HTML."""
    return render_markdown(str(text))
