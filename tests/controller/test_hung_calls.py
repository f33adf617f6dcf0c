"""Calls that never return (an SSH connection that never answers, a Docker API call stuck, a
provider program that never exits) hold nothing for ever: a creation's calls are abandoned
past the create timeout and :data:`~runnerscale.controller.bounded.GRACE`, a backend delete
past the delete timeout and the grace; what an abandoned call may have made is undone like
any leftover. On the virtual clock: a hung call waits on an event nobody sets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import pytest

from runnerscale.controller.actions import BACKOFF_BASE
from runnerscale.controller.bounded import GRACE
from runnerscale.model import RunnerState, Target
from runnerscale.protocols import JitConfig, ProviderError
from tests.controller.conftest import CREATE_TIMEOUT, MakeRig, Rig, settle

#: A runner's journal up to its backend's create call.
UP_TO_CREATE = ["pending", "generate_jitconfig", "creating", "create"]
#: The delete timeout of the test rig (``JanitorSettings(delete_timeout=...)``).
DELETE_TIMEOUT = 120.0


def hang_first(world: Rig) -> Callable[[], Awaitable[None]]:
    """A ``create_wait``/``delete_wait``: the first call never returns, later ones at once."""
    calls = 0

    async def wait() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()

    return wait


async def test_a_create_that_never_returns_frees_its_slot_after_the_create_timeout(
    make_world: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    """One creation slot; its create hangs. The janitor gives the runner up at the create
    timeout, as before; the call is abandoned at the create timeout and the grace, which frees
    the slot: the pool, backed off for one failure, creates a new runner for the job."""
    world = make_world(max_runners=1, create_concurrency=1)
    world.provider.create_wait = hang_first(world)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (hung,) = world.runners()
    assert hung.state is RunnerState.CREATING

    world.clock.advance(CREATE_TIMEOUT)
    await world.sweep()
    assert world.runner(hung.name).state is RunnerState.GONE  # the janitor gave up on it
    assert world.github.find(hung.name) is None
    assert not reconcile.done()  # the create still holds the slot

    world.clock.advance(GRACE)
    await settle()
    assert reconcile.done(), "the hung create still holds its pool's only creation slot"
    await reconcile
    assert world.runner(hung.name).state is RunnerState.GONE  # as the janitor left it
    assert not world.pool.healthy
    assert world.pool.consecutive_failures == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        f"pool linux: creating {hung.name} failed: backend could not start it: "
        f"no answer within {CREATE_TIMEOUT + GRACE:.0f}s: abandoned"
    )
    assert world.provider.specs[0].jitconfig not in caplog.text

    world.clock.advance(BACKOFF_BASE)
    await world.reconcile()
    (new,) = world.runners(RunnerState.BOOTING)
    assert new.name != hung.name
    assert world.journal.ops(subject=hung.name) == [
        *UP_TO_CREATE,
        *("deleting", "delete_runner", "gone"),  # the janitor
    ]
    assert world.events == [
        ("cleaned", "linux", "create_timeout"),
        ("scaled", "linux", "delete"),
        ("error", "linux", "create"),
        ("scaled", "linux", "create"),
    ]


async def test_an_abandoned_create_leaves_no_registration_and_no_instance(world: Rig) -> None:
    """No janitor sweep before the call is abandoned: the create itself marks its runner
    ``failed`` and deletes its registration. The instance the backend made anyway (listed once
    the backend gets to it) is an orphan: the janitor's sweep removes it."""
    world.provider.create_wait = hang_first(world)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (hung,) = world.runners()

    world.clock.advance(CREATE_TIMEOUT + GRACE)
    await reconcile
    assert world.runner(hung.name).state is RunnerState.FAILED
    assert world.github.find(hung.name) is None
    # As a create that failed: the create undoes the registration.
    assert world.journal.ops(subject=hung.name) == [*UP_TO_CREATE, "failed", "delete_runner"]
    assert world.events == [("error", "linux", "create")]

    made = world.provider.add_instance(hung.name)
    await world.sweep()
    assert made.id not in world.provider.instances
    assert world.controller.janitor.cleaned["instance_orphan"] == 1


async def test_a_registration_that_never_returns_is_abandoned_and_its_leftover_swept(
    world: Rig,
) -> None:
    """GitHub issued the JIT config but its answer never comes: the registration is
    abandoned at the create timeout and the grace (the runner is ``failed``, nothing asked of
    the backend), and the registration, recorded nowhere, is deleted by the janitor's GitHub
    orphan sweep."""
    real = world.github.generate_jitconfig

    async def hung_jitconfig(target: Target, name: str, labels: Sequence[str]) -> JitConfig:
        await real(target, name, labels)
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    world.github.generate_jitconfig = hung_jitconfig  # type: ignore[method-assign]
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (hung,) = world.runners()
    assert world.github.find(hung.name) is not None

    world.clock.advance(CREATE_TIMEOUT + GRACE)
    await reconcile
    assert world.runner(hung.name).state is RunnerState.FAILED
    assert world.provider.specs == []
    assert world.events == [("error", "linux", "create")]

    await world.sweep()
    assert world.github.find(hung.name) is None
    assert world.controller.janitor.cleaned["github_orphan"] == 1


async def test_a_delete_that_never_returns_holds_neither_the_janitor_nor_the_runner(
    world: Rig,
) -> None:
    """A booting runner past its boot timeout: the janitor's removal of it hangs in the
    backend's delete. It is abandoned at the delete timeout and the grace, so the sweep ends
    (its other work is not held up for good); the runner stays ``deleting`` and the next
    sweep finishes its removal."""
    name = await world.booting_runner()
    world.provider.delete_wait = hang_first(world)
    world.clock.advance(world.spec.boot_timeout)
    sweep = asyncio.create_task(world.sweep())
    await settle()
    assert world.runner(name).state is RunnerState.DELETING
    assert not sweep.done()

    world.clock.advance(DELETE_TIMEOUT + GRACE)
    await sweep
    assert world.runner(name).state is RunnerState.DELETING
    assert ("error", "linux", "delete") in world.events

    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert world.provider.instances == {}
    assert world.journal.ops("provider").count("delete") == 2


