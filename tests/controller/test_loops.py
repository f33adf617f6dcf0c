"""The loops themselves, on the virtual clock: the webhook is the fast path, and a failing step
does not stop its loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import ProviderError
from tests.controller.conftest import Rig


async def settle() -> None:
    """Let every task run until all of them wait (on the virtual clock or the inbox)."""
    for _ in range(100):
        await asyncio.sleep(0)


@pytest.fixture
async def running(world: Rig) -> AsyncIterator[Rig]:
    await world.controller.start()
    await settle()
    yield world
    await world.controller.stop()


async def test_a_webhook_gets_a_runner_without_waiting_for_any_interval(running: Rig) -> None:
    world = running
    start = world.clock.now()
    world.controller.submit(world.github.put_job(world.job(1)))
    await settle()
    assert world.clock.now() == start  # no time passed: no interval on the hot path
    assert len(world.runners(RunnerState.BOOTING)) == 1


async def test_the_poll_loop_repairs_a_lost_webhook_on_its_interval(running: Rig) -> None:
    world = running
    world.github.put_job(world.job(1))  # its webhook never arrives
    await settle()
    assert world.runners() == []
    world.clock.advance(world.controller.settings.poll_interval)
    await settle()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert world.store.get_job(1).state is JobState.QUEUED  # type: ignore[union-attr]


async def test_a_failing_step_is_counted_and_its_loop_goes_on(running: Rig) -> None:
    world = running
    world.provider.fail("list", times=1)
    world.clock.advance(world.controller.settings.poll_interval)
    await settle()
    assert world.controller.errors["poll"] == 1
    name = await world.booting_runner()
    world.provider.exit(name)
    world.clock.advance(world.controller.settings.poll_interval)
    await settle()
    assert world.controller.errors["poll"] == 1
    # The poll saw the exit and the kicked reconcile reaped the runner.
    assert world.runner(name).state is RunnerState.GONE


async def test_a_failing_backend_does_not_stop_the_poll_of_github(world: Rig) -> None:
    name = await world.booting_runner()
    world.github.set_runner(name, online=True)
    world.provider.fail("list", times=1)
    with pytest.raises(ProviderError):
        await world.poll()
    assert world.runner(name).state is RunnerState.IDLE
