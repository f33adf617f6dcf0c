"""CrashError recovery: a daemon killed between a state write and its side effect is repaired by
``Actions.recover`` on the next start, on the same database file.

The crash is a :class:`CrashError` raised by a fake at the exact point (before or after its side
effect), which stops ``start_runner`` there just as ``kill -9`` would: nothing after it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runnerscale.model import RunnerState
from tests.controller.conftest import CREATE_TIMEOUT, Rig
from tests.controller.fakes import CrashError


@dataclass(frozen=True)
class Case:
    id: str
    #: (fake, operation, crash after the side effect?)
    crash: tuple[str, str, bool]
    #: The state the crash leaves in the store.
    left: RunnerState
    #: The state after ``recover``.
    recovered: RunnerState
    #: Whether GitHub holds a registration right after ``recover`` (a janitor orphan, or the
    #: adopted runner's).
    registered: bool
    instance: bool


CASES = [
    Case(
        "pending, GitHub never asked: cleaned",
        crash=("github", "generate_jitconfig", False),
        left=RunnerState.PENDING,
        recovered=RunnerState.GONE,
        registered=False,
        instance=False,
    ),
    Case(
        "pending, GitHub registered it unseen: cleaned, the janitor takes the registration",
        crash=("github", "generate_jitconfig", True),
        left=RunnerState.PENDING,
        recovered=RunnerState.GONE,
        registered=True,
        instance=False,
    ),
    Case(
        "creating, instance on the backend: adopted",
        crash=("provider", "create", True),
        left=RunnerState.CREATING,
        recovered=RunnerState.BOOTING,
        registered=True,
        instance=True,
    ),
    Case(
        "creating, no instance: registration deleted, gone",
        crash=("provider", "create", False),
        left=RunnerState.CREATING,
        recovered=RunnerState.GONE,
        registered=False,
        instance=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_recover_after_a_crash_during_creation(world: Rig, case: Case) -> None:
    who, operation, after = case.crash
    fake = world.github if who == "github" else world.provider
    fake.fail(operation, CrashError(f"killed during {operation}"), times=1, after=after)
    await world.queue(1)
    with pytest.raises(CrashError):
        await world.reconcile()
    (runner,) = world.runners()
    name = runner.name
    assert runner.state is case.left

    restarted = world.restart()
    assert world.runner(name).state is case.left  # read back from the file
    world.journal.clear()
    await restarted.actions.recover()

    recovered = world.runner(name)
    assert recovered.state is case.recovered
    assert (world.github.find(name) is not None) is case.registered
    assert (world.provider.find(name) is not None) is case.instance
    assert "create" not in world.journal.ops("provider")  # recovery never creates
    assert "generate_jitconfig" not in world.journal.ops("github")
    if case.recovered is RunnerState.BOOTING:
        instance = world.provider.find(name)
        assert instance is not None
        assert recovered.instance_id == instance.id
        assert recovered.github_id == world.github.find(name).id  # type: ignore[union-attr]

    # The restarted daemon's ordinary loops leave nothing behind but what serves the job.
    await restarted.poll_once()
    await restarted.janitor.sweep()
    await restarted.reconcile_once()
    live = world.runners(*(state for state in RunnerState if state.live))
    assert len(live) == 1  # the adopted runner, or one replacement for the queued job
    (survivor,) = live
    assert survivor.state is RunnerState.BOOTING
    assert world.github.names() == {survivor.name}
    assert world.provider.names() == {survivor.name}


async def test_a_leftover_of_an_interrupted_create_is_not_adopted_and_is_swept(
    world: Rig,
) -> None:
    # Killed part-way through the backend's create: it made something it never finished (a
    # folder without its record, a container never started), listed as ``incomplete``.
    world.provider.fail("create", CrashError("killed during create"), times=1)
    await world.queue(1)
    with pytest.raises(CrashError):
        await world.reconcile()
    (runner,) = world.runners()
    name = runner.name
    world.provider.add_instance(name, leftover_since=world.clock.now())

    restarted = world.restart()
    await restarted.actions.recover()
    assert world.runner(name).state is RunnerState.GONE  # not adopted: it runs no runner
    assert world.github.find(name) is None
    assert world.provider.find(name) is not None  # a create may still be at it: not yet

    world.clock.advance(CREATE_TIMEOUT)
    await restarted.janitor.remove_instance_orphans()
    assert world.provider.find(name) is None
    assert restarted.janitor.cleaned == {"interrupted_create": 1}
