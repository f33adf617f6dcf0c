"""One worker per pool: it converges its pool on the decision the reconcile wrote.

Why a worker per pool
---------------------
Creating a runner takes as long as its backend takes: a local process starts in a moment, an
EC2 instance or an SSH host in tens of seconds. When one reconcile awaited every pool's
creations together, a slow pool held up every other pool's next cycle. Deciding is now apart
from doing (as ARC publishes a desired state and garm runs a small actor per instance): the
reconcile decides for every pool at once (the pure scaler) and writes the decision, and each
pool's worker acts on its own part in tasks of its own. A pool whose backend is slow, or hangs,
delays only itself; and a call that hangs holds its creation slot only until it is abandoned,
``timeouts.create`` and a minute after it began (:mod:`runnerscale.controller.bounded`).

What the worker converges on
----------------------------
- **Creations** are written to the store by the reconcile as ``pending`` runners, with their
  target, before anything is asked of GitHub or the backend: the next decision counts them, so
  nothing is created twice while the worker is still at it, and a crash leaves rows that
  ``Actions.recover`` repairs. The worker starts every ``pending`` runner of its pool it is not
  already starting (at most the pool's ``create_concurrency`` at once, by default
  :data:`~runnerscale.model.CREATE_CONCURRENCY`; ``state_since`` is set again
  when one's creation actually begins, so a runner that waited for a free slot still gets the
  whole create timeout for its creation).
- **Waiting is not creating.** A runner whose registration would wait for GitHub's
  registration budget (spent by our own count until its window resets, or paused by GitHub)
  waits for it *before* it takes a slot: a wait of minutes holds no slot (the pool's other
  runners, for a target whose credential has budget left, go ahead) and runs no create
  timeout. Having taken a slot, the runner asks again, without an await in between, and lets
  the slot go to wait once more when the creations ahead of it spent what was left; from there
  to the registration being counted as sent nothing else runs (the runner group and the App
  installation are cached after a target's first call), so a registration does not wait in a
  slot. While it waits for the budget or for a slot, the runner is in
  :attr:`Actions.waiting <runnerscale.controller.actions.Actions.waiting>`: the janitor's
  create timeout leaves it alone, and the status counts it. A ``pending`` row no worker holds
  there (its worker stopped, its pool is not run by this daemon) still times out.
- **Removals** (idle runners to scale down, finished ones to reap) are the latest decision's
  names, handed over in memory (:meth:`PoolWorker.publish`); a newer decision replaces an older
  one not yet acted on. Each runner is read again and removed only if it is still in the state
  the scaler decided on, through a compare-and-set, so a runner that took a job meanwhile is
  left alone.

Every runner is acted on by at most one task of its worker at a time (by name). When a removal
completes, the worker calls ``freed``, which kicks the reconcile: the slot is used at once.

Two ways to run it: :meth:`PoolWorker.run` as a task of the daemon (it acts whenever woken, and
nothing waits for it), or :meth:`PoolWorker.converge` (act on everything now and wait until
done), which ``Controller.reconcile_once`` uses so that tests and the simulation can drive one
whole cycle as one step.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, get_args

from runnerscale.controller.actions import Actions, PoolRuntime, RemovalReason, WaitingFor
from runnerscale.controller.observe import amend
from runnerscale.controller.pooldrain import WHY as DRAINED_WHY
from runnerscale.model import CREATE_CONCURRENCY, Runner, RunnerState

__all__ = ["CREATE_CONCURRENCY", "PoolWorker"]
from runnerscale.scaler import PoolDecision

log = logging.getLogger("runnerscale.controller")

#: Why the worker removes a runner (for the log, for the metrics), by the state the scaler
#: decided on.
_WHY: dict[RunnerState, tuple[str, RemovalReason]] = {
    RunnerState.IDLE: ("idle past its timeout", "idle"),
    RunnerState.FINISHED: ("its job is done", "job_done"),
}


class PoolWorker:
    """Acts for one pool: starts its ``pending`` runners, removes what the decision names."""

    def __init__(
        self,
        actions: Actions,
        pool: PoolRuntime,
        *,
        freed: Callable[[], None] = lambda: None,
        failed: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        self.actions = actions
        self.pool = pool
        self._freed = freed
        self._failed = failed
        #: Runner name -> the task acting on it.
        self._work: dict[str, asyncio.Task[Any]] = {}
        #: The latest decision's removals not yet handed to a task: name -> state decided on.
        self._removals: dict[str, RunnerState] = {}
        self._limit = asyncio.Semaphore(pool.create_concurrency)
        self._limit_size = pool.create_concurrency
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.pool.name

    # ------------------------------------------------------------------ what to do

    def publish(self, decision: PoolDecision) -> None:
        """The pool's part of a new decision (its creations are already in the store)."""
        self._removals = dict.fromkeys(decision.remove, RunnerState.IDLE) | dict.fromkeys(
            decision.reap, RunnerState.FINISHED
        )
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def waiting(self) -> dict[str, int]:
        """How many of its ``pending`` runners wait before their creation begins, by what
        they wait for (every kind named, 0 included): the status and the metrics show it."""
        held = Counter(self.actions.waiting.get(name) for name in self._work)
        return {kind: held[kind] for kind in get_args(WaitingFor)}

    def dispatch(self) -> list[asyncio.Task[Any]]:
        """Start a task for every runner the decision asks for and no task acts on yet: the
        pool's ``pending`` runners, and the removals of the latest decision. Returns them."""
        started = []
        store = self.actions.store
        for runner in store.runners(pool=self.name, states=[RunnerState.PENDING]):
            if runner.name not in self._work:
                started.append(self._spawn(runner.name, self._create(runner)))
        removals, self._removals = self._removals, {}
        for name, state in removals.items():
            if name not in self._work:
                started.append(self._spawn(name, self._remove(name, state)))
        return started

    def _spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=f"pool {self.name}: {name}")
        self._work[name] = task
        task.add_done_callback(lambda done: self._done(name, done))
        return task

    def _done(self, name: str, task: asyncio.Task[Any]) -> None:
        if self._work.get(name) is task:
            del self._work[name]
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, whether or not anyone awaits the task
        if error is not None:
            log.error("pool %s: acting on %s failed", self.name, name, exc_info=error)
            self._failed(error)

    # ------------------------------------------------------------------ doing it

    async def _create(self, planned: Runner) -> Runner | None:
        """Create a ``pending`` runner once GitHub's registration budget and a free slot
        allow; meanwhile it is held in :attr:`Actions.waiting` (not being created yet)."""
        actions, name = self.actions, planned.name
        try:
            while True:
                actions.waiting[name] = "registration_budget"
                await actions.registration_ready(planned)
                if name not in actions.waiting:
                    return None  # removed while it waited (a removal takes it out)
                actions.waiting[name] = "create_slot"
                async with self._slots():
                    runner = actions.store.get_runner(name)
                    if runner is None or runner.state is not RunnerState.PENDING:
                        return None  # given up on while it waited
                    if actions.registration_wait(runner) > 0:
                        continue  # the creations ahead of it spent the budget: slot let go
                    del actions.waiting[name]
                    # Its creation starts now: the create timeout counts from here.
                    if not amend(
                        actions.store, runner, "creation starts", state_since=actions.clock.now()
                    ):
                        return None
                    return await actions.start_runner(self.pool, runner)
        finally:
            actions.waiting.pop(name, None)

    def _slots(self) -> asyncio.Semaphore:
        """The creation slots; a reload that changed the pool's ``create_concurrency`` gets
        new ones (creations already in flight finish in the old)."""
        if self._limit_size != self.pool.create_concurrency:
            self._limit = asyncio.Semaphore(self.pool.create_concurrency)
            self._limit_size = self.pool.create_concurrency
        return self._limit

    async def _remove(self, name: str, decided: RunnerState) -> bool:
        runner = self.actions.store.get_runner(name)
        if runner is None or runner.state is not decided:
            return False  # it moved since the decision (took a job, was removed already)
        why = _WHY[decided]
        if self.pool.drained is not None and decided is RunnerState.IDLE:
            why = (DRAINED_WHY, "operator")
        removed = await self.actions.remove_runner(runner, *why)
        if removed:
            self._freed()
        return removed

    # ------------------------------------------------------------------ running

    async def converge(self) -> None:
        """Act on everything asked for now and wait until this worker has nothing in flight
        (also work started earlier). The first unexpected error is raised."""
        self.dispatch()
        while tasks := [task for task in self._work.values() if not task.done()]:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    raise result

    async def start(self, names: Iterable[str]) -> list[Runner | None]:
        """Start these ``pending`` runners now and wait for each (manual scale-up)."""
        self.dispatch()
        tasks = [self._work[name] for name in names if name in self._work]
        return list(await asyncio.gather(*tasks))

    async def run(self) -> None:
        """Forever: act whenever woken (a new decision, a kick). Never waits for its work."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.dispatch()

    async def stop(self) -> None:
        """Cancel the work in flight: what it leaves half done is repaired like a crash."""
        tasks = list(self._work.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
