"""Time as an injected dependency.

Everything in runnerscale that waits or timestamps asks a :class:`Clock` instead of calling
``time`` or ``asyncio.sleep`` directly. In production that is :class:`SystemClock`; in the
deterministic simulation it is a virtual clock that jumps from one deadline to the next, so the
same code replays ten hours of CI traffic in seconds without sleeping.
"""

from __future__ import annotations

import asyncio
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
