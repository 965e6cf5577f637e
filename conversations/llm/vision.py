"""Which models take images, and what an image costs in a model's context.

A model takes images when one of CHAT_VISION_MODELS' patterns matches its name, unless a
server has refused images for it since this process started (remembered here). The local
model never does. Pure apart from that memory: no rows, no requests.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings

from conversations.llm.base import LOCAL_PREFIX

# Models a server refused images for, in this process (a restart forgets them).
_REFUSED: set[str] = set()
# What servers say when they will not take an image part ("image_url is only supported by
# certain models", "does not support image input", "vision is not supported"...).
_MENTIONS_IMAGES = re.compile(r"image|vision|multimodal|multi-modal", re.IGNORECASE)


def takes_images(model: str) -> bool:
    """Whether `model` is sent images (the others get a note in their place)."""
    if model.startswith(LOCAL_PREFIX) or model in _REFUSED:
        return False
    name = model.lower()
    return any(fnmatch.fnmatchcase(name, pattern.strip().lower()) for pattern in _patterns())


def _patterns() -> list[str]:
    return [p for p in settings.CHAT_VISION_MODELS if p.strip()]


def remember_refusal(model: str) -> None:
    """A server refused images for `model`: from now on it is treated as text-only."""
    _REFUSED.add(model)


def forget_refusals() -> None:
    _REFUSED.clear()


def mentions_images(text: str) -> bool:
    """Whether a server's refusal is about images."""
    return bool(_MENTIONS_IMAGES.search(text))


def has_image_parts(messages: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any message carries an `image_url` content part."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


def image_tokens(width: int, height: int) -> int:
    """Tokens an image of `width` x `height` takes in the context.

    CHAT_IMAGE_TOKENS when set; otherwise OpenAI's formula for "high" detail: scaled to fit
    2048 x 2048, then so that its shortest side is at most 768, it costs 85 tokens plus
    170 per 512-pixel tile.
    """
    if settings.CHAT_IMAGE_TOKENS:
        return int(settings.CHAT_IMAGE_TOKENS)
    w, h = float(max(width, 1)), float(max(height, 1))
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
