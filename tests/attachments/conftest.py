from __future__ import annotations

import pytest

from conversations.llm import vision


@pytest.fixture
def vision_model(settings):
    """New conversations use a model that takes images (CHAT_VISION_MODELS: fake-vision*)."""
    settings.OPENAI_MODEL = "fake-vision-model"
    vision.forget_refusals()
    yield "fake-vision-model"
    vision.forget_refusals()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """Every test's attachments in a folder of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"
