"""A runner is never created for a job GitHub last called queued long ago without asking
GitHub again (issue 12: with polling only, a job that had finished while the poll's re-check
failed made the daemon boot a runner that idled until its timeout)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import QUEUED_RECHECK, MakeRig, Rig, settle


def _get_jobs(world: Rig) -> list[str]:
    return [subject for _, op, subject in world.journal if op == "get_job"]


async def test_a_fresh_queued_job_gets_a_runner_without_a_re_read(world: Rig) -> None:
    await world.queue(1)
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert _get_jobs(world) == []


async def test_a_stale_queued_job_that_finished_meanwhile_gets_no_runner(world: Rig) -> None:
    queued = await world.queue(1)
    # The job finishes while its completed webhook is lost and no poll sees it.
    world.github.jobs[1] = replace(queued, state=JobState.COMPLETED, conclusion="success")
    world.clock.advance(QUEUED_RECHECK + 1)
    await world.reconcile()
    assert _get_jobs(world) == ["1"]
    assert world.runners() == []
    assert world.store.get_job(1).state is JobState.COMPLETED  # type: ignore[union-attr]


async def test_a_stale_queued_job_still_queued_is_confirmed_and_served(world: Rig) -> None:
    await world.queue(1)
    world.clock.advance(QUEUED_RECHECK + 1)
    await world.reconcile()
    assert _get_jobs(world) == ["1"]
    assert len(world.runners(RunnerState.BOOTING)) == 1
    # Confirmed just now: the next reconcile does not ask again.
    world.journal.clear()
    await world.reconcile()
    assert _get_jobs(world) == []


async def test_a_stale_job_whose_re_read_fails_is_no_demand_until_confirmed(world: Rig) -> None:
    await world.queue(1)
    world.clock.advance(QUEUED_RECHECK + 1)
    world.github.fail("get_job", times=1)
    await world.reconcile()
    assert world.runners() == []
    assert world.store.get_job(1).state is JobState.QUEUED  # type: ignore[union-attr]
    await world.reconcile()  # GitHub answers again: confirmed, served
    assert len(world.runners(RunnerState.BOOTING)) == 1


async def test_a_long_queue_behind_the_cap_is_not_re_read_while_nothing_can_start(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=1)
    for job_id in range(1, 6):
        await world.queue(job_id)
    await world.reconcile()  # one runner for the oldest; four wait for the cap
    world.clock.advance(QUEUED_RECHECK + 1)
    world.journal.clear()
    await world.reconcile()
    assert _get_jobs(world) == []  # the cap is full: nothing to create, nothing to ask


async def test_a_paused_core_budget_holds_no_reconcile(world: Rig) -> None:
    """GitHub paused the core budget for an hour (a secondary limit, or ``remaining: 0``):
    re-reading the stale job would wait for that inside the reconcile step, and no decision
    would be made meanwhile. The step does not wait: the stale job's state is unknown, so it
    stays demand as known, and the fresh one gets its runner at once."""
    await world.queue(1)
    world.clock.advance(QUEUED_RECHECK + 1)
    await world.queue(2)
    world.github.pause_core(world.clock, world.clock.now() + 3600.0)
    step = asyncio.create_task(world.reconcile())
    await settle()
    assert step.done(), "the reconcile step waits for the paused budget"
    await step
    assert world.clock.next_wakeup() is None  # nobody sleeps for the pause
    assert _get_jobs(world) == []
    # Both jobs are demand: the fresh one's runner and the stale one's as it was known.
    assert len(world.runners(RunnerState.BOOTING)) == 2


async def test_a_stale_job_whose_re_read_is_refused_by_a_rate_limit_stays_demand(
    world: Rig,
) -> None:
    """A refusal that says when to come back (``retry_after``: a spent budget, a secondary
    limit) says nothing of the job: it is served as it was known, not held until the reset."""
    await world.queue(1)
    world.clock.advance(QUEUED_RECHECK + 1)
    world.github.fail(
        "get_job", GitHubError("get-job: rate limit exhausted (core)", retry_after=600), times=1
    )
    await world.reconcile()
    assert _get_jobs(world) == ["1"]
    assert len(world.runners(RunnerState.BOOTING)) == 1
