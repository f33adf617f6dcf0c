"""Folding what runnerscale sees into its runners' states.

Three sources tell us what happened to a runner: ``workflow_job`` observations (a job started
on it, or finished), GitHub's runner list (online, busy, or no longer registered), and the
backend's inventory (the instance is running or has exited). Each function here takes one
observation and moves the affected runners forward; none of them has side effects beyond the
store, so they are safe to apply twice or out of order.

Every runner write, here and in the rest of the controller, goes through :func:`move` (or
:func:`amend`): a compare-and-set from the state the writer read, never a whole-row write, so
a writer that lost a race to another (the janitor, a pool worker, an operator) changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from runnerscale.model import GitHubRunner, Instance, Job, JobState, Runner, RunnerState
from runnerscale.protocols import ObservedJob, Store

log = logging.getLogger("runnerscale.controller")

#: States in which a runner's registration is expected to exist in GitHub.
REGISTERED = (RunnerState.BOOTING, RunnerState.IDLE, RunnerState.BUSY)


def move(
    store: Store, runner: Runner, state: RunnerState, now: float, why: str, **changes: Any
) -> bool:
    """Move a runner from the state it was read in to ``state``, with ``changes`` to its other
    fields, before any side effect that depends on it.

    A compare-and-set (``Store.transition``): when another writer moved the row since
    ``runner`` was read, nothing is written, ``runner`` is left as it was, and the answer is
    False; the caller must then not act on what it believed. On success ``runner`` holds what
    was written (``state_since``, and ``idle_since`` on ``idle``, are set on a change of
    state). Moving to the state it is in writes only ``changes``, and still checks the state.
    """
    written = dict(changes)
    if state is not runner.state:
        written["state_since"] = now
        if state is RunnerState.IDLE:
            written["idle_since"] = now
    if not store.transition(runner.name, runner.state, state, **written):
        log.info(
            "runner %s (%s): not moved %s -> %s (%s): no longer %s",
            runner.name,
            runner.pool,
            runner.state,
            state,
            why,
            runner.state,
        )
        return False
    if state is not runner.state:
        log.info("runner %s (%s): %s -> %s: %s", runner.name, runner.pool, runner.state, state, why)
    runner.state = state
    for name, value in written.items():
        setattr(runner, name, value)
    return True


def amend(store: Store, runner: Runner, why: str, **changes: Any) -> bool:
    """Write fields of a runner while it stays in the state it was read in (False when it
    moved meanwhile; nothing is written then)."""
    return move(store, runner, runner.state, 0.0, why, **changes)


def apply_job(store: Store, observed: ObservedJob, now: float) -> tuple[Job, Runner | None]:
    """A job moved: record it, and mark the runner that runs (or ran) it. Returns the job as
    stored, and the runner of ours whose first sign of life this is (it was being created or
    booting, and took the job), if any."""
    job = store.observe_job(observed, now)
    return job, mark_runner(store, job, now)


def mark_runner(store: Store, job: Job, now: float) -> Runner | None:
    """Mark the runner that runs (or ran) a job just recorded. Returns the runner of ours
    whose first sign of life this is (it was being created or booting, and took the job)."""
    if not job.runner_name:
        return None
    runner = store.get_runner(job.runner_name)
    if runner is None:
        return None  # not one of ours
    if job.state is JobState.IN_PROGRESS and runner.state in (
        RunnerState.CREATING,
        RunnerState.BOOTING,
        RunnerState.IDLE,
    ):
        starting = runner.state is not RunnerState.IDLE
        if move(store, runner, RunnerState.BUSY, now, f"took job {job.id}", job_id=job.id):
            return runner if starting else None
    elif job.state is JobState.IN_PROGRESS and runner.job_id is None:
        # Already busy (GitHub's runner list said so first): now its job is known.
        amend(store, runner, f"runs job {job.id}", job_id=job.id)
    elif job.state is JobState.COMPLETED and runner.state in (*REGISTERED, RunnerState.CREATING):
        move(
            store,
            runner,
            RunnerState.FINISHED,
            now,
            f"job {job.id} {job.conclusion}",
            job_id=job.id,
        )
    return None


def apply_runner_list(
    store: Store, target_key: str, listed: Iterable[GitHubRunner], now: float
) -> list[Runner]:
    """GitHub's view of the target's runners: online and idle, busy, or gone. Returns the
    runners seen online for the first time (their pool works)."""
    came_online: list[Runner] = []
    by_name = {runner.name: runner for runner in listed}
    for runner in store.runners(states=[*REGISTERED, RunnerState.CREATING]):
        if runner.target != target_key:
            continue
        seen = by_name.get(runner.name)
        if seen is None:
            if runner.state in (RunnerState.IDLE, RunnerState.BUSY):
                # A JIT runner leaves GitHub's list once its job is over.
                move(store, runner, RunnerState.FINISHED, now, "no longer registered in GitHub")
            continue
        if runner.github_id is None and not amend(
            store, runner, "listed in GitHub", github_id=seen.id
        ):
            continue
        if runner.state in (RunnerState.CREATING, RunnerState.BOOTING) and (
            seen.busy or seen.online
        ):
            came_online.append(runner)
        if seen.busy and runner.state is not RunnerState.BUSY:
            move(store, runner, RunnerState.BUSY, now, "GitHub shows it busy")
        elif seen.online and not seen.busy and runner.state is RunnerState.BOOTING:
            move(store, runner, RunnerState.IDLE, now, "online in GitHub")
    return came_online


def apply_instances(
    store: Store, pool: str, instances: Iterable[Instance], now: float
) -> list[tuple[Runner, Instance]]:
    """The backend's view, as listed from ``now`` on: an exited instance means its runner is
    done.

    Not for a runner being created: its create call is under way and owns it (a half-made
    instance may list as stopped: garm's providers have no state for it); a crash mid-create
    is :meth:`Actions.recover`'s and the janitor's ``create_timeout``'s. Nor for a runner that
    moved since the listing began: what the list says of it is stale (its create returned
    meanwhile).

    Returns the runners whose instance failed (a non-zero exit code) while they were
    registered, with the state they were in: a runner killed mid-job, or one that crashed
    before it came online. The caller counts and reports them."""
    failed: list[tuple[Runner, Instance]] = []
    for instance in instances:
        if instance.running:
            continue
        runner = store.get_runner(instance.runner_name)
        if runner is None or runner.pool != pool or runner.state_since > now:
            continue
        if runner.state in REGISTERED:
            if instance.exit_code not in (None, 0):
                failed.append((replace(runner), instance))
            detail = (
                f" ({instance.detail.strip().splitlines()[-1]})" if instance.detail.strip() else ""
            )
            move(
                store,
                runner,
                RunnerState.FINISHED,
                now,
                f"instance exited with code {instance.exit_code}{detail}",
            )
    return failed
