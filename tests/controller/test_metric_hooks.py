"""The controller tells its metric hooks each fact once, where it learns it: a runner's first
sign of life (and how long it took), a job's run time, why a runner is removed, a loop's tick
and each failed cycle, a recomputed status. (What the metrics make of them:
``tests/test_metrics.py``.)"""

from __future__ import annotations

from collections import Counter

from runnerscale.model import JobState, RunnerState
from tests.controller.conftest import BOOT_TIMEOUT, IDLE_TIMEOUT, Rig, settle

Heard = list[tuple[str, str, object]]


def listen(world: Rig) -> Heard:
    """Record the hooks this module is about (the rig records the older ones itself)."""
    heard: Heard = []
    events = world.controller.actions.events  # shared by the janitor, workers and re-runs
    events.online = lambda pool, seconds: heard.append(("online", pool, seconds))
    events.job_ran = lambda pool, seconds: heard.append(("job_ran", pool, seconds))
    events.removing = lambda pool, reason: heard.append(("removing", pool, reason))
    events.tick = lambda loop, seconds: heard.append(("tick", loop, seconds))
    events.refreshed = lambda: heard.append(("refreshed", "", None))
    return heard


def only(heard: Heard, hook: str) -> list[tuple[str, object]]:
    return [(subject, value) for name, subject, value in heard if name == hook]


async def test_a_runner_that_takes_its_job_at_once_is_online_since_it_was_decided_on(
    world: Rig,
) -> None:
    heard = listen(world)
    await world.queue(7)
    await world.reconcile()
    (runner,) = world.runners()
    world.clock.advance(12)
    world.github.set_runner(runner.name, online=True, busy=True)
    started = world.clock.now()
    await world.deliver(
        world.github.update_job(
            7, state=JobState.IN_PROGRESS, runner_name=runner.name, started_at=started
        )
    )
    assert only(heard, "online") == [("linux", 12.0)]
    # The job's end: it ran 40 s by GitHub's times; the runner's life tells nothing more.
    world.clock.advance(40)
    await world.deliver(
        world.github.update_job(
            7, state=JobState.COMPLETED, conclusion="success", completed_at=started + 40
        )
    )
    assert only(heard, "job_ran") == [("linux", 40.0)]
    assert only(heard, "online") == [("linux", 12.0)]


async def test_a_runner_seen_online_in_the_runner_list_is_online_once(world: Rig) -> None:
    heard = listen(world)
    name = await world.booting_runner()
    world.clock.advance(20)
    world.github.set_runner(name, online=True)
    await world.poll()
    assert world.runner(name).state is RunnerState.IDLE
    # An idle runner taking a job later is no new start.
    world.github.set_runner(name, online=True, busy=True)
    await world.poll()
    await world.deliver(world.github.put_job(world.job(3, JobState.IN_PROGRESS, runner_name=name)))
    assert only(heard, "online") == [("linux", 20.0)]


async def test_each_removal_is_told_once_with_its_reason(world: Rig) -> None:
    heard = listen(world)
    # Idle past its timeout: scaled down.
    idle = await world.idle_runner()
    world.clock.advance(IDLE_TIMEOUT + 1)
    await world.reconcile()
    assert world.runner(idle).state is RunnerState.GONE
    # Never online within the boot timeout: the janitor gives up on it.
    booting = await world.booting_runner()
    world.clock.advance(BOOT_TIMEOUT + 1)
    await world.sweep()
    assert world.runner(booting).state is RunnerState.GONE
    # An operator's scale-down.
    operated = await world.idle_runner()
    assert await world.controller.scale_down(runner_name=operated) == [operated]
    assert only(heard, "removing") == [
        ("linux", "idle"),
        ("linux", "boot_timeout"),
        ("linux", "operator"),
    ]


async def test_a_removal_retried_by_the_janitor_is_not_told_again(world: Rig) -> None:
    heard = listen(world)
    name = await world.idle_runner()
    world.provider.fail("delete", times=1)
    assert await world.controller.scale_down(runner_name=name) == []
    assert world.runner(name).state is RunnerState.DELETING
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert only(heard, "removing") == [("linux", "operator")]


async def test_a_reaped_runner_was_removed_because_its_job_was_done(world: Rig) -> None:
    heard = listen(world)
    name = await world.busy_runner()
    world.github.deregister(name)
    await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED
    await world.reconcile()
    assert only(heard, "removing") == [("linux", "job_done")]


async def test_every_recomputed_status_is_told(world: Rig) -> None:
    heard = listen(world)
    await world.reconcile()
    await world.reconcile()
    assert len(only(heard, "refreshed")) == 2


async def test_loops_with_an_interval_tell_their_ticks_and_the_events_loop_does_not(
    world: Rig,
) -> None:
    heard = listen(world)
    await world.controller.start()
    try:
        await settle()
        world.controller.submit(world.github.put_job(world.job(1)))  # the events loop wakes
        await settle()
        world.clock.advance(world.controller.settings.janitor_interval)
        await settle()
    finally:
        await world.controller.stop()
    loops = {loop for loop, _ in only(heard, "tick")}
    assert loops == {"reconcile", "poll", "janitor"}
    # The virtual clock stands still while a step runs.
    assert {seconds for _, seconds in only(heard, "tick")} == {0.0}


async def test_each_failed_cycle_is_told_as_it_is_counted_a_failed_worker_task_too(
    world: Rig,
) -> None:
    failed: list[str] = []
    world.controller.actions.events.failed = failed.append
    await world.controller.start()
    try:
        await settle()
        world.provider.fail("list", times=1)  # the poll's read of the backend's inventory
        world.clock.advance(world.controller.settings.poll_interval)
        await settle()
        world.provider.fail("create", RuntimeError("a bug"), times=1)  # no ProviderError
        world.controller.submit(world.github.put_job(world.job(1)))
        await settle()
    finally:
        await world.controller.stop()
    assert failed == ["poll", "worker"]
    assert Counter(failed) == world.controller.errors  # the status API's counts
