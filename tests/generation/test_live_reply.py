"""Waiting for a reply's end: from a coroutine without holding a thread, from a thread."""

from __future__ import annotations

import asyncio
import threading
import time

from conversations.generation.runner import LiveReply


def test_a_coroutine_learns_of_the_end_written_by_another_thread():
    live = LiveReply(1)

    async def scenario() -> tuple[bool, float]:
        threading.Timer(0.2, lambda: live.update(status="complete", done=True)).start()
        started = time.monotonic()
        # The loop stays free meanwhile: a ticker keeps running while the wait is on.
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        ended = await live.ended(5)
        ticker.cancel()
        assert ticks > 5
        return ended, time.monotonic() - started

    ended, waited = asyncio.run(scenario())
    assert ended
    assert 0.15 < waited < 2


def test_waiting_for_a_reply_that_does_not_end_gives_up_after_the_timeout():
    live = LiveReply(1)
    live.update(text="still going")
    assert asyncio.run(live.ended(0.1)) is False
    # A waiter that gave up, on a loop that has since closed, does not break the end.
    live.update(status="complete", done=True)
    assert live.wait_done(0)


def test_a_reply_already_ended_needs_no_wait():
    live = LiveReply(1)
    live.update(status="error", done=True)
    assert asyncio.run(asyncio.wait_for(live.ended(5), 0.5)) is True


def test_a_waiter_that_gave_up_is_forgotten():
    live = LiveReply(1)

    async def scenario() -> None:
        waiting = asyncio.create_task(live.ended(5))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await live.ended(0.01)

    asyncio.run(scenario())
    assert live._waiters == []
