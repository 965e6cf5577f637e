from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from conversations.runner import runner
from tests.factories import PASSWORD, UserFactory


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
    settings.OPENAI_BASE_URL = _fake_openai_server.base_url
    settings.OPENAI_API_KEY = "sk-test-key-never-sent-anywhere-but-loopback"
    yield _fake_openai_server
    # Let any generation finish before the next test resets the script.
    runner.wait_idle(15)


class LiveASGIServer:
    def __init__(self) -> None:
        import socket
        import threading

        import uvicorn
        from django.core.asgi import get_asgi_application

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(
            get_asgi_application(), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


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
