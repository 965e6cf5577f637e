"""The middleware stack under ASGI: async where it can be, and the HTMX login redirect."""

from __future__ import annotations

import httpx2
import pytest
from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler

from conversations.models import Message
from conversations.web.middleware import HtmxLoginRedirectMiddleware
from tests.support.factories import MessageFactory, ReplyFactory


@pytest.fixture
def reply(owner) -> Message:
    question = MessageFactory(conversation__owner=owner)
    return ReplyFactory(
        conversation=question.conversation, parent=question, content="Hello there, alice"
    )


def test_it_runs_every_middleware_but_whitenoise_and_those_before_it_async_under_asgi():
    handler = ASGIHandler()
    handler.load_middleware(is_async=True)
    modes: dict[str, bool] = {}
    link = handler._middleware_chain
    while link is not None:
        if hasattr(link, "__wrapped__"):  # convert_exception_to_response
            link = link.__wrapped__
        elif hasattr(link, "func"):  # SyncToAsync
            link = link.func
        elif hasattr(link, "awaitable"):  # AsyncToSync
            link = link.awaitable
        elif hasattr(link, "get_response"):
            modes[type(link).__name__] = iscoroutinefunction(link)
            link = link.get_response
        else:
            break
    assert modes["HtmxLoginRedirectMiddleware"] is True
    # WhiteNoise 6 is sync only: it, and whatever comes before it, run in a thread.
    sync = {name for name, is_async in modes.items() if not is_async}
    assert sync == {"SecurityMiddleware", "WhiteNoiseMiddleware"}


@pytest.mark.django_db(transaction=True)
def test_it_sends_an_expired_htmx_session_to_the_login_page_over_asgi(asgi_server, reply):
    with httpx2.Client(
        base_url=asgi_server.url, cookies={"sessionid": "expired"}, timeout=10
    ) as http:
        http.get("/accounts/login/")
        token = http.cookies["csrftoken"]
        response = http.post(
            f"/c/{reply.conversation_id}/send/",
            data={"content": "hi"},
            headers={"HX-Request": "true", "X-CSRFToken": token, "Referer": asgi_server.url},
        )
        assert response.status_code == 200
        assert response.headers["HX-Redirect"].startswith("/accounts/login/?next=")
        # Without htmx the ordinary redirect is left alone.
        response = http.get(f"/c/{reply.conversation_id}/")
        assert response.status_code == 302
        assert "HX-Redirect" not in response.headers
    assert Message.objects.count() == 2


def test_it_is_a_coroutine_only_when_what_follows_is_one():
    async def async_view(request):
        raise NotImplementedError

    def sync_view(request):
        raise NotImplementedError

    assert iscoroutinefunction(HtmxLoginRedirectMiddleware(async_view))
    assert not iscoroutinefunction(HtmxLoginRedirectMiddleware(sync_view))
