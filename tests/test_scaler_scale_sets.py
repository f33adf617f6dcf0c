"""The scaler on a scale-set pool: GitHub's assigned count is the demand (waiting + running)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runnerscale.model import Job, JobState, PoolSpec, Runner, RunnerState, Target
from runnerscale.scaler import decide

SET_LABELS = frozenset({"runnerscale-x64", "linux"})
IDLE, BUSY, BOOTING, FINISHED = (
    RunnerState.IDLE,
    RunnerState.BUSY,
    RunnerState.BOOTING,
    RunnerState.FINISHED,
)


def scale_set_pool(assigned: int | None, *, max_runners: int = 4, min_idle: int = 0) -> PoolSpec:
    return PoolSpec(
        name="ss",
        labels=SET_LABELS,
        max_runners=max_runners,
        min_idle=min_idle,
        assigned_jobs=assigned,
    )


def runner(name: str, state: RunnerState, *, idle_since: float = 0.0) -> Runner:
    return Runner(
        name=name,
        pool="ss",
        target="org:acme",
        state=state,
        created_at=0.0,
        state_since=0.0,
        idle_since=idle_since if state is IDLE else None,
        job_id=7 if state is BUSY else None,
    )


def queued_job(job_id: int) -> Job:
    return Job(
        id=job_id,
        repo="acme/app",
        labels=("runnerscale-x64",),
        state=JobState.QUEUED,
        created_at=0.0,
    )


@pytest.mark.parametrize(
    ("assigned", "states", "min_idle", "create", "desired"),
    [
        (0, [], 0, 0, 0),
        (3, [], 0, 3, 3),
        (3, [BUSY], 0, 2, 3),
        (3, [BUSY, BOOTING], 0, 1, 3),
        (3, [BUSY, BUSY, BUSY], 0, 0, 3),
        (2, [], 1, 3, 3),
        # More busy runners than assigned jobs (the count fell before the runner finished):
        # nothing waits.
        (1, [BUSY, BUSY], 0, 0, 2),
        # The cap holds whatever GitHub assigns.
        (9, [], 0, 4, 4),
        # Finished runners hold their slot until reaped.
        (4, [FINISHED, FINISHED], 0, 2, 4),
    ],
)
def test_assigned_jobs_are_the_demand(
    assigned: int, states: list[RunnerState], min_idle: int, create: int, desired: int
) -> None:
    runners = [runner(f"r{i}", state) for i, state in enumerate(states)]
    decided = decide([scale_set_pool(assigned, min_idle=min_idle)], [], runners, now=100.0).pools[
        "ss"
    ]
    assert (decided.create, decided.desired) == (create, desired)
    assert f"{assigned} assigned to the scale set" in decided.reason


def test_label_matched_queued_jobs_are_not_counted_twice() -> None:
    """A webhook or the poll saw the jobs GitHub assigned: the assigned count has them."""
    jobs = [queued_job(1), queued_job(2)]
    decision = decide([scale_set_pool(2)], jobs, [], now=0.0)
    assert decision.pools["ss"].create == 2
    assert decision.job_pools == {1: "ss", 2: "ss"}
    assert decision.unmatched == ()


def test_without_assigned_jobs_the_pool_counts_queued_jobs() -> None:
    decision = decide([scale_set_pool(None)], [queued_job(1)], [], now=0.0)
    assert decision.pools["ss"].create == 1


def test_idle_runners_go_when_nothing_is_assigned() -> None:
    runners = [runner("a", IDLE, idle_since=0.0), runner("b", IDLE, idle_since=10.0)]
    decided = decide([scale_set_pool(0)], [], runners, now=120.0).pools["ss"]
    assert decided.remove == ("a", "b")


def test_budget_and_backoff_hold_back_as_for_any_pool() -> None:
    pool = replace(scale_set_pool(3), budget_per_day=10.0)
    decided = decide([pool], [], [], now=0.0, spent={"ss": 10.0}).pools["ss"]
    assert (decided.create, decided.held_back, decided.held_back_by) == (0, 3, "budget")
    decided = decide([scale_set_pool(3)], [], [], now=0.0, backoff={"ss": 30.0}).pools["ss"]
    assert (decided.create, decided.held_back_by) == (0, "failure_backoff")


def test_runners_register_at_the_first_target() -> None:
    targets = [Target(kind="org", name="acme"), Target(kind="org", name="other")]
    decided = decide([scale_set_pool(2)], [], [], now=0.0, targets=targets).pools["ss"]
    assert decided.create_on == ("org:acme", "org:acme")
