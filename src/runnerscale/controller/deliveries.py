"""Webhook deliveries written to the store in groups, by a thread of their own.

Why: an acknowledged delivery must survive ``kill -9``, so its GUID and its job are committed
(one transaction: :meth:`~runnerscale.protocols.Store.take_deliveries`) before the 202. One
commit per delivery, on the event loop, made fsync the intake's ceiling and blocked every
other request meanwhile. Here the route queues its delivery and awaits; a writer thread takes
whatever is queued at that moment (one delivery when traffic is light, hundreds under a
burst), commits them in ONE transaction off the event loop, and wakes each waiting route. So
the cost of a commit is shared by the whole group, and nobody is answered before the commit.

Only the daemon starts the thread (:meth:`DeliveryWriter.start`). Without it (the simulation on
its virtual clock, tests, a controller never started) :meth:`DeliveryWriter.take` writes
inline, at once, so that a simulated figure does not depend on a thread's timing.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from runnerscale.protocols import Clock, Delivery, Store, Taken

#: The most deliveries one transaction takes (a bound on one commit's length).
MAX_BATCH: Final = 512


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
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Transactions committed and deliveries they took (for tests and the benchmark).
        self.commits = 0
        self.written = 0

    @property
    def threaded(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Write in a thread from now on (called on the event loop the routes run on)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="deliveries", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued, then stop the thread (later deliveries are written inline)."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None

    async def take(self, delivery: Delivery) -> Taken:
        """Record ``delivery`` (its GUID and its job, together); returns once it is committed.
        A store error is raised here, to the route (which answers 500: GitHub retries)."""
        if self._thread is None:
            return self.write([delivery])[0]
        future: asyncio.Future[Taken] = asyncio.get_running_loop().create_future()
        self._queue.put(_Waiting(delivery, future))
        return await future

    def write(self, batch: Sequence[Delivery]) -> list[Taken]:
        """One transaction for ``batch``."""
        taken = self._store.take_deliveries(batch, self._clock.now())
        self.commits += 1
        self.written += len(batch)
        return taken

    def _run(self) -> None:
        """The thread: take whatever is queued, commit it, wake the routes; until stopped."""
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Waiting]) -> None:
        assert self._loop is not None
        results: Sequence[Taken | BaseException]
        try:
            results = self.write([waiting.delivery for waiting in batch])
        except Exception as error:  # the store failed: each route of the group logs it
            results = [error] * len(batch)
        for waiting, result in zip(batch, results, strict=True):
            try:
                self._loop.call_soon_threadsafe(_settle, waiting.future, result)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return
