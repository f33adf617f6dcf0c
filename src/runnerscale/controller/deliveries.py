"""Webhook deliveries written to the store in groups, by a thread of their own.

Why: an acknowledged delivery must survive ``kill -9``, so its GUID and its job are committed
(one transaction: :meth:`~runnerscale.protocols.Store.take_deliveries`) before the 202. One
commit per delivery, on the event loop, made fsync the intake's ceiling and blocked every
other request meanwhile. Here the route adds its delivery to the group being gathered and
awaits; the group is committed in ONE transaction by a writer thread (off the event loop, so
that the fsync does not stop it), and each waiting route is woken with its answer. So the
cost of a transaction (most of it fixed: the statements, the commit) is shared by the group.

How a group forms, on the event loop: it grows while routes already under way keep adding to
it, and goes once it stopped growing for a turn of the loop (at most :data:`GATHER_TURNS`
turns, :data:`MAX_BATCH` deliveries). One commit is under way at a time; what arrives
meanwhile is the next group. A group taken as soon as the thread was free (as it was before)
held one or two deliveries under load, each paying the whole fixed cost, and the thread woke
to compete with the loop for the one core.

Only the daemon starts the thread (:meth:`DeliveryWriter.start`). Without it (the simulation on
its virtual clock, tests, a controller never started) :meth:`DeliveryWriter.take` writes
inline, at once, so that a simulated figure does not depend on a thread's timing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from runnerscale.protocols import Clock, Delivery, Store, Taken

#: The most deliveries one transaction takes (a bound on one commit's length).
MAX_BATCH: Final = 512
#: The most turns of the event loop a group waits for more deliveries (each turn reads what
#: the network brought meanwhile): a bound on the wait a light load never sees.
GATHER_TURNS: Final = 8


@dataclass(frozen=True)
class _Waiting:
    delivery: Delivery
    future: asyncio.Future[Taken]


def _settle(future: asyncio.Future[Taken], taken: Taken | BaseException) -> None:
    """On the event loop: hand the route its answer (unless it gave up waiting)."""
    if future.done():
        return
    if isinstance(taken, BaseException):
        future.set_exception(taken)
    else:
        future.set_result(taken)


class DeliveryWriter:
    """Group commit of webhook deliveries (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._clock = clock
        self._max_batch = max_batch
        self._executor: ThreadPoolExecutor | None = None
        #: The deliveries of the group being gathered (or waiting for the commit under way).
        self._waiting: list[_Waiting] = []
        #: Whether a turn of :meth:`_gather` is scheduled on the loop.
        self._gathering = False
        #: The commit under way in the thread, if any.
        self._committing: asyncio.Future[list[Taken]] | None = None
        #: Transactions committed and deliveries they took (for tests and the benchmark).
        self.commits = 0
        self.written = 0

    @property
    def threaded(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        """Write in a thread from now on (called on the event loop the routes run on)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="deliveries")

    async def stop(self) -> None:
        """Write what waits, then stop the thread (later deliveries are written inline)."""
        executor = self._executor
        if executor is None:
            return
        while self._committing is not None or self._waiting:
            if self._committing is None:
                self._commit_next()
            assert self._committing is not None
            await asyncio.wait([self._committing])
        self._executor = None
        await asyncio.to_thread(executor.shutdown)

    async def take(self, delivery: Delivery) -> Taken:
        """Record ``delivery`` (its GUID and its job, together); returns once it is committed.
        A store error is raised here, to the route (which answers 500: GitHub retries)."""
        if self._executor is None:
            return self.write([delivery])[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Taken] = loop.create_future()
        self._waiting.append(_Waiting(delivery, future))
        if not self._gathering:
            self._gathering = True
            loop.call_soon(self._gather, 0, 0)
        return await future

    def write(self, batch: Sequence[Delivery]) -> list[Taken]:
        """One transaction for ``batch``."""
        taken = self._store.take_deliveries(batch, self._clock.now())
        self.commits += 1
        self.written += len(batch)
        return taken

    def _gather(self, seen: int, turns: int) -> None:
        """A turn of the loop: wait one more while the group grows, else let it go."""
        size = len(self._waiting)
        if seen < size < self._max_batch and turns < GATHER_TURNS:
            asyncio.get_running_loop().call_soon(self._gather, size, turns + 1)
            return
        self._gathering = False
        if self._committing is None:
            self._commit_next()

    def _commit_next(self) -> None:
        """Hand the group to the thread; its routes are answered once it is committed."""
        assert self._executor is not None
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        if not batch:
            return
        deliveries = [waiting.delivery for waiting in batch]
        committing = asyncio.get_running_loop().run_in_executor(
            self._executor, self.write, deliveries
        )
        self._committing = committing
        committing.add_done_callback(functools.partial(self._committed, batch))

    def _committed(self, batch: list[_Waiting], committing: asyncio.Future[list[Taken]]) -> None:
        """On the loop: answer the group's routes; what waited meanwhile is the next group."""
        self._committing = None
        results: Sequence[Taken | BaseException]
        try:
            results = committing.result()
        except Exception as error:  # the store failed: each route of the group logs it
            results = [error] * len(batch)
        for waiting, result in zip(batch, results, strict=True):
            _settle(waiting.future, result)
        if self._waiting and not self._gathering and self._executor is not None:
            self._commit_next()
