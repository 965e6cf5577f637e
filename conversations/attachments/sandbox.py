"""Parse a PDF or DOCX in a child process limited in memory, CPU and wall-clock time.

Parsers of hostile files can loop, inflate gigabytes or crash: in a child (`_parse_child`,
a plain script run with `python -I`) that costs one upload an error, never the server.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_parse_child.py")


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_chars: int
    max_unpacked_bytes: int
    memory_bytes: int
    seconds: float
    # Children of this process at once: each may take `memory_bytes`.
    parallel: int = 2


class ParseFailed(Exception):
    """The child could not read the file: `reason` is one of the child's reasons, or
    "timeout" / "memory" / "crashed" when it was ended or died, "busy" when no child
    could be started within the time limit (as many as allowed were running)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_out_of_process(kind: str, data: bytes, limits: Limits) -> dict[str, Any]:
    """The child's result for `data` (`kind` "pdf" or "docx"): text, pages, page_starts.

    Raises ParseFailed. The child gets the wall-clock limit and a CPU limit of the same
    seconds (rounded up); it is killed at the first one reached. At most `limits.parallel`
    children run at once, so many uploads at once cannot take all the memory; a parse
    waits for a turn, up to the same limit.
    """
    started = time.monotonic()
    slots = _slots(max(1, limits.parallel))
    if not slots.acquire(timeout=limits.seconds):
        raise ParseFailed("busy")
    try:
        remaining = max(0.5, limits.seconds - (time.monotonic() - started))
        return _run(kind, data, limits, remaining)
    finally:
        slots.release()


@functools.cache
def _slots(parallel: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(parallel)


def _run(kind: str, data: bytes, limits: Limits, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable,
        "-I",  # no environment variables, no user site, not the current folder
        str(CHILD),
        kind,
        str(limits.max_pages),
        str(limits.max_chars),
        str(limits.max_unpacked_bytes),
        str(limits.memory_bytes),
        str(max(1, int(limits.seconds + 0.999))),
    ]
    try:
        finished = subprocess.run(  # noqa: S603 - our own script, fixed arguments
            command,
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=seconds,
            env={"LC_ALL": "C.UTF-8"},
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # run() has killed and reaped the child.
        raise ParseFailed("timeout") from None
    if finished.returncode != 0:
        code = finished.returncode
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            raise ParseFailed("timeout", f"signal {-code}")
        # Out of address space before it could answer (Python exits 1 on MemoryError at
        # start-up), or a crash in a C extension.
        raise ParseFailed("crashed", f"exit {code}")
    try:
        result = json.loads(finished.stdout)
    except ValueError:
        raise ParseFailed("crashed", "no answer") from None
    if not isinstance(result, dict) or not result.get("ok"):
        reason = result.get("reason") if isinstance(result, dict) else None
        detail = result.get("detail", "") if isinstance(result, dict) else ""
        raise ParseFailed(str(reason or "crashed"), str(detail))
    return result
