"""Time as an injected dependency.

Everything in runnerscale that waits or timestamps asks a :class:`Clock` instead of calling
``time`` or ``asyncio.sleep`` directly. In production that is :class:`SystemClock`; in the
deterministic simulation it is a virtual clock that jumps from one deadline to the next, so the
same code replays ten hours of CI traffic in seconds without sleeping.

:class:`VirtualClock` is that clock. Its ``sleep`` does not wait: it registers a wake-up time and
yields. :meth:`VirtualClock.advance` moves time to the earliest pending wake-up (or by an
explicit amount) and releases every sleeper that is due, in order. A driver alternates "let
every task run until all are asleep" and "advance", which is how the simulation replays hours
of traffic in seconds. The in-process GitHub simulator and the tests run on it too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time and of waiting."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def iso8601(epoch_seconds: float) -> str:
    """Render a timestamp the way GitHub does: UTC, second precision, ``Z`` suffix."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VirtualClock:
    """A :class:`Clock` whose time only moves when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._sequence), future))
        await future

    def next_wakeup(self) -> float | None:
        """The earliest time a sleeper waits for, or None when nobody sleeps."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # a cancelled sleeper
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float | None = None) -> None:
        """Move time forward by ``seconds``, or to the next wake-up when None.

        Every sleeper due by the new time is released, earliest first.
        """
        if seconds is None:
            target = self.next_wakeup()
            if target is None:
                return
        else:
            target = self._now + seconds
        self._now = max(self._now, target)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def set(self, epoch_seconds: float) -> None:
        """Jump to an absolute time (never backwards)."""
        self.advance(max(0.0, epoch_seconds - self._now))
