"""The active view: a SQL store's active jobs and live runners, kept in memory.

Why: a reconcile tick reads every active job and every live runner, and the status counts the
live runners; at 10,000 runners that was some 30,000 rows fetched and decoded a tick, most of
its time, although nearly all of them had not changed since the tick before. These rows are
the small, moving part of the state (the week of history is not in it), and nearly every write
to them is this process's own. So :class:`~runnerscale.store.sql.SqlStore` keeps them here,
writes each of its changes through once its transaction has committed, and answers those reads
from memory; it decides when the view must be reread from the database (see its module).

Thread safety: the webhook writer thread writes while the event loop reads. Every call takes
the view's lock once, so a batch (a group of deliveries, a reread) is seen whole or not at all.
Rows are handed out as copies, so a caller that changes one (the reconcile sets ``job.pool``)
never changes what is kept; or as kept (``shared``), to a caller that only reads them: a
kept row is replaced when it changes, never changed in place.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Final, TypeVar

from runnerscale import model
from runnerscale.model import Job, JobState, Runner, RunnerState

__all__ = ["ACTIVE_JOB_STATES", "LIVE_RUNNER_STATES", "ActiveView", "copy_row"]

#: The job states the view keeps, and the runner states (:mod:`runnerscale.model`'s, as sets).
ACTIVE_JOB_STATES: Final = frozenset(model.ACTIVE_JOB_STATES)
LIVE_RUNNER_STATES: Final = frozenset(model.LIVE_RUNNER_STATES)

Row = TypeVar("Row", Job, Runner)
Key = TypeVar("Key", int, str)


def copy_row(row: Row) -> Row:
    """A shallow copy of a kept row (its fields are immutable values): its ``__dict__``
    copied whole, without ``__init__``. A tenth of :func:`copy.copy`'s cost, and half that of
    updating a new object's ``__dict__`` (0.3 µs a row here), which matters at 30,000 rows a
    tick."""
    fresh = object.__new__(type(row))
    fresh.__dict__ = row.__dict__.copy()
    return fresh


def _replace(kept: dict[Key, Row], key: Key, row: Row, keep: bool) -> bool:
    """Keep ``row`` under ``key`` or forget it; whether the order of what is kept changed."""
    old = kept.pop(key, None)
    if keep:
        kept[key] = row
    return (old is None) == keep or (old is not None and old.created_at != row.created_at)


class ActiveView:
    """The active jobs by id and the live runners by name, each in its store's order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._runners: dict[str, Runner] = {}
        #: Ids and names in the store's order (``created_at``, then the key); None: to sort.
        self._job_order: list[int] | None = []
        self._runner_order: list[str] | None = []

    # -- reads (copies)

    def job(self, job_id: int) -> Job | None:
        """The job when it is active (None: completed, or not stored)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else copy_row(job)

    def runner(self, name: str) -> Runner | None:
        """The runner when it is live (None: gone, failed, or not stored)."""
        with self._lock:
            runner = self._runners.get(name)
            return None if runner is None else copy_row(runner)

    def jobs(self, states: Collection[JobState], *, shared: bool = False) -> list[Job]:
        """The jobs in ``states`` (active ones), oldest first; ``shared``: the kept rows
        themselves, for a caller that only reads them (a kept job is replaced when it
        changes, never changed in place)."""
        wanted = frozenset(states)
        with self._lock:
            if self._job_order is None:
                self._job_order = sorted(self._jobs, key=lambda i: (self._jobs[i].created_at, i))
            rows = (self._jobs[job_id] for job_id in self._job_order)
            if wanted >= ACTIVE_JOB_STATES:
                chosen = list(rows)
            else:
                chosen = [job for job in rows if job.state in wanted]
        return chosen if shared else [copy_row(job) for job in chosen]

    def runners(
        self, pool: str | None, states: Collection[RunnerState], *, shared: bool = False
    ) -> list[Runner]:
        """The runners of ``pool`` (any when None) in ``states`` (live ones), oldest first;
        ``shared``: the kept rows themselves, for a caller that only reads them (a kept
        runner is replaced when it changes, never changed in place)."""
        wanted = frozenset(states)
        with self._lock:
            if self._runner_order is None:
                by_name = self._runners
                self._runner_order = sorted(by_name, key=lambda n: (by_name[n].created_at, n))
            chosen = [
                runner
                for runner in (self._runners[name] for name in self._runner_order)
                if runner.state in wanted and (pool is None or runner.pool == pool)
            ]
        return chosen if shared else [copy_row(runner) for runner in chosen]

    def count_jobs(self, states: Collection[JobState]) -> dict[JobState, int]:
        """How many jobs in ``states`` (active ones) there are, by state, in the order given
        (counted, not copied)."""
        with self._lock:
            counted = Counter(job.state for job in self._jobs.values())
        return {state: counted[state] for state in dict.fromkeys(states) if counted[state]}

    def count_runners(self, states: Collection[RunnerState]) -> dict[tuple[str, RunnerState], int]:
        """How many runners in ``states`` (live ones) each pool has, by (pool, state)."""
        wanted = frozenset(states)
        with self._lock:
            return dict(
                Counter(
                    (runner.pool, runner.state)
                    for runner in self._runners.values()
                    if runner.state in wanted
                )
            )

    # -- writes (each as the database holds it after a commit)

    def load(self, jobs: Iterable[Job], runners: Iterable[Runner]) -> None:
        """Replace everything with what the database holds (a reread)."""
        fresh_jobs = {job.id: copy_row(job) for job in jobs if job.state in ACTIVE_JOB_STATES}
        fresh_runners = {r.name: copy_row(r) for r in runners if r.state in LIVE_RUNNER_STATES}
        with self._lock:
            self._jobs, self._runners = fresh_jobs, fresh_runners
            self._job_order = self._runner_order = None

    def put_jobs(self, jobs: Iterable[Job]) -> None:
        """Jobs as stored now: an active one is kept, any other forgotten."""
        rows = [copy_row(job) for job in jobs]
        with self._lock:
            for job in rows:
                if _replace(self._jobs, job.id, job, job.state in ACTIVE_JOB_STATES):
                    self._job_order = None

    def set_pools(self, pools: Mapping[int, str | None]) -> None:
        """The pool chosen for each job (those not kept are skipped, as the store does)."""
        with self._lock:
            for job_id, pool in pools.items():
                job = self._jobs.get(job_id)
                if job is not None:
                    # Replaced, not changed: a row handed out shared stays as it was read.
                    fresh = copy_row(job)
                    fresh.pool = pool
                    self._jobs[job_id] = fresh

    def put_runners(self, runners: Iterable[Runner]) -> None:
        """Runners as stored now: a live one is kept, any other forgotten."""
        rows = [copy_row(runner) for runner in runners]
        with self._lock:
            for runner in rows:
                if _replace(self._runners, runner.name, runner, runner.state.live):
                    self._runner_order = None

    def drop_runner(self, name: str) -> None:
        """A runner no longer stored."""
        with self._lock:
            if self._runners.pop(name, None) is not None:
                self._runner_order = None
