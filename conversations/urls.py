"""The app's URLs, grouped by subject; every id segment is `<id:...>` (params.IdConverter)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, register_converter

from .params import IdConverter
from .web import attachments, chat, history, pages, stream, transfer

register_converter(IdConverter, "id")

message_urls: list[URLPattern | URLResolver] = [
    path("", chat.message, name="message"),
    path("stream/", stream.reply_stream, name="reply_stream"),
    path("stop/", chat.stop, name="stop"),
    path("retry/", chat.retry, name="retry"),
    path("edit/", chat.edit, name="edit"),
    path("show/", chat.show, name="show"),
]

conversation_urls: list[URLPattern | URLResolver] = [
    path("", chat.conversation, name="conversation"),
    path("send/", chat.send, name="send"),
    path("settings/", chat.conversation_settings, name="settings"),
    path("rename/", history.rename, name="rename"),
    path("delete/", history.delete, name="delete"),
    path("title/", history.conversation_title, name="conversation_title"),
    path("earlier/", chat.earlier, name="earlier"),
    path("export/<str:fmt>/", transfer.export_conversation, name="export"),
    path("m/<id:message_id>/", include(message_urls)),
    path("a/<id:attachment_id>/", attachments.attachment, name="attachment"),
    path("a/<id:attachment_id>/thumbnail/", attachments.thumbnail, name="attachment_thumbnail"),
]

urlpatterns = [
    # Browsers ask for it on every page (the admin's too); ours are told where it is.
    path("favicon.ico", pages.favicon),
    path("", chat.chat, name="chat"),
    path("send/", chat.send, name="send_new"),
    path("c/<id:conversation_id>/", include(conversation_urls)),
    path("conversations/", history.older_conversations, name="older_conversations"),
    path("search/", history.search, name="search"),
    path("export/<str:fmt>/", transfer.export_all, name="export_all"),
    path("import/", transfer.import_page, name="import"),
    path("import/<id:job_id>/", transfer.import_job, name="import_job"),
    path("help/models/", pages.help_models, name="help_models"),
    path("accounts/signup/", pages.signup, name="signup"),
]
