"""``wait_for``, the reconcile loop's "a kick or the interval" wait, never loses a cancellation.

A daemon that was told to stop while a worker's kick had just woken the reconcile loop kept
running: the wait swallowed the stop's cancellation while it tidied up its helper tasks, the
loop went round again and ``Controller.stop`` waited for it forever (seen as a daemon that did
not exit on SIGTERM).
"""

from __future__ import annotations

import asyncio

import pytest

from runnerscale.controller.loops import wait_for


class SlowToCancelClock:
    """A clock whose sleep takes a few loop turns to honour a cancellation, as a real sleep
    on a busy loop may: it widens the window in which the wait tidies up."""

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            for _ in range(3):
                await asyncio.sleep(0)
            raise


async def test_a_cancellation_while_the_wait_tidies_up_is_not_lost() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_for(SlowToCancelClock(), event, 100.0))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    event.set()  # a kick: the wait is over and tidies up its sleeper
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()  # the daemon stops right then
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_kick_ends_the_wait_and_a_timeout_too() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_for(SlowToCancelClock(), event, 100.0))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    event.set()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(wait_for(SlowToCancelClock(), asyncio.Event(), 0.01), 5)  # type: ignore[arg-type]
