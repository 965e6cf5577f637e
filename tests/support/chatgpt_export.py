"""Builds ChatGPT data exports in code, shaped like the real ones (2024-2025 exports)."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

T0 = 1_717_000_000.125  # 2024-05-29T16:26:40.125Z


def text(*parts: Any) -> dict[str, Any]:
    return {"content_type": "text", "parts": list(parts)}


class ChatGPTConversation:
    """A conversation's mapping tree, built node by node.

    Starts like a real export: a root node without a message, then ChatGPT's own hidden,
    empty system message. `add()` returns the new node's id, to hang children on.
    """

    def __init__(
        self,
        title: str = "A conversation",
        *,
        conversation_id: str | None = None,
        create_time: float = T0,
        model: str | None = "gpt-4o",
    ) -> None:
        self.id = conversation_id or str(uuid.uuid4())
        self.title = title
        self.create_time = create_time
        self.model = model
        self.clock = create_time
        self.mapping: dict[str, dict[str, Any]] = {}
        self.root = self._node("client-created-root", None, None)
        self.system = self.add(
            self.root,
            "system",
            content=text(""),
            hidden=True,
        )

    def _node(self, node_id: str, parent: str | None, message: dict | None) -> str:
        self.mapping[node_id] = {
            "id": node_id,
            "message": message,
            "parent": parent,
            "children": [],
        }
        if parent is not None:
            self.mapping[parent]["children"].append(node_id)
        return node_id

    def add(
        self,
        parent: str,
        role: str,
        body: str | None = None,
        *,
        content: dict[str, Any] | None = None,
        hidden: bool = False,
        model: str | None = None,
        create_time: float | str | None = "auto",
        node_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        node_id = node_id or str(uuid.uuid4())
        if create_time == "auto":
            self.clock += 1.5
            create_time = self.clock
        meta: dict[str, Any] = dict(metadata or {})
        if hidden:
            meta["is_visually_hidden_from_conversation"] = True
        if role == "assistant":
            meta.setdefault("model_slug", model or self.model)
        message = {
            "id": node_id,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": create_time,
            "update_time": None,
            "content": content if content is not None else text(body or ""),
            "status": "finished_successfully",
            "end_turn": role == "assistant" or None,
            "weight": 1.0,
            "metadata": meta,
            "recipient": "all",
            "channel": None,
        }
        return self._node(node_id, parent, message)

    def build(self, current: str | None = None) -> dict[str, Any]:
        leaf = current
        if leaf is None:
            leaf = list(self.mapping)[-1]
        return {
            "title": self.title,
            "create_time": self.create_time,
            "update_time": self.clock + 10,
            "mapping": self.mapping,
            "moderation_results": [],
            "current_node": leaf,
            "plugin_ids": None,
            "conversation_id": self.id,
            "conversation_template_id": None,
            "gizmo_id": None,
            "is_archived": False,
            "safe_urls": [],
            "default_model_slug": self.model,
            "id": self.id,
        }


def simple(title: str = "Simple", *, turns: int = 2, conversation_id: str | None = None) -> dict:
    c = ChatGPTConversation(title, conversation_id=conversation_id)
    node = c.system
    for i in range(turns):
        node = c.add(node, "user", f"Question {i} of {title}")
        node = c.add(node, "assistant", f"Answer {i} of {title}")
    return c.build()


def dumps(conversations: list[dict]) -> bytes:
    return json.dumps(conversations).encode()


def zipped(files: dict[str, bytes]) -> bytes:
    """A zip like ChatGPT's: the JSON files next to chat.html, user.json and media."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("user.json", json.dumps({"id": "user-abc", "email": "a@example.com"}))
        archive.writestr("chat.html", "<html><body>Your conversations</body></html>")
        archive.writestr("file-abc123-image.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