async def test_a_reloaded_create_timeout_bounds_the_next_calls(world: Rig) -> None:
    """The bound is the janitor's timeout as it is now (a reload changes it in place)."""
    assert world.controller.actions.timeouts is world.controller.settings.janitor
    world.controller.settings.janitor.create_timeout = 30.0  # what a reload does
    world.provider.create_wait = hang_first(world)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (hung,) = world.runners()
    world.clock.advance(30.0 + GRACE)
    await reconcile
    assert world.runner(hung.name).state is RunnerState.FAILED


async def abandoned_listing(world: Rig, step: Coroutine[Any, Any, None]) -> None:
    """Run ``step`` while the backend's listing hangs: it waits until the listing's bound,
    then fails as when the backend cannot list."""
    task = asyncio.create_task(step)
    await settle()
    assert not task.done()
    world.clock.advance(world.controller.actions.timeouts.list_limit)
    await settle()
    assert task.done(), "a hung listing still holds the step"
    with pytest.raises(ProviderError, match="pool linux: listing its instances: no answer"):
        await task


def hang_always() -> Callable[[], Awaitable[None]]:
    """A ``read_wait``: the backend's ``list`` and ``get`` never answer."""

    async def wait() -> None:
        await asyncio.Event().wait()

    return wait


async def test_a_listing_that_never_returns_holds_neither_the_janitor_nor_its_other_duties(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The backend's ``list`` hangs for good. Each sweep's listing is abandoned at the delete
    timeout and the grace, as a listing that failed: with no inventory, nothing is removed as
    an orphan (an instance of no runner stays) and no runner is taken for lost; the sweep ends,
    so the next one still gives up on a runner past its boot timeout."""
    name = await world.booting_runner()
    orphan = world.provider.add_instance("linux-orphan")
    world.provider.read_wait = hang_always()
    limit = world.controller.actions.timeouts.list_limit
    assert limit == DELETE_TIMEOUT + GRACE

    sweep = asyncio.create_task(world.sweep())
    await settle()
    assert not sweep.done()
    world.clock.advance(limit)
    await settle()
    assert sweep.done(), "a hung listing still holds the janitor's sweep"
    await sweep
    assert orphan.id in world.provider.instances
    assert world.runner(name).state is RunnerState.BOOTING
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "janitor: cannot list instances of pool linux: pool linux: listing its instances: "
        f"no answer within {limit:.0f}s: abandoned"
    )

    world.clock.advance(world.spec.boot_timeout)
    sweep = asyncio.create_task(world.sweep())
    await settle()
    assert world.runner(name).state is RunnerState.GONE  # before the listing, as ever
    assert world.controller.janitor.cleaned["boot_timeout"] == 1
    world.clock.advance(limit)
    await sweep
    assert orphan.id in world.provider.instances
    assert world.controller.janitor.cleaned["instance_orphan"] == 0

    world.provider.read_wait = None  # the backend answers again: the orphan goes
    await world.sweep()
    assert orphan.id not in world.provider.instances


async def test_a_listing_that_never_returns_does_not_stop_the_poll(world: Rig) -> None:
    """The poll's listing is abandoned as the janitor's is, and the poll goes on as when the
    backend cannot list: GitHub's runner list is still read, and the poll reports the error."""
    name = await world.booting_runner()
    world.github.set_runner(name, online=True)
    world.clock.advance(60.0)  # a booting runner is looked up in GitHub after a minute
    world.provider.read_wait = hang_always()
    await abandoned_listing(world, world.poll())
    assert world.runner(name).state is RunnerState.IDLE


async def test_a_get_that_never_returns_is_taken_as_a_backend_that_cannot_say(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A removal GitHub refuses (the runner still busy there) asks the backend whether the
    instance still runs; that ``get`` hangs. It is abandoned at the same bound and taken as
    when the backend cannot say (it runs: the runner is busy again), with a warning."""
    name = await world.dead_runner_github_holds_busy()
    world.provider.read_wait = hang_always()
    limit = world.controller.actions.timeouts.list_limit

    sweep = asyncio.create_task(world.sweep())
    await settle()
    world.clock.advance(limit)
    await settle()
    assert world.runner(name).state is RunnerState.BUSY
    world.clock.advance(limit)  # the sweep's listing
    await settle()
    assert sweep.done(), "hung reads still hold the janitor's sweep"
    await sweep
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"runner {name}: cannot tell whether its instance runs: pool linux: reading "
        f"{world.runner(name).instance_id}: no answer within {limit:.0f}s: abandoned"
    ) in warnings


async def test_a_listing_that_never_returns_fails_startup_recovery_as_a_failed_one(
    world: Rig,
) -> None:
    """Startup recovery lists the backend for a runner a crash left ``creating``: a listing
    that hangs is abandoned at the same bound and fails recovery as a failed listing does,
    rather than holding the start for good."""
    world.provider.create_wait = hang_first(world)
    await world.queue(1)
    reconcile = asyncio.create_task(world.reconcile())
    await settle()
    (hung,) = world.runners(RunnerState.CREATING)
    reconcile.cancel()  # the daemon died here
    world.provider.read_wait = hang_always()
    await abandoned_listing(world, world.restart().actions.recover())
    assert world.runner(hung.name).state is RunnerState.CREATING
