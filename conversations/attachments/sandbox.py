"""Parse a PDF or DOCX in a child process limited in memory, CPU and wall-clock time.

Parsers of hostile files can loop, inflate gigabytes or crash: in a child (`_parse_child`,
a plain script run with `python -I`) that costs one upload an error, never the server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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


class ParseFailed(Exception):
    """The child could not read the file: `reason` is one of the child's reasons, or
    "timeout" / "memory" / "crashed" when it was ended or died."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_out_of_process(kind: str, data: bytes, limits: Limits) -> dict[str, Any]:
    """The child's result for `data` (`kind` "pdf" or "docx"): text, pages, page_starts.

    Raises ParseFailed. The child gets the wall-clock limit and a CPU limit of the same
    seconds (rounded up); it is killed at the first one reached.
    """
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
            timeout=limits.seconds,
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
