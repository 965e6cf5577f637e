"""Staff see what was attached (names, types, sizes, hashes) on the conversation and the
message pages, in a bounded number of queries."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.attachments.test_export_import import attach
from tests.support import images
from tests.support.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db


def test_the_conversation_and_message_pages_list_the_attachments(
    staff_client, owner, django_assert_max_num_queries
):
    conversation = ConversationFactory(owner=owner)
    messages = [MessageFactory(conversation=conversation) for _ in range(3)]
    found = [
        attach(m, f"pic{i}.png", images.png(), caption=f"caption {i}")
        for i, m in enumerate(messages)
    ]
    with django_assert_max_num_queries(14):
        page = staff_client.get(
            reverse("admin:conversations_conversation_change", args=[conversation.pk])
        )
    html = page.content.decode()
    assert page.status_code == 200
    for attachment in found:
        assert attachment.name in html and attachment.sha256 in html
    assert "64 × 48" in html and "caption 2" in html
    page = staff_client.get(reverse("admin:conversations_message_change", args=[messages[0].pk]))
    assert "pic0.png" in page.content.decode() and "pic1.png" not in page.content.decode()


def test_the_system_check_refuses_attachment_limits_that_cannot_work(settings, tmp_path):
    from conversations.checks import check_attachments

    assert check_attachments(None) == []
    settings.CHAT_IMAGE_MAX_SIDE = 10
    settings.CHAT_ATTACHMENT_MAX_BYTES = 0
    errors = check_attachments(None)
    assert [e.id for e in errors] == ["chatsite.E004", "chatsite.E004"]
    assert "CHAT_ATTACHMENT_MAX_BYTES" in errors[0].msg and "CHAT_IMAGE_MAX_SIDE" in errors[1].msg
    settings.CHAT_IMAGE_MAX_SIDE = 2048
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    settings.MEDIA_ROOT = settings.STATIC_ROOT
    assert [e.id for e in check_attachments(None)] == ["chatsite.E005"]


def test_staff_who_may_view_attachments_open_the_file_from_the_admin(
    staff_client, owner, client, django_user_model
):
    message = MessageFactory(conversation=ConversationFactory(owner=owner))
    picture = attach(message, "pic.png", images.png(), caption="a pic")
    url = reverse("admin:conversations_attachment_file", args=[picture.pk])
    page = staff_client.get(
        reverse("admin:conversations_conversation_change", args=[message.conversation_id])
    )
    assert f'href="{url}"' in page.content.decode()
    opened = staff_client.get(url)
    assert opened.status_code == 200
    assert opened["Content-Type"] == "image/png"
    assert opened["X-Content-Type-Options"] == "nosniff"
    with picture.file.open("rb") as stored:
        assert opened.content == stored.read()
    assert (
        staff_client.get(reverse("admin:conversations_attachment_file", args=[10**9])).status_code
        == 404
    )
    # Staff without the permission to view attachments: refused.
    clerk = django_user_model.objects.create_user("clerk", password="x" * 16, is_staff=True)
    client.force_login(clerk)
    assert client.get(url).status_code == 403
    # Anyone else is sent to the admin's login.
    client.logout()
    assert client.get(url).status_code == 302
