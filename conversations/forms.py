from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
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


class ImportForm(forms.Form):
    file = forms.FileField(
        label="Export file",
        error_messages={
            "required": "Choose a file to import.",
            "empty": "The file is empty.",
            "invalid": "No file was received: choose one and try again.",
        },
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,.json"}),
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.CHAT_IMPORT_MAX_BYTES
        if upload.size is not None and upload.size > limit:
            raise forms.ValidationError(
                f"That file is {upload.size / 2**20:.0f} MiB; the largest import is "
                f"{limit / 2**20:.0f} MiB.",
                code="too_big",
            )
        return upload


class AdminImportForm(ImportForm):
    username = forms.CharField(label="Import into the account of", max_length=150)
    field_order = ["username", "file"]

    def clean_username(self) -> Any:
        user_model = get_user_model()
        username = self.cleaned_data["username"].strip()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise forms.ValidationError(f"There is no user {username!r}.")
        return user
