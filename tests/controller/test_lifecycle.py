"""A runner's life after creation: online -> idle -> busy -> finished -> reaped (gone)."""

from __future__ import annotations

from runnerscale.model import JobState, RunnerState
from tests.controller.conftest import World


async def test_online_then_a_job_then_reaped_from_webhooks(world: World) -> None:
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
    # GitHub first (already gone: success), then the instance.
    assert world.journal.ops(subject=name) == ["deleting", "delete_runner", "delete", "gone"]
    assert world.provider.instances == {}
    assert world.github.registrations == {}
    # The job is served: nothing new is created for it.
    assert world.journal.ops().count("generate_jitconfig") == 0


async def test_the_poll_alone_drives_the_lifecycle_when_webhooks_are_lost(world: World) -> None:
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


async def test_busy_in_the_runner_list_before_the_job_event_arrives(world: World) -> None:
    name = await world.idle_runner()
    world.github.set_runner(name, online=True, busy=True)
    await world.poll()
    assert world.runner(name).state is RunnerState.BUSY


async def test_an_instance_that_exits_while_booting_is_reaped(world: World) -> None:
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
    # The job is still queued: the same reconcile starts a replacement.
    (replacement,) = world.runners(RunnerState.BOOTING)
    assert replacement.name != runner.name
