"""A store in memory: the same contract as :class:`~runnerscale.store.sql.SqlStore`, no disk.

The deterministic simulation replays hours of traffic and calls the store thousands of times a
virtual minute; SQLAlchemy's per-call cost would dominate it. This store keeps the same rules
(forward-only jobs, unique runner names, compare-and-set runner transitions and job-loss
settlements, once-only deliveries) and passes the same test suite
(``tests/store`` runs against every backend), so the simulation exercises the same behaviour.
Nothing survives the process: the daemon never uses it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from runnerscale.model import Job, JobLoss, JobState, Runner, RunnerState
from runnerscale.protocols import ObservedJob
from runnerscale.store.observations import merge_observation
from runnerscale.store.sql import DELIVERY_TTL
from runnerscale.store.transitions import checked_changes, expected_states


class MemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._runners: dict[str, Runner] = {}
        self._losses: dict[int, JobLoss] = {}
        self._deliveries: dict[str, float] = {}
        self._values: dict[str, str] = {}

    # -- jobs

    def observe_job(self, job: ObservedJob, now: float) -> Job:
        stored = self._jobs.get(job.id)
        if stored is None:
            stored = Job(
                id=job.id,
                repo=job.repo,
                labels=tuple(job.labels),
                state=job.state,
                created_at=job.created_at,
                run_id=job.run_id,
                name=job.name,
                started_at=job.started_at,
                completed_at=job.completed_at,
                runner_name=job.runner_name,
                conclusion=job.conclusion,
                observed_at=now,
            )
            self._jobs[job.id] = stored
            return copy.copy(stored)
        stored.state = merge_observation(stored, stored.state, job, now)
        return copy.copy(stored)

    def get_job(self, job_id: int) -> Job | None:
        stored = self._jobs.get(job_id)
        return copy.copy(stored) if stored is not None else None

    def jobs(
        self, states: Sequence[JobState] | None = None, *, completed_since: float | None = None
    ) -> list[Job]:
        wanted = None if states is None else set(states)
        chosen = [
            j
            for j in self._jobs.values()
            if (wanted is None or j.state in wanted)
            and (
                completed_since is None
                or (j.completed_at is not None and j.completed_at >= completed_since)
            )
        ]
        return [copy.copy(j) for j in sorted(chosen, key=lambda j: (j.created_at, j.id))]

    def set_job_pool(self, job_id: int, pool: str | None) -> None:
        if job_id not in self._jobs:
            raise KeyError(f"no job {job_id}")
        self._jobs[job_id].pool = pool

    def prune_jobs(self, completed_before: float) -> int:
        old = [
            job_id
            for job_id, job in self._jobs.items()
            if job.state is JobState.COMPLETED
            and (job.completed_at if job.completed_at is not None else job.observed_at)
            < completed_before
        ]
        for job_id in old:
            del self._jobs[job_id]
            self._losses.pop(job_id, None)
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
            raise ValueError(f"a runner named {runner.name!r} already exists")
        self._runners[runner.name] = replace(runner)

    def add_runners(self, runners: Sequence[Runner]) -> None:
        names = [runner.name for runner in runners]
        if len(set(names)) != len(names):
            raise ValueError(f"a runner named {names[0]!r} is given twice")
        if taken := sorted(name for name in names if name in self._runners):
            raise ValueError(f"a runner named {taken[0]!r} already exists")
        for runner in runners:
            self._runners[runner.name] = replace(runner)

    def get_runner(self, name: str) -> Runner | None:
        stored = self._runners.get(name)
        return replace(stored) if stored is not None else None

    def runners(
        self, *, pool: str | None = None, states: Sequence[RunnerState] | None = None
    ) -> list[Runner]:
        wanted = None if states is None else set(states)
        chosen = [
            r
            for r in self._runners.values()
            if (pool is None or r.pool == pool) and (wanted is None or r.state in wanted)
        ]
        return [replace(r) for r in sorted(chosen, key=lambda r: (r.created_at, r.name))]

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
        self._runners[name] = replace(stored, state=new, **values)
        return True

    def prune_runners(self, gone_before: float) -> int:
        old = [
            name
            for name, r in self._runners.items()
            if r.state is RunnerState.GONE and r.state_since < gone_before
        ]
        for name in old:
            del self._runners[name]
        return len(old)

    def count_runners(self, states: Sequence[RunnerState]) -> dict[tuple[str, RunnerState], int]:
        wanted = set(states)
        return dict(Counter((r.pool, r.state) for r in self._runners.values() if r.state in wanted))

    # -- deliveries and values

    def remember_delivery(self, delivery_id: str, now: float) -> bool:
        self._deliveries = {
            key: seen for key, seen in self._deliveries.items() if seen >= now - DELIVERY_TTL
        }
        if delivery_id in self._deliveries:
            return False
        self._deliveries[delivery_id] = now
        return True

    def get_value(self, key: str) -> str | None:
        return self._values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self._values[key] = value

    def close(self) -> None:
        """Nothing to release."""
