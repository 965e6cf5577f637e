from __future__ import annotations

from django.urls import path, register_converter

from . import views


class IdConverter:
    """A database id: at most 18 digits, so it always fits a 64-bit integer.

    With `int`, a longer id reaches the database and SQLite raises OverflowError (a 500).
    """

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    # Browsers ask for it on every page (the admin's too); ours are told where it is.
    path("favicon.ico", views.favicon),
    path("", views.chat, name="chat"),
    path("send/", views.send, name="send_new"),
    path("conversations/", views.older_conversations, name="older_conversations"),
    path("c/<id:conversation_id>/", views.conversation, name="conversation"),
    path("c/<id:conversation_id>/send/", views.send, name="send"),
    path(
        "c/<id:conversation_id>/m/<id:message_id>/stream/",
        views.reply_stream,
        name="reply_stream",
    ),
    path("c/<id:conversation_id>/m/<id:message_id>/stop/", views.stop, name="stop"),
    path("c/<id:conversation_id>/m/<id:message_id>/retry/", views.retry, name="retry"),
    path("help/models/", views.help_models, name="help_models"),
    path("c/<id:conversation_id>/settings/", views.conversation_settings, name="settings"),
    path("c/<id:conversation_id>/m/<id:message_id>/", views.message, name="message"),
    path("c/<id:conversation_id>/m/<id:message_id>/edit/", views.edit, name="edit"),
    path("c/<id:conversation_id>/m/<id:message_id>/show/", views.show, name="show"),
    path("c/<id:conversation_id>/rename/", views.rename, name="rename"),
    path("c/<id:conversation_id>/delete/", views.delete, name="delete"),
    path("c/<id:conversation_id>/title/", views.conversation_title, name="conversation_title"),
    path("search/", views.search, name="search"),
    path("accounts/signup/", views.signup, name="signup"),
    # Export and import
    path("c/<id:conversation_id>/export/<str:fmt>/", views.export_conversation, name="export"),
    path("export/<str:fmt>/", views.export_all, name="export_all"),
    path("import/", views.import_page, name="import"),
    path("import/<id:job_id>/", views.import_job, name="import_job"),
]
