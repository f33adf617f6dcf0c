"""The janitor: timeouts, retried removals, and orphans in GitHub and on the backend."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from runnerscale.model import JobState, Runner, RunnerState
from runnerscale.protocols import DeleteOutcome, GitHubError
from tests.controller.conftest import BOOT_TIMEOUT, CREATE_TIMEOUT, PREFIX, REPO_A, Rig, settle


async def test_a_runner_that_never_comes_online_is_removed_after_boot_timeout(
    world: Rig,
) -> None:
    name = await world.booting_runner()

    world.clock.advance(BOOT_TIMEOUT - 1)
    await world.sweep()
    assert world.runner(name).state is RunnerState.BOOTING
    assert world.controller.janitor.cleaned == {}

    world.clock.advance(1)
    world.journal.clear()
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert world.controller.janitor.cleaned == {"boot_timeout": 1}
    assert world.journal.ops(subject=name) == ["deleting", "delete_runner", "delete", "gone"]
    assert world.github.find(name) is None
    assert world.provider.find(name) is None


@pytest.mark.parametrize("state", [RunnerState.PENDING, RunnerState.CREATING])
async def test_a_creation_stuck_past_create_timeout_is_undone(
    world: Rig, state: RunnerState
) -> None:
    # A row left by a creation whose call never returned (GitHub or the backend hung).
    name = f"{PREFIX}stuck"
    now = world.clock.now()
    runner = Runner(name, "linux", REPO_A.key, state, created_at=now, state_since=now)
    if state is RunnerState.CREATING:
        runner.github_id = world.github.add_registration(REPO_A, name, online=False).id
    world.store.add_runner(runner)

    world.clock.advance(CREATE_TIMEOUT - 1)
    await world.sweep()
    assert world.runner(name).state is state

    world.clock.advance(1)
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert world.controller.janitor.cleaned == {"create_timeout": 1}
    assert world.github.registrations == {}
    assert world.provider.specs == []


async def test_a_removal_is_retried_until_github_and_the_backend_both_succeed(
    world: Rig,
) -> None:
    name = await world.booting_runner()
    world.provider.exit(name)
    world.github.fail("delete_runner")
    await world.poll()
    await world.reconcile()
    assert world.runner(name).state is RunnerState.DELETING
    assert world.provider.find(name) is not None  # GitHub first: the instance waits

    await world.sweep()  # GitHub still failing
    assert world.runner(name).state is RunnerState.DELETING
    assert world.github.find(name) is not None

    world.github.heal("delete_runner")
    world.provider.fail("delete")
    world.clock.advance(30)
    await world.sweep()  # GitHub done, the backend failing
    assert world.runner(name).state is RunnerState.DELETING
    assert world.github.find(name) is None
    assert world.provider.find(name) is not None

    world.provider.heal("delete")
    world.clock.advance(30)
    await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    assert world.provider.find(name) is None


async def test_a_retried_removal_makes_no_call_once_the_runners_job_is_known_done(
    world: Rig,
) -> None:
    # The runner's process ended with its job before the job's end was heard of, and GitHub
    # refused the delete (the core rate limit spent). Once the job's end is heard of, GitHub
    # has removed the JIT runner itself: the retry needs no call, so it does not wait for
    # GitHub's rate limit to reset (up to an hour).
    name = await world.busy_runner()
    await world.deliver(world.github.put_job(world.job(7, JobState.IN_PROGRESS, runner_name=name)))
    assert world.runner(name).job_id == 7
    world.github.fail("delete_runner", GitHubError("rate limit exhausted (core)", status=403))
    world.provider.exit(name, code=0)
    await world.poll()
    await world.reconcile()
    assert world.runner(name).state is RunnerState.DELETING
    assert world.provider.find(name) is not None  # GitHub first: the instance waits

    world.github.deregister(name)
    await world.deliver(world.github.update_job(7, state=JobState.COMPLETED, conclusion="success"))
    world.journal.clear()
    world.clock.advance(30)
    await world.sweep()  # GitHub still refuses deletes
    assert world.runner(name).state is RunnerState.GONE
    assert world.journal.ops(subject=name) == ["delete", "gone"]
    assert world.provider.find(name) is None


async def test_an_overdue_removal_is_warned_of_once_and_its_end_is_said(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A dead runner GitHub still holds busy stays ``deleting`` sweep after sweep.
    name = await world.dead_runner_github_holds_busy()
    with caplog.at_level(logging.INFO, logger="runnerscale.janitor"):
        for _ in range(6):
            world.clock.advance(60)
            await world.sweep()
        assert world.runner(name).state is RunnerState.DELETING
        del world.github.delete_outcomes[name]  # GitHub lets go of the job
        world.clock.advance(60)
        await world.sweep()
    assert world.runner(name).state is RunnerState.GONE
    said = [r.getMessage() for r in caplog.records if r.name == "runnerscale.janitor"]
    assert [m for m in said if "removal pending" in m] == [
        f"runner {name}: removal pending for 120s (retried at every sweep until it is done)"
    ]
    assert said[-1] == f"runner {name}: overdue removal ended after 420s: gone"


@dataclass(frozen=True)
class Orphan:
    id: str
    name: str
    busy: bool = False
    #: What the store holds for it (None: nothing).
    stored: RunnerState | None = None
    deleted: bool = False


ORPHANS = [
    Orphan("prefix, unknown to the store", f"{PREFIX}unknown", deleted=True),
    Orphan("prefix, gone in the store", f"{PREFIX}was-gone", stored=RunnerState.GONE, deleted=True),
    Orphan(
        "prefix, failed in the store", f"{PREFIX}failed", stored=RunnerState.FAILED, deleted=True
    ),
    Orphan("prefix, unknown but busy: never touched", f"{PREFIX}busy", busy=True),
    Orphan(
        "prefix, gone but busy: never touched",
        f"{PREFIX}gone-busy",
        busy=True,
        stored=RunnerState.GONE,
    ),
    Orphan("prefix, live in the store", f"{PREFIX}live", stored=RunnerState.IDLE),
    Orphan("prefix, pending in the store", f"{PREFIX}pending", stored=RunnerState.PENDING),
    Orphan("no prefix: someone else's", "build-box-3"),
    Orphan("another pool's style of name", "rs-linuxarm-1"),
]


@pytest.mark.parametrize("orphan", ORPHANS, ids=[orphan.id for orphan in ORPHANS])
async def test_github_orphans(world: Rig, orphan: Orphan) -> None:
    registration = world.github.add_registration(REPO_A, orphan.name, busy=orphan.busy)
    if orphan.stored is not None:
        now = world.clock.now()
        world.store.add_runner(
            Runner(
                orphan.name,
                "linux",
                REPO_A.key,
                orphan.stored,
                created_at=now,
                state_since=now,
                github_id=registration.id,
            )
        )

    await world.sweep()

    assert (world.github.find(orphan.name) is None) is orphan.deleted
    assert world.controller.janitor.cleaned == ({"github_orphan": 1} if orphan.deleted else {})
    if orphan.stored is not None:
        assert world.runner(orphan.name).state is orphan.stored


async def test_a_backend_instance_without_a_live_runner_is_removed(world: Rig) -> None:
    live = await world.idle_runner()
    gone = await world.idle_runner()
    await world.controller.scale_down(runner_name=gone)
    assert world.runner(gone).state is RunnerState.GONE
    stray = world.provider.add_instance(f"{PREFIX}never-heard-of")
    revived = world.provider.add_instance(gone)  # the backend lost a delete and re-listed it

    await world.sweep()

    assert set(world.provider.instances) == {world.runner(live).instance_id}
    assert stray.id not in world.provider.instances
    assert revived.id not in world.provider.instances
    assert world.controller.janitor.cleaned == {"instance_orphan": 2}
    assert world.runner(live).state is RunnerState.IDLE


async def test_a_leftover_of_an_interrupted_create_is_removed_once_past_the_create_timeout(
    world: Rig,
) -> None:
    # What a kill -9 in the middle of a create leaves (a folder without its record, a
    # container never started): of no runner, of a runner given up on, of one being created.
    made = world.clock.now()
    unknown = world.provider.add_instance(f"{PREFIX}never-heard-of", leftover_since=made)
    gone = await world.idle_runner()
    await world.controller.scale_down(runner_name=gone)
    given_up = world.provider.add_instance(gone, leftover_since=made)
    creating = f"{PREFIX}being-created"
    world.store.add_runner(
        Runner(
            creating, "linux", REPO_A.key, RunnerState.CREATING, created_at=made, state_since=made
        )
    )
    in_flight = world.provider.add_instance(creating, leftover_since=made)

    world.clock.advance(CREATE_TIMEOUT - 1)
    await world.controller.janitor.remove_instance_orphans()
    assert set(world.provider.instances) == {unknown.id, given_up.id, in_flight.id}
    assert world.controller.janitor.cleaned == {}

    world.clock.advance(1)
    await world.controller.janitor.remove_instance_orphans()
    assert set(world.provider.instances) == {in_flight.id}  # its runner is live: not touched
    assert world.controller.janitor.cleaned == {"interrupted_create": 2}
    assert world.runner(creating).state is RunnerState.CREATING


async def test_a_failed_instance_nobody_knew_is_reported_with_its_end_once(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"{PREFIX}never-heard-of"
    world.provider.add_instance(name)
    world.provider.exit(name, 3, "container abc exited with code 3; last lines:\nboom")
    with caplog.at_level(logging.INFO, logger="runnerscale"):
        await world.sweep()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in warnings if "boom" in m]) == 1, warnings
    assert world.provider.instances == {}


async def test_a_live_runner_whose_instance_vanished_becomes_finished(world: Rig) -> None:
    name = await world.idle_runner()
    world.provider.lose(name)

    await world.sweep()
    assert world.runner(name).state is RunnerState.FINISHED
    assert world.controller.janitor.cleaned == {"instance_lost": 1}

    await world.reconcile()  # reaped: its registration is deleted, its instance is no more
    assert world.runner(name).state is RunnerState.GONE
    assert world.github.find(name) is None


async def test_a_boot_timeout_never_removes_a_runner_github_says_is_busy(world: Rig) -> None:
    # It came online and took a job between two polls: the 422 keeps it.
    name = await world.booting_runner()
    world.github.delete_outcomes[name] = DeleteOutcome.BUSY
    world.clock.advance(BOOT_TIMEOUT)
    await world.sweep()
    assert world.runner(name).state is RunnerState.BUSY
    assert world.provider.find(name) is not None
    assert world.github.find(name) is not None


async def test_a_runner_online_but_not_yet_seen_is_not_given_up_at_its_boot_timeout(
    world: Rig,
) -> None:
    name = await world.booting_runner()
    world.github.set_runner(name, online=True)  # online, but no poll has seen it yet
    world.clock.advance(BOOT_TIMEOUT + 1)
    await world.sweep()
    assert world.runner(name).state is RunnerState.IDLE
    assert world.github.find(name) is not None


async def test_a_paused_core_budget_holds_no_sweep(world: Rig) -> None:
    """GitHub paused the core budget for an hour: each GitHub call of the sweep (a timed-out
    boot's runner list, a delete, the orphan sweep's lists) would wait for it, holding the
    backend's clean-up meanwhile. The sweep skips what would wait, does the rest, and does
    the skipped part once the pause is over."""
    booting = await world.booting_runner()
    deleting = await world.booting_runner()
    world.provider.exit(deleting)
    world.github.fail("delete_runner", times=1)
    await world.poll()
    await world.reconcile()
    assert world.runner(deleting).state is RunnerState.DELETING
    orphan = world.github.add_registration(REPO_A, f"{PREFIX}orphan")
    stray = world.provider.add_instance(f"{PREFIX}never-heard-of")
    world.clock.advance(BOOT_TIMEOUT)
    world.github.pause_core(world.clock, world.clock.now() + 3600.0)
    world.journal.clear()

    sweep = asyncio.create_task(world.sweep())
    await settle()
    assert sweep.done(), "the sweep waits for the paused budget"
    await sweep
    assert world.clock.next_wakeup() is None  # nobody sleeps for the pause
    assert world.journal.ops("github") == []
    assert stray.id not in world.provider.instances  # the backend's clean-up went on
    assert world.runner(booting).state is RunnerState.BOOTING  # its list is held: not given up
    assert world.runner(deleting).state is RunnerState.DELETING
    assert world.github.find(orphan.name) is not None

    world.clock.advance(3600.0)
    await world.sweep()
    assert world.runner(booting).state is RunnerState.GONE
    assert world.runner(deleting).state is RunnerState.GONE
    assert world.github.find(orphan.name) is None
    assert world.controller.janitor.cleaned == {
        "instance_orphan": 1,
        "boot_timeout": 1,
        "github_orphan": 1,
    }
