"""Forms: the composer, the edit and rename forms, per-conversation settings, import uploads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import MaxLengthValidator

from conversations.attachments import services as attachment_services
from conversations.llm import registry as llm
from conversations.options import ConversationSettings

if TYPE_CHECKING:
    from .models import Conversation


# What the file picker offers (a hint: what a file is, is read from its bytes).
ACCEPT = (
    "image/png,image/jpeg,image/webp,image/gif,application/pdf,.pdf,.docx,text/*,"
    ".txt,.md,.markdown,.csv,.json,.py,.js,.ts,.html,.css,.sql,.sh,.yaml,.yml,.toml,.xml"
)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Any number of files; what each is, `clean_attachments` finds out."""

    def clean(self, data: Any, initial: Any = None) -> Any:
        if not data:
            return []
        return list(data) if isinstance(data, list | tuple) else [data]


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
            }
        ),
    )

    attachments = MultipleFileField(
        label="Attach files",
        required=False,
        widget=MultipleFileInput(attrs={"accept": ACCEPT, "class": "composer-files"}),
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

    def clean_attachments(self) -> list[attachment_services.Prepared]:
        """Every attached file checked and prepared (images cleaned), or the first error:
        nothing of the message is saved unless all of them are good."""
        uploads = self.cleaned_data.get("attachments") or []
        captions = self.data.getlist("caption") if hasattr(self.data, "getlist") else []
        try:
            return attachment_services.prepare(uploads, captions)
        except attachment_services.AttachmentRejected as exc:
            raise forms.ValidationError(
                exc.user_message + " Nothing was sent: attach the files again.", code="file"
            ) from None


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


class EditForm(MessageForm):
    """A user message sent again with new text (as an alternative to the original);
    it keeps the original's attachments (none are added here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["attachments"]


class ConversationSettingsForm(forms.Form):
    """The model and generation settings of a conversation (blank: the site's default)."""

    use_required_attribute = False

    model = forms.ChoiceField(
        label="Model",
        required=False,
        error_messages={"invalid_choice": "“%(value)s” is not a model this server offers."},
    )
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Instructions the model gets before the conversation.",
    )
    temperature = forms.FloatField(
        label="Temperature",
        required=False,
        min_value=0,
        max_value=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
        error_messages={"invalid": "Enter a number from 0 to 2."},
    )
    max_tokens = forms.IntegerField(
        label="Maximum reply length (tokens)",
        required=False,
        min_value=1,
        max_value=32768,
        widget=forms.NumberInput(attrs={"min": "1", "max": "32768"}),
        error_messages={"invalid": "Enter a whole number from 1 to 32768."},
    )

    def __init__(self, *args: Any, current_model: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(option.id, option.label) for option in llm.available_models()]
        # The default and the conversation's own model stay choosable even when the server
        # offers them no more (or nothing is configured yet): saving never changes it silently.
        for model in (current_model, llm.default_model()):
            if model and model not in dict(choices):
                choices.append((model, model))
        cast("forms.ChoiceField", self.fields["model"]).choices = choices
        default = f"default: {settings.CHAT_TEMPERATURE:g}" if settings.CHAT_TEMPERATURE else ""
        self.fields["temperature"].widget.attrs["placeholder"] = default or "model's default"
        limit = settings.CHAT_MAX_TOKENS
        self.fields["max_tokens"].widget.attrs["placeholder"] = (
            f"default: {limit}" if limit else "no limit"
        )
        self.fields["system_prompt"].validators.append(
            MaxLengthValidator(
                settings.CHAT_MAX_MESSAGE_CHARS,
                message="That system prompt is too long: the limit is %(limit_value)s characters.",
            )
        )

    @classmethod
    def for_conversation(cls, conversation: Conversation | None) -> ConversationSettingsForm:
        """An unbound form showing a conversation's settings (a new one's: the defaults)."""
        if conversation is None:
            initial = {"model": llm.default_model(), "system_prompt": settings.CHAT_SYSTEM_PROMPT}
            return cls(initial=initial)
        return cls(
            initial={
                "model": conversation.model,
                "system_prompt": conversation.system_prompt,
                "temperature": conversation.temperature,
                "max_tokens": conversation.max_tokens,
            },
            current_model=conversation.model,
        )

    def options(self, *, defaults: ConversationSettings) -> ConversationSettings:
        """The cleaned settings; a field not sent at all (a bare message) keeps `defaults`."""
        data = self.cleaned_data
        sent = set(self.data)
        return ConversationSettings(
            model=data["model"] or defaults.model,
            system_prompt=data["system_prompt"]
            if "system_prompt" in sent
            else defaults.system_prompt,
            temperature=data["temperature"] if "temperature" in sent else defaults.temperature,
            max_tokens=data["max_tokens"] if "max_tokens" in sent else defaults.max_tokens,
        )


class RenameForm(forms.Form):
    # Validation only: history.html writes the input itself (never this form's widget).
    title = forms.CharField(
        label="Title",
        error_messages={"required": "Give the conversation a title."},
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
