"""Virtual time for tests of timing logic that talk to a live simulator over HTTP.

The simulator (``SimulatorServer(options, clock)``), the production client
(``GitHubClient(clock=..., sleep=...)``) and the trace export (``sleep=``) take their time from
an injected clock. A test of what they do with time runs them on one
:class:`~runnerscale.clock.VirtualClock`, so nothing waits for time to pass: the test moves
the clock (``clock.advance(seconds)``), or the code under test sleeps with :class:`SkipAhead`,
which moves the clock on instead of waiting. Requests still go over real sockets; only time is
virtual.

The clock starts at the wall clock's current whole second, because a few things read the wall
clock whatever they are given (pyjwt checking an App's JWT; githubkit working out how long to
keep an installation token), and they agree with the virtual clock when the test starts.
"""

from __future__ import annotations

import asyncio
import time

from runnerscale.clock import VirtualClock


def virtual_clock() -> VirtualClock:
    """A virtual clock that starts now (to the second) and moves only when told to."""
    return VirtualClock(start=float(int(time.time())))


class SkipAhead:
    """A ``sleep`` that does not wait: it records the seconds asked for and moves ``clock`` on
    by as much, waking whatever sleeps on the clock (the simulator's ticker) when it falls due.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(max(0.0, seconds))
        await asyncio.sleep(0)  # a sleep yields, as a real one does
