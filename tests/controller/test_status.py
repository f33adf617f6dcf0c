"""What the status tells about the queue: the jobs waiting for a runner and why, and how long
the latest ones waited (what the status page plots)."""

from __future__ import annotations

import dataclasses

import pytest

from runnerscale.controller import loops
from runnerscale.model import JobState
from tests.controller.conftest import MakeRig, Rig


async def test_queued_jobs_are_listed_oldest_first_with_their_pools_reason(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=1)
    await world.queue(7)
    world.clock.advance(5)
    await world.queue(3)
    await world.queue(4, labels=("self-hosted", "gpu"))  # no pool: listed as unmatched
    await world.reconcile()

    status = world.controller.status
    assert [(job.id, job.pool) for job in status.queued] == [(7, "linux"), (3, "linux")]
    assert status.queued[0].created_at == status.queued[1].created_at - 5
    assert [job.id for job in status.unmatched] == [4]
    (pool,) = status.pools
    assert pool.reason.startswith("2 queued, 0 busy, 0 on the way, 0 idle: create 1 (cap 1)")
    assert "1 more wanted but the cap is reached" in pool.reason


async def test_a_started_job_leaves_its_queue_wait_in_the_status(world: Rig) -> None:
    queued = await world.queue(1)
    await world.reconcile()  # the job's pool is chosen
    world.clock.advance(12)
    started = world.job(1, JobState.IN_PROGRESS, runner_name="rs-linux-a")
    await world.deliver(dataclasses.replace(started, created_at=queued.created_at))
    await world.reconcile()

    status = world.controller.status
    assert status.queued == []
    (wait,) = status.queue_waits
    assert (wait.id, wait.repo, wait.pool, wait.wait) == (1, "acme/app", "linux", 12.0)
    assert wait.started_at == world.clock.now()


async def test_the_queue_waits_kept_are_the_latest_few(
    make_world: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loops, "RECENT_WAITS", 3)
    world = make_world()
    for job_id in range(1, 6):
        queued = await world.queue(job_id)
        await world.reconcile()
        world.clock.advance(job_id)
        started = world.job(job_id, JobState.IN_PROGRESS, runner_name=f"rs-linux-{job_id}")
        await world.deliver(dataclasses.replace(started, created_at=queued.created_at))
    await world.reconcile()

    waits = world.controller.status.queue_waits
    assert [(wait.id, wait.wait) for wait in waits] == [(3, 3.0), (4, 4.0), (5, 5.0)]


async def test_a_job_that_ran_between_two_polls_still_leaves_its_wait(world: Rig) -> None:
    queued = await world.queue(1)
    await world.reconcile()
    world.clock.advance(8)
    done = world.job(1, JobState.COMPLETED, runner_name="rs-linux-a")
    started = world.clock.now() - 2
    await world.deliver(dataclasses.replace(done, created_at=queued.created_at, started_at=started))
    await world.reconcile()

    (wait,) = world.controller.status.queue_waits
    assert (wait.id, wait.pool, wait.wait) == (1, "linux", 6.0)


async def test_jobs_of_no_pool_and_jobs_never_run_leave_no_wait(world: Rig) -> None:
    await world.queue(1, labels=("ubuntu-latest",))  # GitHub-hosted: not ours
    await world.queue(2)
    await world.reconcile()
    world.clock.advance(5)
    await world.deliver(world.job(1, JobState.IN_PROGRESS, labels=("ubuntu-latest",)))
    cancelled = world.job(2, JobState.COMPLETED)  # cancelled before any runner took it
    await world.deliver(dataclasses.replace(cancelled, runner_name=None, conclusion="cancelled"))
    await world.reconcile()

    assert world.controller.status.queue_waits == []
