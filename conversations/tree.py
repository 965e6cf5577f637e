"""Pure functions over a conversation's messages as a tree: children, the path to a
message, the shown and the newest leaf, a message's versions. No queries.
"""

from __future__ import annotations

from conversations.models import Conversation, Message, Versions


def children(messages: list[Message]) -> dict[int | None, list[Message]]:
    """Each message's children, oldest first (`messages` come ordered by created, id)."""
    children: dict[int | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    return children


def newest_leaf_under(message: Message, children: dict[int | None, list[Message]]) -> Message:
    """Descend from `message`, taking the most recently created child at each step."""
    seen = {message.pk}
    while children.get(message.pk):
        message = children[message.pk][-1]
        if message.pk in seen:  # a cycle (only hand-edited data could make one)
            break
        seen.add(message.pk)
    return message


def shown_leaf(
    conversation: Conversation,
    messages: list[Message],
    children: dict[int | None, list[Message]],
) -> Message | None:
    by_id = {m.pk: m for m in messages}
    current = by_id.get(conversation.current_id) if conversation.current_id else None
    if current is not None:
        return newest_leaf_under(current, children)
    leaves = [m for m in messages if m.pk not in children]
    return max(leaves, key=lambda m: (m.created, m.pk)) if leaves else None


def path_to(leaf: Message | None, by_id: dict[int, Message]) -> list[Message]:
    """Root to `leaf`, following parents."""
    path: list[Message] = []
    seen: set[int] = set()
    node = leaf
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        path.append(node)
        node = by_id.get(node.parent_id) if node.parent_id is not None else None
    path.reverse()
    return path


def versions(message: Message, siblings: list[Message]) -> Versions:
    same = [m.pk for m in siblings if m.role == message.role]
    index = same.index(message.pk)
    return Versions(
        index=index + 1,
        count=len(same),
        previous=same[index - 1] if index > 0 else None,
        next=same[index + 1] if index + 1 < len(same) else None,
    )
