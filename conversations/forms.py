from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator


class MessageForm(forms.Form):
    # The server says what is wrong with an empty message; a browser tooltip would not.
    use_required_attribute = False

    content = forms.CharField(
        label="Message",
        error_messages={"required": "Type a message before sending."},
        widget=forms.Textarea(
            attrs={
                "rows": 1,
                "placeholder": "Send a message",
                "aria-label": "Message",
                "autofocus": True,
            }
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A validator rather than max_length: the widget gets no maxlength attribute,
        # because a browser would silently cut off a long paste instead of saying so.
        self.fields["content"].validators.append(
            MaxLengthValidator(
                settings.CHAT_MAX_MESSAGE_CHARS,
                message=(
                    "That message is too long: the limit is %(limit_value)s characters "
                    "and it has %(show_value)s."
                ),
            )
        )


class RenameForm(forms.Form):
    use_required_attribute = False

    title = forms.CharField(
        label="Title",
        error_messages={"required": "Give the conversation a title."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "aria-label": "New title"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A validator, not max_length: a browser would silently cut a longer title.
        self.fields["title"].validators.append(
            MaxLengthValidator(
                200,
                message=(
                    "That title is too long: the limit is %(limit_value)s characters "
                    "and it has %(show_value)s."
                ),
            )
        )
