"""Leader or standby: the controller's loops run only while its daemon holds the lead.

A real controller (the controller tests' rig: fakes at our own boundaries, a real SQLite file,
a virtual clock) under :class:`Succession`, with a leadership the test hands out and takes back
(the real locks are tested in ``tests/store/test_leadership.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from runnerscale.controller.loops import Controller
from runnerscale.model import JobState, Runner, RunnerState
from runnerscale.store.leadership import Leader
from runnerscale.succession import CHECK_INTERVAL, HANDOVER_MARGIN, Succession
from tests.controller.conftest import Rig, make_world, world

__all__ = ["make_world", "world"]


@dataclass
class Lock:
    """The one lock of a state; ``holder`` None: free."""

    holder: str | None = None
    since: float = 0.0


@dataclass
class Switch:
    """A leadership over :class:`Lock`: what the test does to the lock, the daemon sees."""

    lock: Lock
    instance: str
    revocable: bool = False
    checks: int = 0
    held: bool = False

    def try_acquire(self) -> bool:
        """As the real ones: a hold that broke is a loss at this check (not a new lead)."""
        self.checks += 1
        if self.held:
            self.held = self.lock.holder == self.instance
            return self.held
        if self.lock.holder is None:
            self.lock.holder = self.instance
            self.lock.since = float(self.checks)
        self.held = self.lock.holder == self.instance
        return self.held

    def leader(self) -> Leader | None:
        return None if self.lock.holder is None else Leader(self.lock.holder, self.lock.since)

    def release(self) -> None:
        if self.held and self.lock.holder == self.instance:
            self.lock.holder = None
        self.held = False

    def close(self) -> None:
        self.release()


async def settle() -> None:
    """Let every task run until all of them wait (on the virtual clock, or a thread)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], what: str) -> None:
    """The checks run in threads: wait for their outcome (a deadline, not a timing)."""
    try:
        async with asyncio.timeout(10):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    await settle()  # and let what follows the check (starting, stopping) run


@pytest.fixture
async def daemons(world: Rig) -> AsyncIterator[list[Succession]]:
    """Successions made by ``make``; all stopped at the end."""
    made: list[Succession] = []
    yield made
    for succession in made:
        await succession.stop()


def succession(world: Rig, controller: Controller, switch: Switch) -> Succession:
    return Succession(switch, controller, world.clock, controller_id="rs-test")


async def test_a_sole_daemon_leads_as_soon_as_it_starts(
    world: Rig, daemons: list[Succession]
) -> None:
    switch = Switch(Lock(), "a:1")
    daemon = succession(world, world.controller, switch)
    daemons.append(daemon)
    await daemon.start()
    assert world.controller.running
    role = daemon.role()
    assert (role.leading, role.decided, role.instance, role.controller_id) == (
        True,
        True,
        "a:1",
        "rs-test",
    )
    assert role.leader is not None
    assert role.leader.id == "a:1"


async def test_a_standby_stores_webhooks_and_takes_over_when_the_leader_goes(
    world: Rig, daemons: list[Succession]
) -> None:
    lock = Lock(holder="other:1")
    standby = succession(world, world.controller, Switch(lock, "b:2"))
    daemons.append(standby)
    await standby.start()
    await settle()
    assert not world.controller.running
    role = standby.role()
    assert not role.leading
    assert role.decided
    assert role.leader == Leader("other:1", 0.0)

    # A webhook taken while standing by is in the store at once, for whoever leads.
    world.controller.submit(world.github.put_job(world.job(7)))
    stored = world.store.get_job(7)
    assert stored is not None
    assert stored.state is JobState.QUEUED
    assert world.runners() == []  # a standby acts on nothing

    lock.holder = None  # the leader died: its lock went with it
    world.clock.advance(CHECK_INTERVAL)
    await until(lambda: world.controller.running, "the standby to lead")
    assert standby.role().leading
    # Leading, it serves the job it stored as a standby.
    await until(lambda: len(world.runners()) == 1, "a runner for the stored job")


async def test_a_revocable_lock_is_acted_on_only_after_the_old_leader_stopped(
    world: Rig, daemons: list[Succession]
) -> None:
    lock = Lock()
    old_controller = world.controller
    old = succession(world, old_controller, Switch(lock, "a:1", revocable=True))
    daemons.append(old)
    first = asyncio.create_task(old.start())
    await until(lambda: lock.holder == "a:1", "the first daemon to take the lock")
    assert not old_controller.running  # even a sole daemon waits out a possible old leader
    world.clock.advance(CHECK_INTERVAL + HANDOVER_MARGIN)
    await first
    assert old_controller.running

    new_controller = world.restart()  # a second daemon on the same state
    new_switch = Switch(lock, "b:2", revocable=True)
    new = succession(world, new_controller, new_switch)
    daemons.append(new)
    await new.start()
    await settle()
    assert not new_controller.running

    lock.holder = None  # the server dropped the leader's session; it has not noticed yet
    checks = new_switch.checks
    world.clock.advance(CHECK_INTERVAL)
    await until(lambda: new_switch.checks > checks, "the standby's next check")
    await until(lambda: not old_controller.running, "the old leader to stop its loops")
    assert lock.holder == "b:2"
    assert not new_controller.running  # it holds the lock, and waits
    assert not old.role().leading

    world.clock.advance(CHECK_INTERVAL + HANDOVER_MARGIN)
    await until(lambda: new_controller.running, "the new leader to start its loops")
    assert new.role().leading
    assert old.role().leader == Leader("b:2", lock.since)


async def test_a_leader_that_cannot_start_gives_the_lock_back_and_tries_again(
    world: Rig, daemons: list[Succession]
) -> None:
    # A runner a crashed leader was creating: recovery asks the backend, which fails.
    world.store.add_runner(
        Runner(
            name="rs-linux-1",
            pool="linux",
            target=world.targets[0].key,
            state=RunnerState.CREATING,
            created_at=world.clock.now(),
            state_since=world.clock.now(),
        )
    )
    world.provider.fail("list")
    lock = Lock(holder="other:1")
    switch = Switch(lock, "b:2")
    standby = succession(world, world.controller, switch)
    daemons.append(standby)
    await standby.start()
    await settle()

    lock.holder = None
    checks = switch.checks
    world.clock.advance(CHECK_INTERVAL)
    await until(lambda: switch.checks > checks, "the standby's next check")
    await until(lambda: lock.holder is None, "the lock given back")
    assert not world.controller.running
    assert not standby.role().leading

    world.provider.heal("list")
    world.clock.advance(CHECK_INTERVAL)
    await until(lambda: world.controller.running, "the next try to lead")
    assert lock.holder == "b:2"


async def test_taking_the_lead_rereads_the_store_first(
    world: Rig, daemons: list[Succession]
) -> None:
    """``on_lead`` (the daemon's store rereading its view of the active rows) runs before the
    loops start, each time the lead is taken."""
    seen: list[bool] = []
    lock = Lock(holder="other:1")
    switch = Switch(lock, "b:2")
    daemon = Succession(
        switch,
        world.controller,
        world.clock,
        controller_id="rs-test",
        on_lead=lambda: seen.append(world.controller.running),
    )
    daemons.append(daemon)
    await daemon.start()
    await settle()
    assert seen == []
    lock.holder = None
    world.clock.advance(CHECK_INTERVAL)
    await until(lambda: world.controller.running, "the standby to lead")
    assert seen == [False]
