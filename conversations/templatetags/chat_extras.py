from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from conversations.rendering import render_markdown

register = template.Library()


@register.filter(name="markdown", is_safe=True)
def markdown(text: str) -> SafeString:
    """`{{ message.content|markdown }}`: a reply's Markdown as sanitized HTML."""
    return render_markdown(str(text))
