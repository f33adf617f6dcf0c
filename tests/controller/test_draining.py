"""A runner whose instance drains (its backend lists it with ``Instance.draining``: a spot
interruption notice) takes no new job: removed while it has none, left to finish the one it
has, never counted as free (issue 15)."""

from __future__ import annotations

import logging

import pytest

from runnerscale.controller.loops import DrainingRunner
from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import DeleteOutcome
from tests.controller.conftest import MakeRig, Rig

NOTICE = "spot interruption notice at 12:00:03"


def removals(world: Rig) -> list[str]:
    """Record the reasons of the removals begun from now on."""
    reasons: list[str] = []
    world.controller.actions.events.removing = lambda pool, reason: reasons.append(reason)
    return reasons


def drain_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "drains (" in r.getMessage()
    ]


async def test_an_idle_runner_is_deleted_in_github_first_then_removed_and_said_once(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    name = await world.idle_runner()
    reasons = removals(world)
    instance = world.provider.find(name)
    assert instance is not None
    world.provider.drain(name, NOTICE)
    world.journal.clear()
    with caplog.at_level(logging.INFO, logger="runnerscale"):
        await world.poll()
        await world.poll()
    assert world.runner(name).state is RunnerState.GONE
    assert [op for op in world.journal.ops(subject=name) if op.startswith("delete")] == [
        "delete_runner",  # GitHub first: it takes no job meanwhile
        "delete",
    ]
    assert reasons == ["interrupted"]
    (said,) = drain_warnings(caplog)
    assert said == (
        f"pool linux: the instance {instance.id} of runner {name} drains ({NOTICE}): "
        "it takes no job and is removed"
    )


async def test_a_booting_runner_is_removed_too(world: Rig) -> None:
    name = await world.booting_runner()
    world.provider.drain(name)
    await world.poll()
    assert world.runner(name).state is RunnerState.GONE
    assert world.provider.find(name) is None


async def test_a_queued_job_gets_another_runner(world: Rig) -> None:
    name = await world.idle_runner()
    world.provider.drain(name)
    await world.queue(7)
    await world.poll()
    await world.reconcile()
    (new,) = world.runners(RunnerState.BOOTING)
    assert new.name != name
    assert world.runner(name).state is RunnerState.GONE


async def test_one_that_takes_a_job_just_then_keeps_it_and_is_not_free(world: Rig) -> None:
    """GitHub's 422 when deleting it: it took a job meanwhile. It runs it; the scaler counts it
    busy, not free, so the next queued job gets a runner of its own."""
    name = await world.idle_runner()
    world.github.delete_outcomes[name] = DeleteOutcome.BUSY
    world.provider.drain(name, NOTICE)
    await world.poll()
    assert world.runner(name).state is RunnerState.BUSY
    assert world.provider.find(name) is not None
    took = world.github.put_job(world.job(7, JobState.IN_PROGRESS, runner_name=name))
    await world.deliver(took)
    await world.queue(8)
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    pool = world.controller.status.pools[0]
    assert pool.draining == [DrainingRunner(name, "busy", NOTICE)]
    assert "1 draining" in pool.reason


async def test_a_busy_runner_finishes_its_job_and_is_then_reaped(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await world.queue(7)
    await world.reconcile()
    (runner,) = world.runners(RunnerState.BOOTING)
    name = runner.name
    world.github.set_runner(name, online=True, busy=True)
    await world.deliver(
        world.github.update_job(7, state=JobState.IN_PROGRESS, runner_name=name, started_at=1.0)
    )
    world.provider.drain(name, NOTICE)
    with caplog.at_level(logging.INFO, logger="runnerscale"):
        await world.poll()
        await world.reconcile()
    assert world.runner(name).state is RunnerState.BUSY
    instance = world.provider.find(name)
    assert instance is not None
    assert drain_warnings(caplog) == [
        f"pool linux: the instance {instance.id} of runner {name} drains ({NOTICE}): "
        "it finishes its job and takes no other"
    ]
    # Its job ends: it is reaped like any finished runner, and forgotten as draining.
    world.github.update_job(7, state=JobState.COMPLETED, conclusion="success", completed_at=9.0)
    world.github.deregister(name)
    world.provider.exit(name, 0)
    await world.poll()
    await world.reconcile()
    await world.poll()
    assert world.runner(name).state is RunnerState.GONE
    assert world.pool.draining == {}


async def test_a_job_lost_with_its_draining_instance_is_rerun(make_world: MakeRig) -> None:
    world = make_world(rerun_lost_jobs=True)
    await world.queue(7)
    await world.reconcile()
    (runner,) = world.runners(RunnerState.BOOTING)
    world.github.set_runner(runner.name, online=True, busy=True)
    await world.deliver(
        world.github.update_job(
            7, state=JobState.IN_PROGRESS, runner_name=runner.name, started_at=1.0
        )
    )
    world.provider.drain(runner.name)
    await world.poll()
    # The spot instance is taken back mid-job; GitHub fails the job for its lost runner.
    world.provider.lose(runner.name)
    await world.sweep()
    (loss,) = world.store.job_losses()
    assert loss.job_id == 7
    world.clock.advance(600)
    await world.deliver(
        world.github.update_job(
            7, state=JobState.COMPLETED, conclusion="failure", completed_at=world.clock.now()
        )
    )
    await world.reconcile()
    assert [job_id for job_id, _ in world.github.reruns] == [7]


async def test_the_reason_from_outside_is_escaped_in_the_log(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """An instance may tag itself: what it says is written as untrusted text."""
    name = await world.idle_runner()
    world.provider.drain(name, "rebalance\n2025-01-01 forged: line")
    with caplog.at_level(logging.INFO, logger="runnerscale"):
        await world.poll()
    assert "\n2025-01-01 forged" not in caplog.text
    assert world.runner(name).state is RunnerState.GONE
