"""Scale-down: only idle runners past ``idle_timeout`` and beyond ``min_idle`` go; GitHub is
asked first, and a 422 "busy" keeps the runner and its instance."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runnerscale.model import RunnerState
from runnerscale.protocols import DeleteOutcome
from tests.controller.conftest import IDLE_TIMEOUT, MakeRig, Rig


@dataclass(frozen=True)
class Case:
    id: str
    idle_for: float
    min_idle: int = 0
    github_says: DeleteOutcome | None = None
    #: The runner's state after the reconcile.
    state: RunnerState = RunnerState.IDLE
    #: Calls made about the runner, in order ("deleting"/"busy"/"gone" are store writes).
    ops: tuple[str, ...] = ()


CASES = [
    Case(
        "idle past idle_timeout: GitHub first, then the instance",
        idle_for=IDLE_TIMEOUT,
        state=RunnerState.GONE,
        ops=("deleting", "delete_runner", "delete", "gone"),
    ),
    Case(
        "already deregistered in GitHub: still removed",
        idle_for=IDLE_TIMEOUT + 100,
        github_says=DeleteOutcome.GONE,
        state=RunnerState.GONE,
        ops=("deleting", "delete_runner", "delete", "gone"),
    ),
    Case(
        "GitHub says busy (422): kept, now busy, instance untouched",
        idle_for=IDLE_TIMEOUT,
        github_says=DeleteOutcome.BUSY,
        state=RunnerState.BUSY,
        ops=("deleting", "delete_runner", "busy"),
    ),
    Case("not idle long enough: nothing", idle_for=IDLE_TIMEOUT - 1),
    Case("min_idle keeps it however long it idles", idle_for=10 * IDLE_TIMEOUT, min_idle=1),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_idle_runner_scale_down(make_world: MakeRig, case: Case) -> None:
    world = make_world(min_idle=case.min_idle)
    name = await world.idle_runner()
    if case.github_says is not None:
        world.github.delete_outcomes[name] = case.github_says

    world.clock.advance(case.idle_for)
    world.journal.clear()
    await world.reconcile()

    assert world.runner(name).state is case.state
    assert tuple(world.journal.ops(subject=name)) == case.ops
    if case.state is RunnerState.GONE:
        assert world.provider.find(name) is None
    else:
        assert world.provider.find(name) is not None  # never removed while it may run a job
        assert world.github.find(name) is not None
    assert len(world.runners()) == 1  # nothing was created in its place either


async def test_the_runner_kept_by_a_422_is_reaped_once_its_job_is_done(world: Rig) -> None:
    name = await world.idle_runner()
    world.github.delete_outcomes[name] = DeleteOutcome.BUSY
    world.clock.advance(IDLE_TIMEOUT)
    await world.reconcile()
    assert world.runner(name).state is RunnerState.BUSY

    # Its job ends: the JIT runner deregisters and its process exits.
    world.github.deregister(name)
    world.provider.exit(name)
    await world.poll()
    assert world.runner(name).state is RunnerState.FINISHED
    await world.reconcile()
    assert world.runner(name).state is RunnerState.GONE
    assert world.provider.instances == {}


async def test_only_the_surplus_goes_idle_longest_first(make_world: MakeRig) -> None:
    world = make_world(min_idle=1)
    first = await world.idle_runner()
    world.clock.advance(10)
    second = await world.idle_runner()
    world.clock.advance(10)
    third = await world.idle_runner()

    world.clock.advance(IDLE_TIMEOUT)
    await world.reconcile()
    assert world.states() == {
        first: RunnerState.GONE,
        second: RunnerState.GONE,
        third: RunnerState.IDLE,
    }
