from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Attachments' files land in the test's own folder, never in the checkout."""
    settings.MEDIA_ROOT = tmp_path / "media"
