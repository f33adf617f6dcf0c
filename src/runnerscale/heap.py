"""Keeping the cyclic garbage collector off a long-running daemon's settled objects.

Why: at fleet size a reconcile tick hands out tens of thousands of row copies (the active
view's jobs and runners), alive for the tick. Enough allocations set off CPython's cyclic
collections, whose oldest generation rescans every long-lived object: the modules, pydantic's
models, the active view's rows. Measured at 10,000 runners and 10,000 queued jobs
(``benchmarks/fleet.md``): a tick's median 156 ms on SQLite, 57 ms once those objects were
frozen; 195-206 ms and 80 ms on Postgres.

So the daemon collects once and then freezes what survived (:func:`gc.freeze`: moved out of
the collector's reach, still freed by reference counting) soon after it starts, and again every
``settle_every`` seconds (what became long-lived since: a reread view, new runners). An object
frozen while alive that later dies inside a reference cycle would never be collected; so every
``release_every`` seconds everything is given back (:func:`gc.unfreeze`) and collected once in
full before being frozen again. A stopped daemon gives everything back: a process that runs
daemons one after another (the tests, the demo) is left as it was.

The simulation settles its heap too (:mod:`runnerscale.simulation.engine`): a fleet-scale run
is minutes of CPU spent in the same reconcile, with a world of tens of thousands of jobs
alive. It has no event loop that sleeps between its steps, so it asks between two steps
(:meth:`HeapKeeper.settle_when_due`) and gives everything back when it ends
(:meth:`HeapKeeper.give_back`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["RELEASE_EVERY", "SETTLE_EVERY", "HeapKeeper"]

log = logging.getLogger(__name__)

#: Seconds between two freezes of what survived a collection.
SETTLE_EVERY: Final = 60.0
#: Seconds between two full collections of everything (frozen objects included).
RELEASE_EVERY: Final = 3600.0


class HeapKeeper:
    """Settles the heap on a schedule, in a task of its own (:meth:`start`, :meth:`stop`).

    Wall-clock seconds (``timer``), not the controller's clock: it is about this process."""

    def __init__(
        self,
        *,
        settle_every: float = SETTLE_EVERY,
        release_every: float = RELEASE_EVERY,
        first_after: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if settle_every <= 0 or release_every < settle_every or first_after < 0:
            raise ValueError(
                "heap settling needs settle_every > 0, release_every >= settle_every and "
                f"first_after >= 0 (got {settle_every}, {release_every}, {first_after})"
            )
        self.settle_every = settle_every
        self.release_every = release_every
        self.first_after = first_after
        self._timer = timer
        self._released_at = timer()
        #: When :meth:`settle_when_due` settles next (on ``timer``).
        self._due_at = self._released_at + first_after
        self._task: asyncio.Task[None] | None = None
        #: Settlings done, and full releases among them (for tests and the log).
        self.settled = 0
        self.released = 0

    def settle(self) -> None:
        """Collect, then freeze what survived; once ``release_every`` has passed since the
        last release, give every frozen object back first (a full collection of all)."""
        now = self._timer()
        if now - self._released_at >= self.release_every:
            gc.unfreeze()
            self._released_at = now
            self.released += 1
        gc.collect()
        gc.freeze()
        self.settled += 1
        self._due_at = now + self.settle_every
        log.debug("heap settled: %d objects frozen", gc.get_freeze_count())

    def settle_when_due(self) -> bool:
        """Settle when ``first_after`` has passed since this keeper was made, then every
        ``settle_every``: for a caller that runs steps one after another rather than sleeping
        (the simulation). Whether it settled now. One clock read when not due."""
        if self._timer() < self._due_at:
            return False
        self.settle()
        return True

    def give_back(self) -> None:
        """Give every frozen object back to the collector (the process as it was before),
        collecting once if this keeper froze anything: what died while frozen is finalized
        now, not at some later collection (in a process that runs daemons or simulations one
        after another, as the tests do, a finalizer's warning would otherwise surface in
        whatever runs then)."""
        gc.unfreeze()
        if self.settled:
            gc.collect()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heap")

    async def stop(self) -> None:
        """Stop settling and give every frozen object back (:meth:`give_back`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.give_back()

    async def _run(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            self.settle()
            await asyncio.sleep(self.settle_every)
