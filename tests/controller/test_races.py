"""Writers that race on one runner: the one that moved it first wins, the late one changes
nothing and undoes only what it alone knows of (architecture.md section 8, now fixed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from runnerscale.model import Instance, JobState, RunnerState, Target
from runnerscale.protocols import JitConfig
from tests.controller.conftest import CREATE_TIMEOUT, Rig


async def settle() -> None:
    """Let every task run until all of them wait on the virtual clock."""
    for _ in range(100):
        await asyncio.sleep(0)


def hold_listings(world: Rig) -> tuple[asyncio.Event, asyncio.Event]:
    """From now on the backend's list takes its snapshot, sets the first event, and answers
    only once the second is set (``del world.provider.list`` ends it)."""
    listed = asyncio.Event()
    release = asyncio.Event()
    real_list = world.provider.list

    async def slow_list() -> list[Instance]:
        snapshot = await real_list()
        listed.set()
        await release.wait()
        return snapshot

    world.provider.list = slow_list  # type: ignore[method-assign]
    return listed, release


async def a_listing_across_a_create(
    world: Rig, listing: Callable[[], Coroutine[Any, Any, None]]
) -> str:
    """A job's runner created (by the create the test set up, taking 30 s) while ``listing``
    lists the backend: the listing begins during the create and ends after it returned. The
    runner is booting after the create and still after the listing; its name."""
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    listed, release = hold_listings(world)
    task = asyncio.create_task(listing())
    await listed.wait()
    world.clock.advance(30)
    await reconcile
    assert world.runner(runner.name).state is RunnerState.BOOTING
    release.set()
    await task
    assert world.runner(runner.name).state is RunnerState.BOOTING
    return runner.name


async def test_a_create_that_ends_after_the_janitor_gave_up_does_not_resurrect_it(
    world: Rig,
) -> None:
    world.provider.create_wait = lambda: world.clock.sleep(CREATE_TIMEOUT + 30)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    assert runner.state is RunnerState.CREATING  # the backend is still at it

    # The create outlasts the timeout: the janitor gives up on the runner and removes it.
    world.clock.advance(CREATE_TIMEOUT)
    await world.sweep()
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.github.find(runner.name) is None

    # Then the backend's create returns: the runner stays gone, the instance goes too.
    world.clock.advance(30)
    await reconcile
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.provider.instances == {}
    assert world.journal.ops(subject=runner.name) == [
        "pending",
        "generate_jitconfig",
        "creating",
        "create",
        "deleting",  # the janitor
        "delete_runner",
        "gone",
        "delete",  # the late create removes the instance nobody else knew of
    ]
    assert world.events == [
        ("cleaned", "linux", "create_timeout"),
        ("scaled", "linux", "delete"),
    ]
    assert world.controller.janitor.cleaned == {"create_timeout": 1}


async def test_a_late_jit_config_of_a_runner_given_up_on_is_deleted(world: Rig) -> None:
    """The janitor removes a ``pending`` runner (no registration known): the registration
    GitHub issues afterwards is undone by the creation itself, not left for the orphan sweep."""
    issued = asyncio.Event()
    release = asyncio.Event()
    real = world.github.generate_jitconfig

    async def slow_jitconfig(target: Target, name: str, labels: Sequence[str]) -> JitConfig:
        issued.set()
        await release.wait()
        return await real(target, name, labels)

    world.github.generate_jitconfig = slow_jitconfig  # type: ignore[method-assign]
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await issued.wait()
    (runner,) = world.runners()
    world.clock.advance(CREATE_TIMEOUT)
    await world.sweep()
    assert world.runner(runner.name).state is RunnerState.GONE

    release.set()
    await reconcile
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.github.registrations == {}
    assert world.provider.specs == []  # the backend was never asked
    assert world.journal.ops(subject=runner.name)[-2:] == ["generate_jitconfig", "delete_runner"]


async def test_an_operator_removing_a_runner_being_created_wins(world: Rig) -> None:
    world.provider.create_wait = lambda: world.clock.sleep(30)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    assert await world.controller.scale_down(runner_name=runner.name) == [runner.name]

    world.clock.advance(30)
    await reconcile
    assert world.runner(runner.name).state is RunnerState.GONE
    assert world.provider.instances == {}
    assert world.github.registrations == {}


async def test_two_removals_of_one_runner_count_it_once(world: Rig) -> None:
    """The janitor retries a removal the reconcile has in flight (section 8 said both would
    write ``gone`` and count the deletion twice)."""
    name = await world.busy_runner()
    world.provider.exit(name)
    await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED
    world.provider.delete_wait = lambda: world.clock.sleep(5)
    world.events.clear()
    reap = asyncio.create_task(world.reconcile())
    await settle()
    assert world.runner(name).state is RunnerState.DELETING
    retry = asyncio.create_task(world.sweep())
    await settle()
    world.clock.advance(5)
    await asyncio.gather(reap, retry)
    assert world.runner(name).state is RunnerState.GONE
    assert world.events == [("scaled", "linux", "delete")]


async def test_a_runner_that_took_a_job_before_its_create_returned_is_kept(world: Rig) -> None:
    """A slow backend call can return after the runner came online and took its job: the
    runner is at work, not given up on, so its instance is kept and recorded."""
    world.provider.create_wait = lambda: world.clock.sleep(30)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    await world.deliver(world.job(1, JobState.IN_PROGRESS, runner_name=runner.name))
    assert world.runner(runner.name).state is RunnerState.BUSY

    world.clock.advance(30)
    await reconcile
    kept = world.runner(runner.name)
    assert kept.state is RunnerState.BUSY  # not put back to booting
    instance = world.provider.find(runner.name)
    assert instance is not None
    assert kept.instance_id == instance.id
    assert "delete" not in world.journal.ops("provider")
    assert ("scaled", "linux", "create") in world.events


async def test_a_half_made_instance_listed_as_stopped_does_not_end_its_runners_creation(
    world: Rig,
) -> None:
    """A garm provider lists an instance its create is still making as stopped (it has no
    state for it): while the create call is under way, the runner is the create's, not done."""

    async def slow_create() -> None:
        (runner,) = world.runners()
        world.provider.add_instance(runner.name, running=False)
        await world.clock.sleep(30)

    world.provider.create_wait = slow_create
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (runner,) = world.runners()
    await world.poll()
    assert world.runner(runner.name).state is RunnerState.CREATING

    world.clock.advance(30)
    await reconcile
    assert world.runner(runner.name).state is RunnerState.BOOTING
    assert world.journal.ops("provider").count("create") == 1


