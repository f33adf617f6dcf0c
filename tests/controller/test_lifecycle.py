"""A runner's life after creation: online -> idle -> busy -> finished -> reaped (gone)."""

from __future__ import annotations

import logging

import pytest

from runnerscale.controller.actions import BACKOFF_BASE
from runnerscale.model import JobState, RunnerState
from tests.controller.conftest import Rig


async def test_online_then_a_job_then_reaped_from_webhooks(world: Rig) -> None:
    await world.queue(7)
    await world.reconcile()
    (runner,) = world.runners()
    name = runner.name

    # The runner connects: GitHub lists it online and not busy.
    world.github.set_runner(name, online=True)
    await world.poll()
    runner = world.runner(name)
    assert runner.state is RunnerState.IDLE
    assert runner.idle_since == world.clock.now()

    # GitHub gives it the job.
    world.clock.advance(3)
    world.github.set_runner(name, online=True, busy=True)
    await world.deliver(world.github.update_job(7, state=JobState.IN_PROGRESS, runner_name=name))
    runner = world.runner(name)
    assert runner.state is RunnerState.BUSY
    assert runner.job_id == 7

    # The job completes; the JIT runner deregisters and its process ends.
    world.clock.advance(30)
    world.github.deregister(name)
    await world.deliver(world.github.update_job(7, state=JobState.COMPLETED, conclusion="success"))
    assert world.runner(name).state is RunnerState.FINISHED
    assert world.store.get_job(7).state is JobState.COMPLETED  # type: ignore[union-attr]

    world.journal.clear()
    await world.reconcile()
    assert world.runner(name).state is RunnerState.GONE
    # Its job is done, so GitHub removed the JIT runner itself: no call, just the instance.
    assert world.journal.ops(subject=name) == ["deleting", "delete", "gone"]
    assert world.provider.instances == {}
    assert world.github.registrations == {}
    # The job is served: nothing new is created for it.
    assert world.journal.ops().count("generate_jitconfig") == 0


async def test_the_poll_alone_drives_the_lifecycle_when_webhooks_are_lost(world: Rig) -> None:
    world.github.put_job(world.job(7))
    await world.poll()
    await world.reconcile()
    (runner,) = world.runners()
    name = runner.name

    world.github.set_runner(name, online=True)
    await world.poll()
    assert world.runner(name).state is RunnerState.IDLE

    world.github.set_runner(name, online=True, busy=True)
    world.github.update_job(7, state=JobState.IN_PROGRESS, runner_name=name)
    await world.poll()
    assert world.runner(name).state is RunnerState.BUSY
    assert world.store.get_job(7).state is JobState.IN_PROGRESS  # type: ignore[union-attr]

    # Done: the job leaves the active list and the runner leaves GitHub's list.
    world.github.update_job(7, state=JobState.COMPLETED, conclusion="success")
    world.github.deregister(name)
    await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED

    await world.reconcile()
    assert world.runner(name).state is RunnerState.GONE
    assert world.provider.instances == {}


async def test_busy_in_the_runner_list_before_the_job_event_arrives(world: Rig) -> None:
    name = await world.idle_runner()
    world.github.set_runner(name, online=True, busy=True)
    await world.poll()
    assert world.runner(name).state is RunnerState.BUSY


async def test_an_instance_that_exits_while_booting_is_reaped(world: Rig) -> None:
    await world.queue(1)
    await world.reconcile()
    (runner,) = world.runners()

    world.provider.exit(runner.name, code=1, detail="starting\nconfig rejected\n")
    await world.poll()
    assert world.runner(runner.name).state is RunnerState.FINISHED

    world.journal.clear()
    await world.reconcile()
    # Its registration (never online) is deleted in GitHub, then the dead instance removed.
    assert world.journal.ops(subject=runner.name)[:4] == [
        "deleting",
        "delete_runner",
        "delete",
        "gone",
    ]
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.github.find(runner.name) is None
    assert world.provider.find(runner.name) is None
    # The job is still queued; a runner that dies before coming online backs the pool off,
    # so the replacement comes once the backoff has passed.
    assert world.runners(RunnerState.BOOTING) == []
    world.clock.advance(BACKOFF_BASE)
    await world.reconcile()
    (replacement,) = world.runners(RunnerState.BOOTING)
    assert replacement.name != runner.name


async def test_a_runner_that_dies_mid_job_is_counted_and_logged_with_its_last_lines(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    name = await world.busy_runner()
    detail = "container abc exited with code 137; last lines of its log:\nstep 3 of 9"
    world.provider.exit(name, code=137, detail=detail)
    with caplog.at_level(logging.WARNING, logger="runnerscale"):
        await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED
    assert ("error", "linux", "instance_died") in world.events
    assert world.controller.errors["instance_died"] == 1
    assert any(
        f"runner {name} (pool linux) died while busy" in r.getMessage()
        and "step 3 of 9" in r.getMessage()
        for r in caplog.records
    ), caplog.text


async def test_a_runner_that_finishes_its_job_is_not_counted_as_dead(world: Rig) -> None:
    name = await world.busy_runner()
    world.provider.exit(name, code=0)
    await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED
    assert not [event for event in world.events if event[2] == "instance_died"]


async def test_a_dead_runner_github_still_holds_busy_stays_deleting_and_is_counted_once(
    world: Rig,
) -> None:
    name = await world.dead_runner_github_holds_busy()
    for _ in range(3):
        await world.sweep()  # retried: the instance is dead, so it is not "busy" again
        await world.poll()
        assert world.runner(name).state is RunnerState.DELETING
    assert [e for e in world.events if e[2] == "instance_died"] == [
        ("error", "linux", "instance_died")
    ]
    del world.github.delete_outcomes[name]  # GitHub lets go of the job
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
