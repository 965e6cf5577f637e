from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("send/", views.send, name="send_new"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("c/<int:conversation_id>/send/", views.send, name="send"),
    path(
        "c/<int:conversation_id>/m/<int:message_id>/stream/",
        views.reply_stream,
        name="reply_stream",
    ),
    path("c/<int:conversation_id>/m/<int:message_id>/stop/", views.stop, name="stop"),
    path("c/<int:conversation_id>/m/<int:message_id>/retry/", views.retry, name="retry"),
    path("accounts/signup/", views.signup, name="signup"),
]