async def test_a_listing_taken_before_a_create_returned_does_not_end_the_runner(
    world: Rig,
) -> None:
    """The backend's list began while the runner was being created (its instance half-made,
    stopped) and came back after the create did: what it says of the runner is stale."""

    async def slow_create() -> None:
        (runner,) = world.runners()
        world.provider.add_instance(runner.name, running=False)
        await world.clock.sleep(30)

    world.provider.create_wait = slow_create
    await a_listing_across_a_create(world, world.poll)


async def test_the_janitor_does_not_retry_a_removal_under_way(world: Rig) -> None:
    """An operator's removal waits on a slow backend delete; a sweep meanwhile leaves it to
    that call (a retry would finish it first, and the operator would be told it was kept)."""
    name = await world.booting_runner()
    world.provider.delete_wait = lambda: world.clock.sleep(30)
    removal = asyncio.create_task(world.controller.scale_down(runner_name=name))
    await settle()
    assert world.runner(name).state is RunnerState.DELETING

    world.clock.advance(10)
    sweep = asyncio.create_task(world.sweep())
    await settle()
    assert sweep.done(), "the sweep retried the removal under way (and waits on its delete)"
    assert world.journal.ops("provider").count("delete") == 1

    world.clock.advance(20)
    assert await removal == [name]
    assert world.runner(name).state is RunnerState.GONE


async def test_the_janitor_retries_a_removal_whose_call_hangs_past_the_delete_timeout(
    world: Rig,
) -> None:
    """A removal under way is its call's only for ``delete_timeout``: one that hangs (a backend
    call that never returns) must not keep its runner for ever."""
    name = await world.booting_runner()
    hang = asyncio.Event()
    waits = [hang.wait, None]  # the first delete never returns; the retry's does at once

    async def delete_wait() -> None:
        wait = waits.pop(0)
        if wait is not None:
            await wait()

    world.provider.delete_wait = delete_wait
    removal = asyncio.create_task(world.controller.scale_down(runner_name=name))
    await settle()
    assert world.runner(name).state is RunnerState.DELETING

    world.clock.advance(60)
    await world.sweep()
    assert world.runner(name).state is RunnerState.DELETING  # left to its call
    world.clock.advance(60)
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert world.journal.ops("provider").count("delete") == 2
    removal.cancel()


async def test_a_janitor_listing_that_missed_a_new_instance_does_not_lose_its_runner(
    world: Rig,
) -> None:
    """The janitor's listing began before a create returned (the instance not made yet), or
    just after (a backend listing new instances late): missing from it, the runner is not
    taken for lost, finished and replaced (CI saw a sixth EC2 instance for five runners)."""
    world.provider.create_wait = lambda: world.clock.sleep(30)
    runner = world.runner(
        await a_listing_across_a_create(world, world.controller.janitor.remove_instance_orphans)
    )

    # A listing begun a moment after the create returned that misses the instance (listed
    # late): still not lost.
    del world.provider.list  # answering at once again
    instance = world.provider.instances.pop(world.runner(runner.name).instance_id or "")
    world.clock.advance(1)
    await world.controller.janitor.remove_instance_orphans()
    assert world.runner(runner.name).state is RunnerState.BOOTING
    # Missing from a listing long after: lost.
    world.clock.advance(60)
    await world.controller.janitor.remove_instance_orphans()
    assert world.runner(runner.name).state is RunnerState.FINISHED
    assert instance.runner_name == runner.name
    assert len([op for op in world.journal.ops("provider") if op == "create"]) == 1
