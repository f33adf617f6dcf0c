"""Runners register where their jobs are; operators scale by hand within the same rules."""

from __future__ import annotations

import pytest

from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import QUEUED_RECHECK, REPO_A, REPO_B, MakeRig, Rig


async def test_runners_register_at_the_target_of_their_jobs(make_world: MakeRig) -> None:
    world = make_world(max_runners=5, targets=(REPO_B, REPO_A))  # B first: no default to A
    await world.queue(1, repo=REPO_A.name)
    await world.queue(2, repo=REPO_A.name)
    await world.reconcile()

    runners = world.runners()
    assert [runner.target for runner in runners] == [REPO_A.key, REPO_A.key]
    assert world.github.names(REPO_A) == {runner.name for runner in runners}
    assert world.github.names(REPO_B) == set()

    await world.queue(3, repo=REPO_B.name)
    await world.reconcile()
    (in_b,) = (runner for runner in world.runners() if runner.target == REPO_B.key)
    assert world.github.names(REPO_B) == {in_b.name}


async def test_each_target_polls_its_own_runners(make_world: MakeRig) -> None:
    world = make_world(targets=(REPO_A, REPO_B))
    await world.queue(1, repo=REPO_B.name)
    await world.reconcile()
    (runner,) = world.runners()
    world.github.set_runner(runner.name, online=True)
    await world.poll()
    assert world.runner(runner.name).state is RunnerState.IDLE


async def test_scale_up_by_hand_stops_at_the_cap(world: Rig) -> None:
    created = await world.controller.scale_up("linux", 5)
    assert len(created) == 3
    assert all(world.runner(name).state is RunnerState.BOOTING for name in created)
    assert world.provider.names() == set(created)
    assert await world.controller.scale_up("linux", 1) == []
    assert len(world.runners()) == 3


async def test_scale_down_a_pool_removes_idle_and_booting_never_busy(world: Rig) -> None:
    busy = await world.busy_runner()
    idle = await world.idle_runner()
    booting = await world.booting_runner()

    removed = await world.controller.scale_down(pool_name="linux")

    assert sorted(removed) == sorted([idle, booting])
    assert world.states() == {
        busy: RunnerState.BUSY,
        idle: RunnerState.GONE,
        booting: RunnerState.GONE,
    }
    assert world.provider.names() == {busy}
    assert world.github.names() == {busy}


async def test_scale_down_a_busy_runner_by_name_removes_nothing(world: Rig) -> None:
    busy = await world.busy_runner()
    world.journal.clear()
    assert await world.controller.scale_down(runner_name=busy) == []
    assert world.runner(busy).state is RunnerState.BUSY
    assert world.journal.ops() == []
    assert world.provider.names() == {busy}


async def test_scale_down_an_idle_runner_by_name(world: Rig) -> None:
    keep = await world.idle_runner()
    name = await world.idle_runner()
    assert await world.controller.scale_down(runner_name=name) == [name]
    assert world.runner(name).state is RunnerState.GONE
    assert world.runner(keep).state is RunnerState.IDLE


async def test_scale_down_an_unknown_runner_is_an_error(world: Rig) -> None:
    with pytest.raises(KeyError):
        await world.controller.scale_down(runner_name="rs-linux-nobody")


async def test_a_failing_target_does_not_stop_the_poll_of_the_others(
    make_world: MakeRig,
) -> None:
    world = make_world(targets=(REPO_A, REPO_B))
    await world.queue(1, repo=REPO_B.name)
    await world.reconcile()
    (in_b,) = world.runners()
    world.github.set_runner(in_b.name, online=True)
    in_a = await world.booting_runner()  # manual scale-up registers at the first target, A
    world.provider.exit(in_a)
    await world.queue(2, repo=REPO_A.name)
    await world.queue(3, repo=REPO_B.name)
    world.github.update_job(3, state=JobState.COMPLETED, conclusion="cancelled")

    world.github.unreachable.add(REPO_A.key)
    world.clock.advance(QUEUED_RECHECK)
    with pytest.raises(GitHubError):  # the loop still sees (and counts) the failure
        await world.poll()

    assert world.runner(in_b.name).state is RunnerState.IDLE  # B's runner list was read
    assert world.runner(in_a).state is RunnerState.FINISHED  # the backend was read
    # B's job that left the listing is rechecked. While webhooks arrive a poll does not list
    # A's queued job either way: it is asked for because it looks stuck (a runner of its
    # pool idles), though A's listing failed.
    assert world.journal.ops("github", subject="3") == ["get_job"]
    assert world.journal.ops("github", subject="2") == ["get_job"]
    assert world.store.get_job(3).state is JobState.COMPLETED  # type: ignore[union-attr]
    assert world.store.get_job(2).state is JobState.QUEUED  # type: ignore[union-attr]
