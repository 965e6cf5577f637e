"""Settings of a web process a test starts (tests/generation/test_multiprocess.py): the
test run's own, with what the test gives it through CHATSITE_WORKER_* variables (the run's
settings pin every chatsite variable, so these cannot come under their own names)."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

OPENAI_BASE_URL = os.environ["CHATSITE_WORKER_OPENAI_BASE_URL"]
LLM_BACKEND = "openai"
CHAT_STALE_AFTER = float(os.environ.get("CHATSITE_WORKER_STALE_AFTER", "4"))
CHAT_SWEEP_INTERVAL = float(os.environ.get("CHATSITE_WORKER_SWEEP_INTERVAL", "1"))
