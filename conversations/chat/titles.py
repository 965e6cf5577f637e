"""Automatic titles: after a conversation's first complete reply, a small request asks
the model for a short title. Any failure keeps the provisional one, silently; a title
the user set is never replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection

from conversations.generation.runner import on_db_thread, runner
from conversations.llm import registry as llm
from conversations.llm.base import LLMError
from conversations.models import Conversation, Message
from conversations.text import strip_nul

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

# Futures of the automatic titles this process is generating, by conversation id.
_titles_pending: dict[int, Future[None]] = {}

TITLE_MAX_CHARS = 60


TITLE_INSTRUCTION = (
    "Write a short title (at most 6 words) for the conversation below. Answer with the "
    "title only: no quotes, no full stop, no explanation."
)


def clean_title(text: str) -> str:
    """A model's answer made into a title: one line, no quotes or "Title:", at most 60 chars."""
    lines = [line.strip() for line in strip_nul(text).splitlines() if line.strip()]
    title = lines[0] if lines else ""
    title = re.sub(r"^[*_#\s]*title\s*[*_]*\s*[:\-–]", "", title, flags=re.IGNORECASE)
    title = title.strip(" \t*_`\"'“”‘’«»").rstrip(".").strip(" \t*_`\"'“”‘’«»")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return title


@on_db_thread
def _title_prompt(reply_id: int) -> tuple[int, str, list[dict[str, str]]] | None:
    """What to ask for a title after `reply`, or None if this conversation gets none.

    Only after the first complete reply of a conversation whose title the user never set.
    """
    try:
        reply = Message.objects.select_related("conversation").get(pk=reply_id)
        conversation = reply.conversation
        if conversation.title_set_by_user or reply.status != Message.Status.COMPLETE:
            return None
        if (
            conversation.messages.filter(
                role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE, pk__lt=reply.pk
            )
            .exclude(pk=reply.pk)
            .exists()
        ):
            return None
        question = (
            conversation.messages.filter(role=Message.Role.USER, pk__lt=reply.pk)
            .only("content")
            .first()
        )
        if question is None:
            return None
        # The question alone, asked plainly: small local models answer a transcript with
        # a comment on it ("Your answer is already…"), and the question says what it is about.
        ask = f"Write a title of 3 to 6 words for this request:\n\n{question.content[:1500]}"
        messages = [
            {"role": "system", "content": TITLE_INSTRUCTION},
            {"role": "user", "content": ask},
        ]
        return conversation.pk, reply.model or conversation.model, messages
    finally:
        connection.close()


@on_db_thread
def _title_save(conversation_id: int, title: str) -> bool:
    try:
        # Conditional: a rename that lands while the model was asked wins.
        return bool(
            Conversation.objects.filter(pk=conversation_id, title_set_by_user=False).update(
                title=title
            )
        )
    finally:
        connection.close()


async def _title_generate(conversation_id: int, model: str, messages: list[dict[str, str]]) -> None:
    text = ""
    try:
        async with asyncio.timeout(settings.CHAT_TITLE_TIMEOUT):
            async for chunk in llm.stream_chat(
                messages=messages, model=model, temperature=0.2, max_tokens=20
            ):
                text += chunk.text
    except (LLMError, TimeoutError) as exc:
        logger.warning("No automatic title for conversation %s: %s", conversation_id, exc)
        return
    title = clean_title(text)
    if not title:
        logger.info("No automatic title for conversation %s: empty answer", conversation_id)
        return
    saved = await runner.db(_title_save, conversation_id, title)
    logger.info(
        "Automatic title for conversation %s: %r%s",
        conversation_id,
        title,
        "" if saved else " (not used: renamed meanwhile, or deleted)",
    )


async def _title_task(reply_id: int) -> None:
    prompt = await runner.db(_title_prompt, reply_id)
    if prompt is not None:
        await _title_generate(*prompt)


def schedule_for(conversation_id: int, reply_id: int) -> None:
    """The `lifecycle.on_complete` hook: ask for a title after the first complete reply."""
    schedule(conversation_id=conversation_id, reply_id=reply_id)


def schedule(*, conversation_id: int, reply_id: int) -> None:
    """After a complete reply: if it is the conversation's first, ask the model for a title.

    Runs beside the reply, never delaying it; the page asks for the title afterwards.
    """
    if not settings.CHAT_AUTO_TITLE:
        return
    future = runner.spawn(lambda: _title_task(reply_id))
    _titles_pending[conversation_id] = future

    def forget(done: Future[None]) -> None:
        if _titles_pending.get(conversation_id) is done:
            del _titles_pending[conversation_id]

    future.add_done_callback(forget)


def conversation_title_wait(*, conversation: Conversation, timeout: float) -> Conversation:
    """The conversation once an automatic title being generated here has been settled."""
    future = _titles_pending.get(conversation.pk)
    if future is not None:
        with contextlib.suppress(Exception):
            future.result(timeout)
    conversation.refresh_from_db(fields=["title", "title_set_by_user"])
    return conversation


def title_may_change(*, message: Message) -> bool:
    """Whether the page should ask for the conversation's title once `message` is done."""
    return (
        settings.CHAT_AUTO_TITLE
        and message.role == Message.Role.ASSISTANT
        and message.status == Message.Status.COMPLETE
        and not message.conversation.title_set_by_user
        and not Message.objects.filter(
            conversation_id=message.conversation_id,
            role=Message.Role.ASSISTANT,
            status=Message.Status.COMPLETE,
            pk__lt=message.pk,
        ).exists()
    )
