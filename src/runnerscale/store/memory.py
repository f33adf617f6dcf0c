"""A store in memory: the same contract as :class:`~runnerscale.store.sql.SqlStore`, no disk.

The deterministic simulation replays hours of traffic and calls the store thousands of times a
virtual minute; SQLAlchemy's per-call cost would dominate it. This store keeps the same rules
(forward-only jobs, unique runner names, compare-and-set runner transitions and job-loss
settlements, once-only deliveries) and passes the same test suite
(``tests/store`` runs against every backend), so the simulation exercises the same behaviour.
Nothing survives the process: the daemon never uses it.

At fleet scale (10,000 live runners, a week of finished jobs) a reconcile reads the live rows
several times, so rows are indexed by state (runners also by pool) and a read touches only the
states it asks for. Each index is kept in the order reads return (``(created_at, id)``,
``(created_at, name)``), updated by bisection as rows come and go, so a read merges a few
sorted lists of key tuples (in C) instead of sorting thousands of rows by a Python key. Rows
are copied field by field rather than through :func:`copy.copy` or
:func:`dataclasses.replace` (a tenth of the cost, the same shallow copy), and deliveries
expire from a heap in the order they were seen rather than by rebuilding their dict per call.
A kept row is replaced whenever it changes, never changed in place, so a caller that only reads
(the decision, ``shared=True``) is handed the kept rows themselves, without a copy.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from runnerscale.model import Job, JobLoss, JobState, Runner, RunnerState
from runnerscale.protocols import Delivery, ObservedJob, RunnerNameTaken, Taken
from runnerscale.store.observations import first_seen, merge_observation
from runnerscale.store.sql import DELIVERY_TTL, given_twice
from runnerscale.store.transitions import checked_changes, expected_states
from runnerscale.store.view import copy_row as _copy

#: A row's place in the order reads return: ``(created_at, id)`` of a job, ``(created_at,
#: name)`` of a runner (both unique, so no two rows tie).
Key = TypeVar("Key", tuple[float, int], tuple[float, str])


def _unindex(order: list[Key], key: Key) -> None:
    """Take ``key`` out of the sorted ``order``."""
    index = bisect_left(order, key)
    if index < len(order) and order[index] == key:
        del order[index]


def _merged(orders: Iterable[list[Key]]) -> list[Key]:
    """The keys of several sorted lists, in order (one list: itself, unsorted again)."""
    chosen = [order for order in orders if order]
    if len(chosen) == 1:
        return chosen[0]
    # Timsort finds the sorted runs and merges them, comparing tuples in C.
    return sorted(key for order in chosen for key in order)


class MemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        #: Jobs by state (the same objects as ``_jobs``).
        self._jobs_in: dict[JobState, dict[int, Job]] = {state: {} for state in JobState}
        #: Per state, its jobs' ``(created_at, id)``, sorted.
        self._job_order: dict[JobState, list[tuple[float, int]]] = {state: [] for state in JobState}
        self._runners: dict[str, Runner] = {}
        #: Per state, then per pool, its runners' ``(created_at, name)``, sorted.
        self._runners_in: dict[RunnerState, dict[str, list[tuple[float, str]]]] = {
            state: {} for state in RunnerState
        }
        self._losses: dict[int, JobLoss] = {}
        self._deliveries: dict[str, float] = {}
        #: (seen at, id) of every remembered delivery, oldest first, to expire them in order.
        self._delivery_times: list[tuple[float, str]] = []
        self._values: dict[str, str] = {}

    # -- jobs

    def observe_job(self, job: ObservedJob, now: float) -> Job:
        return self._observe(job, now)[1]

    def _observe(self, job: ObservedJob, now: float) -> tuple[Job | None, Job]:
        """The job before (None: new) and after the observation."""
        stored = self._jobs.get(job.id)
        if stored is None:
            stored = first_seen(job, now)
            self._jobs[job.id] = stored
            self._jobs_in[stored.state][job.id] = stored
            insort(self._job_order[stored.state], (stored.created_at, job.id))
            return None, _copy(stored)
        fresh = _copy(stored)
        fresh.state = merge_observation(fresh, stored.state, job, now)
        self._replace_job(stored, fresh)
        return _copy(stored), _copy(fresh)

    def _replace_job(self, old: Job, new: Job) -> None:
        """Keep ``new`` in place of ``old`` (the same job), indexed by its state. A kept row is
        only ever replaced, never changed, so rows handed out shared (``jobs(shared=True)``)
        never change under their reader."""
        self._jobs[new.id] = new
        if new.state is not old.state:
            key = (old.created_at, old.id)  # (the creation time never changes)
            del self._jobs_in[old.state][old.id]
            _unindex(self._job_order[old.state], key)
            insort(self._job_order[new.state], key)
        self._jobs_in[new.state][new.id] = new

    def get_job(self, job_id: int) -> Job | None:
        stored = self._jobs.get(job_id)
        return _copy(stored) if stored is not None else None

    def jobs(
        self,
        states: Sequence[JobState] | None = None,
        *,
        completed_since: float | None = None,
        shared: bool = False,
    ) -> list[Job]:
        chosen = JobState if states is None else set(states)
        jobs = self._jobs
        rows: Iterable[Job] = (
            jobs[job_id] for _, job_id in _merged(self._job_order[state] for state in chosen)
        )
        if completed_since is not None:
            rows = (
                j for j in rows if j.completed_at is not None and j.completed_at >= completed_since
            )
        return list(rows) if shared else [_copy(j) for j in rows]

    def count_jobs(self, states: Sequence[JobState]) -> dict[JobState, int]:
        """The sizes of the state indexes (kept as rows come and go): nothing is walked."""
        return {state: n for state in dict.fromkeys(states) if (n := len(self._jobs_in[state]))}

    def set_job_pool(self, job_id: int, pool: str | None) -> None:
        if job_id not in self._jobs:
            raise KeyError(f"no job {job_id}")
        self.set_job_pools({job_id: pool})

    def set_job_pools(self, pools: Mapping[int, str | None]) -> None:
        for job_id, pool in pools.items():
            stored = self._jobs.get(job_id)
            if stored is not None:
                fresh = _copy(stored)
                fresh.pool = pool
                self._replace_job(stored, fresh)

    def prune_jobs(self, completed_before: float) -> int:
        old = [
            job_id
            for job_id, job in self._jobs_in[JobState.COMPLETED].items()
            if (job.completed_at if job.completed_at is not None else job.observed_at)
            < completed_before
        ]
        for job_id in old:
            del self._jobs_in[JobState.COMPLETED][job_id]
            del self._jobs[job_id]
            self._losses.pop(job_id, None)
        if old:
            kept = self._jobs_in[JobState.COMPLETED]
            order = self._job_order[JobState.COMPLETED]
            order[:] = [key for key in order if key[1] in kept]
        return len(old)

    # -- jobs whose runner died mid-job

    def record_job_loss(self, loss: JobLoss) -> bool:
        if loss.job_id in self._losses:
            return False
        self._losses[loss.job_id] = loss
        return True

    def job_losses(self, *, settled: bool | None = None) -> list[JobLoss]:
        chosen = [
            loss
            for loss in self._losses.values()
            if settled is None or (loss.settled_at is not None) == settled
        ]
        return sorted(chosen, key=lambda loss: (loss.lost_at, loss.job_id))

    def settle_job_loss(self, job_id: int, outcome: str, now: float) -> bool:
        loss = self._losses.get(job_id)
        if loss is None or loss.settled_at is not None:
            return False
        self._losses[job_id] = replace(loss, settled_at=now, outcome=outcome)
        return True

    def reopen_job_loss(self, job_id: int, settled_at: float) -> bool:
        loss = self._losses.get(job_id)
        if loss is None or loss.settled_at != settled_at:
            return False
        self._losses[job_id] = replace(loss, settled_at=None, outcome=None)
        return True

    # -- runners

    def add_runner(self, runner: Runner) -> None:
        if runner.name in self._runners:
            raise RunnerNameTaken(f"a runner named {runner.name!r} already exists", [runner.name])
        self._store_runner(replace(runner))

    def _store_runner(self, runner: Runner) -> None:
        """Store (or replace) a runner row and index it by its state and pool. A kept row is
        only ever replaced, so rows handed out shared (``runners(shared=True)``) never
        change under their reader."""
        old = self._runners.get(runner.name)
        if old is not None:
            _unindex(self._runners_in[old.state][old.pool], (old.created_at, old.name))
        self._runners[runner.name] = runner
        insort(
            self._runners_in[runner.state].setdefault(runner.pool, []),
            (runner.created_at, runner.name),
        )

    def add_runners(self, runners: Sequence[Runner]) -> None:
        names = [runner.name for runner in runners]
        given_twice(names)
        if taken := sorted(name for name in names if name in self._runners):
            raise RunnerNameTaken(f"a runner named {taken[0]!r} already exists", taken)
        for runner in runners:
            self._store_runner(replace(runner))

    def get_runner(self, name: str) -> Runner | None:
        stored = self._runners.get(name)
        return _copy(stored) if stored is not None else None

    def runners(
        self,
        *,
        pool: str | None = None,
        states: Sequence[RunnerState] | None = None,
        shared: bool = False,
    ) -> list[Runner]:
        by_pool = [
            self._runners_in[state] for state in (RunnerState if states is None else set(states))
        ]
        orders = (
            (order for pools in by_pool for order in pools.values())
            if pool is None
            else (pools[pool] for pools in by_pool if pool in pools)
        )
        runners = self._runners
        if shared:  # (kept rows are replaced, never changed: see ``_store_runner``)
            return [runners[name] for _, name in _merged(orders)]
        return [_copy(runners[name]) for _, name in _merged(orders)]

    def transition(
        self,
        name: str,
        expected: RunnerState | Collection[RunnerState],
        new: RunnerState,
        **changes: Any,
    ) -> bool:
        """Compare-and-set (``Store.transition``): False when the runner is not in
        ``expected``; KeyError for an unknown name."""
        states = expected_states(expected)
        values = checked_changes(changes)
        stored = self._runners.get(name)
        if stored is None:
            raise KeyError(f"no runner named {name!r}")
        if stored.state not in states:
            return False
        self._store_runner(replace(stored, state=new, **values))
        return True

    def prune_runners(self, gone_before: float) -> int:
        old = [
            name
            for order in self._runners_in[RunnerState.GONE].values()
            for _, name in order
            if self._runners[name].state_since < gone_before
        ]
        for name in old:
            del self._runners[name]
        if old:
            pruned = set(old)
            for order in self._runners_in[RunnerState.GONE].values():
                order[:] = [key for key in order if key[1] not in pruned]
        return len(old)

    def count_runners(self, states: Sequence[RunnerState]) -> dict[tuple[str, RunnerState], int]:
        return {
            (pool, state): len(names)
            for state in set(states)
            for pool, names in self._runners_in[state].items()
            if names
        }

    # -- deliveries and values

    def remember_delivery(self, delivery_id: str, now: float) -> bool:
        self._forget_deliveries(now)
        return self._remember(delivery_id, now)

    def take_deliveries(self, batch: Sequence[Delivery], now: float) -> list[Taken]:
        self._forget_deliveries(now)
        taken = []
        for delivery in batch:
            if delivery.id and not self._remember(delivery.id, now):
                taken.append(Taken(False))
            elif delivery.job is None:
                taken.append(Taken(True))
            else:
                taken.append(Taken(True, *self._observe(delivery.job, now)))
        return taken

    def _forget_deliveries(self, now: float) -> None:
        """Forget ids seen more than :data:`DELIVERY_TTL` ago, oldest first from a heap (a
        rebuild per call made a long run quadratic)."""
        times = self._delivery_times
        while times and times[0][0] < now - DELIVERY_TTL:
            seen, expired = heapq.heappop(times)
            if self._deliveries.get(expired) == seen:
                del self._deliveries[expired]

    def _remember(self, delivery_id: str, now: float) -> bool:
        if delivery_id in self._deliveries:
            return False
        self._deliveries[delivery_id] = now
        heapq.heappush(self._delivery_times, (now, delivery_id))
        return True

    def get_value(self, key: str) -> str | None:
        return self._values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self._values[key] = value

    def close(self) -> None:
        """Nothing to release."""
