"""A server starts without the OpenAI SDK (half of what it would import) and loads it just
after, in the background: it answers sooner, and the first reply does not wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, time
import chatsite.asgi
print("at start:", "openai" in sys.modules, flush=True)
deadline = time.monotonic() + 20
def loaded():
    # In sys.modules from the start of its import: loaded once its names are defined.
    return hasattr(sys.modules.get("conversations.llm.backends.openai"), "server_label")
while not loaded() and time.monotonic() < deadline:
    time.sleep(0.05)
print("soon after:", "openai" in sys.modules, flush=True)
"""


def test_the_sdk_is_loaded_after_the_start_not_during_it(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DEBUG": "true",
        "SECRET_KEY": "x-not-secret-long-enough-for-checks-000000000000",
        "CHAT_LOG_FILE": str(tmp_path / "chat.log"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["at start: False", "soon after: True"], done.stdout
