from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from conversations import llm
from conversations.runner import runner
from tests.factories import PASSWORD, UserFactory
from tests.servers import LiveASGIServer


@pytest.fixture
def owner(db):
    return UserFactory(username="alice")


@pytest.fixture
def stranger(db):
    return UserFactory(username="mallory")


@pytest.fixture
def staff(db):
    return UserFactory(username="sam", is_staff=True, is_superuser=True)


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return _login(owner)


@pytest.fixture
def stranger_client(stranger) -> Client:
    return _login(stranger)


@pytest.fixture
def staff_client(staff) -> Client:
    return _login(staff)


@pytest.fixture(autouse=True)
def _no_generation_left_running() -> Iterator[None]:
    """A test must not leave a reply generating into the next test's database."""
    yield
    assert runner.wait_idle(15), f"generations still running: {runner.active()}"


# --- The fake model server and a real ASGI server -------------------------------------


@pytest.fixture(scope="session")
def _fake_openai_server():
    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(_fake_openai_server, settings):
    """A real OpenAI-compatible server on 127.0.0.1, scripted per test; the app points at it."""
    _fake_openai_server.reset()
    llm._NO_STREAM_OPTIONS.clear()
    settings.OPENAI_BASE_URL = _fake_openai_server.base_url
    settings.OPENAI_API_KEY = "sk-test-key-never-sent-anywhere-but-loopback"
    yield _fake_openai_server
    # Let any generation finish before the next test resets the script.
    runner.wait_idle(15)


@pytest.fixture(scope="session")
def _asgi_server(django_db_setup, django_db_blocker):
    server = LiveASGIServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def asgi_server(_asgi_server, transactional_db):
    """chatsite served over real HTTP by uvicorn in a thread (ASGI, so replies stream)."""
    return _asgi_server
