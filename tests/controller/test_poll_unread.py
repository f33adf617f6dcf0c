"""A poll that could not read some repository: what it found elsewhere is taken, and that
repository's jobs are unknown, not gone (neither re-checked as unseen nor taken out of
demand). A poll that read none of a target's repositories fails the cycle (the loop backs
off), and still takes nothing for gone."""

from __future__ import annotations

import pytest

from runnerscale.model import JobState, RunnerState, Target
from runnerscale.protocols import GitHubError
from tests.controller.conftest import QUEUED_RECHECK, REPO_A, REPO_B, MakeRig, Rig

ORG = Target("org", "acme")


def _get_jobs(world: Rig) -> list[str]:
    return [subject for _, op, subject in world.journal if op == "get_job"]


async def polled_then_unreadable(world: Rig) -> None:
    """Job 5 of acme/app is found by a poll (no webhooks); then acme/app cannot be read."""
    world.github.put_job(world.job(5))
    await world.poll()
    assert world.store.get_job(5) is not None
    world.github.unreadable.add(REPO_A.name)


async def test_the_other_repositories_jobs_are_found_and_the_unread_ones_kept(
    make_world: MakeRig,
) -> None:
    world = make_world(targets=(ORG,))
    await polled_then_unreadable(world)
    world.github.put_job(world.job(6, repo=REPO_B.name))
    world.clock.advance(QUEUED_RECHECK)
    await world.poll()
    assert world.store.get_job(6) is not None  # acme/lib was read
    # Job 5 was not shown because acme/app could not be read: not asked for as if gone.
    assert _get_jobs(world) == []
    assert world.store.get_job(5).state is JobState.QUEUED  # type: ignore[union-attr]
    assert world.controller.errors["poll_repository"] == 1


async def test_each_poll_tells_its_metric_hook_how_many_repositories_it_left_unread(
    make_world: MakeRig,
) -> None:
    world = make_world(targets=(ORG,))
    told: list[int] = []
    world.controller.actions.events.unread = told.append
    await world.poll()
    assert told == []  # every repository read: nothing told
    world.github.unreadable.add(REPO_A.name)
    await world.poll()
    world.clock.advance(QUEUED_RECHECK)
    await world.poll()
    assert told == [1, 1]
    assert sum(told) == world.controller.errors["poll_repository"]


async def test_a_stale_job_of_an_unread_repository_stays_demand_when_its_re_read_fails(
    make_world: MakeRig,
) -> None:
    world = make_world(targets=(ORG,))
    await polled_then_unreadable(world)
    world.clock.advance(QUEUED_RECHECK + 1)
    await world.poll()
    world.github.fail("get_job")  # asking for the job fails too
    await world.reconcile()
    assert _get_jobs(world) == ["5"]
    assert len(world.runners(RunnerState.BOOTING)) == 1  # unknown, kept as it was: queued


async def test_a_poll_that_read_none_of_a_targets_repositories_fails_the_cycle(
    world: Rig,
) -> None:
    await polled_then_unreadable(world)  # acme/app is the target's one repository
    world.clock.advance(QUEUED_RECHECK)
    with pytest.raises(GitHubError):
        await world.poll()
    assert _get_jobs(world) == []
    assert world.store.get_job(5).state is JobState.QUEUED  # type: ignore[union-attr]
    world.github.unreadable.clear()  # GitHub answers again
    await world.poll()
    assert world.controller.errors["poll_repository"] == 1
