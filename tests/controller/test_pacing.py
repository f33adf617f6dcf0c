"""How often the loops run: the poll interval the GitHub client asks for, and exponential
backoff with jitter when a loop keeps failing (nothing retries in a tight loop)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from runnerscale.controller.loops import BOOTING_CHECK_AFTER, LOOP_BACKOFF_CAP
from runnerscale.model import RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import Rig


class RecordingSleeps:
    """Stands in for the clock's sleep: records, and stops the loop after ``limit`` sleeps."""

    def __init__(self, limit: int) -> None:
        self.slept: list[float] = []
        self.limit = limit

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) >= self.limit:
            raise asyncio.CancelledError


async def run_loop(world: Rig, outcomes: list[bool], sleeps: int) -> list[float]:
    """Run the poll loop over steps that fail (False) or succeed (True); return its sleeps."""
    controller = world.controller
    recorder = RecordingSleeps(sleeps)
    controller.clock.sleep = recorder  # type: ignore[method-assign]
    steps = iter(outcomes)

    async def step() -> None:
        if not next(steps, True):
            raise GitHubError("boom")

    task = asyncio.create_task(controller._forever("poll", step, "poll_interval"))
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return recorder.slept


async def test_failures_back_off_exponentially_with_jitter_and_recover(world: Rig) -> None:
    world.controller.settings.poll_interval = 10.0
    slept = await run_loop(world, [False, False, False, False, True, True], sleeps=6)
    assert 10.0 <= slept[0] <= 10.0  # the first failure waits the interval
    assert 10.0 <= slept[1] <= 20.0
    assert 20.0 <= slept[2] <= 40.0
    assert 40.0 <= slept[3] <= 80.0
    assert slept[4:] == [10.0, 10.0]  # success: back to the interval
    assert world.controller.errors["poll"] == 4


@pytest.mark.parametrize("failures", [1, 5, 12, 40])
def test_the_failure_delay_is_bounded(world: Rig, failures: int) -> None:
    for _ in range(50):
        delay = world.controller.failure_delay(15.0, failures)
        assert 15.0 <= delay <= max(15.0, min(LOOP_BACKOFF_CAP, 15.0 * 2 ** (failures - 1)))


class Pacer:
    """Stretches every poll four times, and notes what it was asked and what ran polling."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.polls = 0

    def poll_interval(self, base: float) -> float:
        self.asked.append(base)
        return base * 4

    @contextlib.contextmanager
    def polling(self) -> Iterator[None]:
        self.polls += 1
        yield


def test_the_github_poll_interval_comes_from_the_pacer(world: Rig) -> None:
    pacer = Pacer()
    asked = pacer.asked
    controller = world.controller
    controller._poll_pacer = pacer
    controller.settings.poll_interval = 15.0
    assert controller.github_poll_interval() == 60.0
    assert asked == [15.0]


async def test_the_poll_steps_calls_are_marked_as_polling_and_a_reconciles_are_not(
    world: Rig,
) -> None:
    pacer = Pacer()
    world.controller._poll_pacer = pacer
    await world.queue(1)
    await world.reconcile()  # creates a runner: not polling's cost
    assert pacer.polls == 0
    await world.controller.poll_step()
    await world.controller.poll_step()  # between GitHub polls: backends, booting runners
    assert pacer.polls == 2


async def test_while_webhooks_arrive_github_is_polled_as_a_safety_net_only(
    world: Rig,
) -> None:
    controller = world.controller
    controller.settings.poll_interval = 15.0
    controller.settings.webhook_poll_interval = 300.0
    assert controller.github_poll_interval() == 15.0
    await world.queue(1)  # a webhook delivery
    assert controller.github_poll_interval() == 300.0
    world.clock.advance(controller.settings.webhook_trust + 1)
    assert controller.github_poll_interval() == 15.0  # none for an hour: poll as usual


async def test_between_github_polls_only_backends_and_booting_runners_are_looked_at(
    world: Rig,
) -> None:
    await world.queue(1)  # webhooks flow
    await world.controller.poll_step()  # GitHub is due at first
    assert "active_jobs" in world.journal.ops("github")
    await world.reconcile()
    (booting,) = world.runners(RunnerState.BOOTING)
    world.journal.clear()
    world.clock.advance(15.0)
    world.github.set_runner(booting.name, online=True)
    await world.controller.poll_step()
    # Not due for 300 s; a runner that takes a job is reported by the job's webhook.
    assert world.journal.ops("github") == []
    world.clock.advance(BOOTING_CHECK_AFTER)
    await world.controller.poll_step()
    # Booting for a minute: GitHub's list tells whether it is online (idle) meanwhile.
    assert world.journal.ops("github") == ["list_runners"]
    assert world.runner(booting.name).state is RunnerState.IDLE
    assert "list" in world.journal.ops("provider")
    world.journal.clear()
    world.clock.advance(15.0)
    await world.controller.poll_step()
    assert world.journal.ops("github") == []  # nothing booting: GitHub is left alone
    world.clock.advance(300.0)
    await world.controller.poll_step()
    assert "active_jobs" in world.journal.ops("github")
