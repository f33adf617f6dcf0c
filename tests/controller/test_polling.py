"""Polling: the safety net for missed webhooks, the re-check of jobs nobody shows any more, and
forward-only job states whatever order observations arrive in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from runnerscale.controller.loops import HEARD_RUN_MEMORY
from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import QUEUED_RECHECK, Rig, settle


async def test_the_poll_records_active_jobs_and_the_next_reconcile_serves_them(
    world: Rig,
) -> None:
    world.github.put_job(world.job(1))
    world.github.put_job(world.job(2, JobState.IN_PROGRESS, runner_name="someone-elses"))
    world.github.put_job(world.job(3, JobState.COMPLETED))  # not active: the API omits it

    await world.poll()
    assert {job.id: job.state for job in world.store.jobs()} == {
        1: JobState.QUEUED,
        2: JobState.IN_PROGRESS,
    }
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert world.store.get_job(1).pool == "linux"  # type: ignore[union-attr]


@dataclass(frozen=True)
class Recheck:
    id: str
    #: What GitHub's job endpoint says now (None: 404, the job is gone).
    now: JobState | None
    conclusion: str | None


RECHECKS = [
    Recheck("completed elsewhere", JobState.COMPLETED, "success"),
    Recheck("deleted (404): treated as cancelled", None, "cancelled"),
]


@pytest.mark.parametrize("case", RECHECKS, ids=[case.id for case in RECHECKS])
async def test_a_queued_job_the_poll_no_longer_shows_is_rechecked(
    world: Rig, case: Recheck
) -> None:
    await world.queue(5)
    if case.now is None:
        del world.github.jobs[5]
    else:
        world.github.update_job(5, state=case.now, conclusion=case.conclusion)

    world.clock.advance(QUEUED_RECHECK - 1)
    await world.poll()
    assert "get_job" not in world.journal.ops("github")  # too early: not asked
    assert world.store.get_job(5).state is JobState.QUEUED  # type: ignore[union-attr]

    world.clock.advance(1)
    await world.poll()
    assert world.journal.ops("github", subject="5") == ["get_job"]
    job = world.store.get_job(5)
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert job.conclusion == case.conclusion

    await world.reconcile()
    assert world.runners() == []  # no demand left


async def test_a_job_still_queued_is_rechecked_at_most_once_per_interval(world: Rig) -> None:
    await world.queue(5)
    world.github.unlisted.add(5)  # the run listing misses it; the job endpoint still has it

    world.clock.advance(QUEUED_RECHECK)
    await world.poll()
    await world.poll()
    assert world.journal.ops("github", subject="5") == ["get_job"]
    assert world.store.get_job(5).state is JobState.QUEUED  # type: ignore[union-attr]

    world.clock.advance(QUEUED_RECHECK)
    await world.poll()
    assert world.journal.ops("github", subject="5") == ["get_job", "get_job"]


@dataclass(frozen=True)
class Order:
    id: str
    sequence: tuple[JobState, ...]
    job: JobState
    runner: RunnerState


ORDERS = [
    Order(
        "in order", (JobState.QUEUED, JobState.IN_PROGRESS), JobState.IN_PROGRESS, RunnerState.BUSY
    ),
    Order(
        "stale queued after in_progress",
        (JobState.QUEUED, JobState.IN_PROGRESS, JobState.QUEUED),
        JobState.IN_PROGRESS,
        RunnerState.BUSY,
    ),
    Order(
        "duplicate in_progress",
        (JobState.IN_PROGRESS, JobState.IN_PROGRESS),
        JobState.IN_PROGRESS,
        RunnerState.BUSY,
    ),
    Order(
        "completed before in_progress",
        (JobState.QUEUED, JobState.COMPLETED, JobState.IN_PROGRESS),
        JobState.COMPLETED,
        RunnerState.FINISHED,
    ),
    Order(
        "late queued after completed",
        (JobState.IN_PROGRESS, JobState.COMPLETED, JobState.QUEUED),
        JobState.COMPLETED,
        RunnerState.FINISHED,
    ),
]


@pytest.mark.parametrize("case", ORDERS, ids=[case.id for case in ORDERS])
async def test_job_states_only_move_forward(world: Rig, case: Order) -> None:
    name = await world.idle_runner()
    for state in case.sequence:
        runner_name = name if state is not JobState.QUEUED else None
        await world.deliver(world.job(9, state, runner_name=runner_name))
    job = world.store.get_job(9)
    assert job is not None
    assert job.state is case.job
    assert job.runner_name == name
    assert world.runner(name).state is case.runner
    # A stale queued observation creates no demand: no runner but the first is ever made.
    await world.reconcile()
    assert world.journal.ops("github").count("generate_jitconfig") == 1


# -- while webhooks arrive, polls leave repositories with active jobs to them: a job the poll
# -- did not show is asked for only when it looks stuck.


async def test_with_webhooks_a_job_queued_at_a_busy_pool_is_not_rechecked(world: Rig) -> None:
    await world.queue(5)
    await world.reconcile()  # a runner boots for it: the wait is explained
    [runner] = world.runners(RunnerState.BOOTING)
    world.github.unlisted.add(5)
    world.clock.advance(QUEUED_RECHECK * 2)
    await world.poll()
    assert "get_job" not in world.journal.ops("github")

    # Its runner is online and idle, yet the job is still queued: its in_progress webhook
    # may have been lost (or it was cancelled): ask.
    world.github.set_runner(runner.name, online=True)
    await world.poll()
    assert world.runner(runner.name).state is RunnerState.IDLE
    assert world.journal.ops("github", subject="5") == ["get_job"]


async def test_with_webhooks_rechecks_of_a_job_back_off(world: Rig) -> None:
    await world.queue(5, labels=("self-hosted", "gpu"))  # no pool serves it
    world.github.unlisted.add(5)
    checks = []
    for _ in range(17):
        world.clock.advance(60)
        await world.poll()
        checks.append(world.journal.ops("github", subject="5").count("get_job"))
    # Asked at 120 s, then 240, 480 and 960 s: the wait doubles.
    asked = [60 * minute for minute in range(1, 18) if checks[minute - 1] > checks[minute - 2]]
    assert asked == [120, 240, 480, 960]


async def test_with_webhooks_a_job_on_a_live_runner_of_ours_is_left_to_that_runner(
    world: Rig,
) -> None:
    name = await world.busy_runner()
    await world.deliver(world.github.put_job(world.job(7, JobState.IN_PROGRESS, runner_name=name)))
    world.github.unlisted.add(7)
    world.clock.advance(QUEUED_RECHECK * 3)
    await world.poll()
    assert "get_job" not in world.journal.ops("github")

    # The runner's instance ends, but the job's completed webhook never comes: ask.
    world.github.update_job(7, state=JobState.COMPLETED, conclusion="success")
    world.provider.exit(name)
    await world.poll()
    assert world.journal.ops("github", subject="7") == ["get_job"]
    assert world.store.get_job(7).state is JobState.COMPLETED  # type: ignore[union-attr]


async def test_without_webhooks_a_job_the_poll_stops_showing_is_rechecked(world: Rig) -> None:
    world.github.put_job(world.job(5))
    await world.poll()
    await world.reconcile()  # a runner boots for it (no webhook has ever arrived)
    assert not world.controller.webhooks_flow()
    world.github.unlisted.add(5)
    world.clock.advance(QUEUED_RECHECK)
    await world.poll()
    assert world.journal.ops("github", subject="5") == ["get_job"]


async def test_poll_hints_say_what_webhooks_told(world: Rig) -> None:
    assert world.controller.poll_hints().webhooks is False
    await world.queue(5, repo="Acme/App")
    # Those sent while the daemon was down are lost: the first poll reads as if none came.
    assert world.controller.poll_hints().webhooks is False
    await world.poll()
    hints = world.controller.poll_hints()
    assert hints.webhooks is True
    assert hints.active_repos == frozenset({"Acme/App"})
    assert hints.newest_jobs == {"acme/app": world.clock.now()}
    # Its run, in case a sibling's webhook was lost (the poll reads its jobs once).
    assert hints.heard_runs == {("Acme/App", 50): world.clock.now()}
    world.clock.advance(HEARD_RUN_MEMORY + 1)  # a day on, GitHub has cancelled its jobs
    assert world.controller.poll_hints().heard_runs == {}


async def test_with_webhooks_a_job_on_a_runner_of_ours_that_ended_is_asked_for_steadily(
    world: Rig,
) -> None:
    """GitHub fails such a job once its runner has been silent a while: its end (and a loss
    to re-run) must be heard of promptly, not after doubling waits."""
    name = await world.busy_runner()
    await world.deliver(world.github.put_job(world.job(7, JobState.IN_PROGRESS, runner_name=name)))
    world.github.unlisted.add(7)
    world.provider.exit(name, code=137)  # killed: GitHub has not noticed yet
    checks = []
    for _ in range(8):
        world.clock.advance(QUEUED_RECHECK / 2)
        await world.poll()
        checks.append(world.journal.ops("github", subject="7").count("get_job"))
    assert checks == [0, 1, 1, 2, 2, 3, 3, 4]  # every QUEUED_RECHECK, no doubling


async def test_a_runner_that_dies_while_thought_jobless_makes_the_next_poll_read_in_full(
    world: Rig,
) -> None:
    """It may have run a job whose webhooks were all lost: a poll that trusts webhooks would
    never read that job's repository, and the job's loss would go unseen."""
    await world.queue(5)
    await world.reconcile()
    [runner] = world.runners(RunnerState.BOOTING)
    await world.controller.poll_step()  # GitHub polled: the next poll is an interval away
    assert world.controller.poll_hints().webhooks is True
    world.journal.clear()
    world.provider.exit(runner.name, code=137)
    await world.controller.poll_step()  # the backends only: the death is seen
    assert "active_jobs" not in world.journal.ops("github")
    assert world.controller.poll_hints().webhooks is False  # until the next GitHub poll
    await world.controller.poll_step()  # due at once
    assert "active_jobs" in world.journal.ops("github")
    assert world.controller.poll_hints().webhooks is True


async def test_with_webhooks_a_stuck_job_is_asked_for_though_the_listing_failed(
    world: Rig,
) -> None:
    """Under a storm of errors some call of each poll fails; the targeted re-checks must not
    wait for a poll where none does. One that fails does not stop the others."""
    names = [await world.busy_runner() for _ in range(2)]
    for job_id, name in zip((7, 8), names, strict=True):
        job = world.job(job_id, JobState.IN_PROGRESS, runner_name=name)
        await world.deliver(world.github.put_job(job))
        world.github.unlisted.add(job_id)
        world.provider.exit(name, code=137)
    for job_id in (7, 8):
        world.github.update_job(job_id, state=JobState.COMPLETED, conclusion="failure")
    world.clock.advance(QUEUED_RECHECK)
    world.github.fail("list_runners")  # the poll's listing fails every time
    world.github.fail("get_job", times=1)  # and the first re-read
    with pytest.raises(GitHubError):
        await world.poll()
    assert world.journal.ops("github").count("get_job") == 2
    states = [world.store.get_job(job_id).state for job_id in (7, 8)]  # type: ignore[union-attr]
    assert sorted(states) == sorted([JobState.IN_PROGRESS, JobState.COMPLETED])


async def test_a_paused_core_budget_holds_no_poll(world: Rig) -> None:
    """GitHub paused the core budget for an hour: a poll's GitHub calls (the target's jobs
    and runners, a booting runner's list between polls, a stuck job's re-read) would wait
    for it, and the backends' listing after them. The poll reads nothing GitHub would hold
    it for (its jobs stay as known), and the backends are listed."""
    await world.idle_runner()  # while it idles, a queued job not heard of is re-read
    name = await world.booting_runner()
    await world.queue(1)
    world.provider.exit(name)
    world.clock.advance(QUEUED_RECHECK + 1)  # the job is stale; the runner is due a look-up
    world.github.pause_core(world.clock, world.clock.now() + 3600.0)
    world.journal.clear()
    for step in (world.controller.poll_once, world.controller.poll_backends):
        task = asyncio.create_task(step())
        await settle()
        assert task.done(), f"{step.__name__} waits for the paused budget"
        await task
    assert world.clock.next_wakeup() is None  # nobody sleeps for the pause
    assert world.journal.ops("github") == []
    assert world.runner(name).state is RunnerState.FINISHED  # its instance's exit was seen
    assert world.store.get_job(1).state is JobState.QUEUED  # type: ignore[union-attr]
