"""A spent registration budget holds registrations, nothing else: the daemon's loops over the
daemon's own GitHub client and the fake GitHub's HTTP app (in process, an ASGI transport), on
one virtual clock. The runners beyond the budget wait for its reset instead of failing one by
one, while polls and decisions go on; they wait as ``pending`` runners whose creation has not
begun, so a window that resets minutes away runs no create timeout."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import Events, PoolRuntime
from runnerscale.controller.janitor import JanitorSettings
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.fakegithub.api import Simulator
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.budget import REGISTRATION, RESET_MARGIN
from runnerscale.github.client import GitHubClient
from runnerscale.model import PoolSpec, RunnerState, Target, normalize_labels
from runnerscale.store import SqlStore, open_store
from tests.controller.fakes import FakeProvider
from tests.fakegithub.test_registration_window import registration_limited

URL = "http://github.test.invalid"
TOKEN = "ghp_registration_budget_test"
LABELS = ("self-hosted", "linux")
#: Three registrations a minute; the pool creates two at once (at most the budget: the first
#: ones are sent before any answer has said what is left).
LIMIT, WINDOW, CONCURRENCY = 3, 60.0, 2
JOBS = 6
JIT = "actions/generate-runner-jitconfig-for-org"
#: A window that resets ten minutes away: five create timeouts.
LONG_WINDOW = 600.0
CREATE_TIMEOUT = 120.0


async def until(condition: Callable[[], bool], turns: int = 5000) -> None:
    """Let the loops run (time stands still) until ``condition`` holds."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    assert condition()


async def settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


@dataclass
class Ramp:
    """The daemon's loops creating ``JOBS`` runners through the client, against a fake GitHub
    whose registration budget is ``LIMIT`` a ``window``."""

    clock: VirtualClock
    simulator: Simulator
    github: GitHubClient
    provider: FakeProvider
    store: SqlStore
    pool: PoolRuntime
    controller: Controller = field(init=False)
    #: What the controller's metric hooks heard: loop cycles, errors, clean-ups.
    ticks: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)

    def states(self) -> Counter[RunnerState]:
        return Counter(runner.state for runner in self.store.runners(pool="linux"))


@pytest.fixture
async def make_ramp(tmp_path: Path) -> AsyncIterator[Callable[[float], Ramp]]:
    """``make_ramp(window)``: a ramp, its loops started by the test (stopped at the end)."""
    ramps: list[Ramp] = []

    def make(window: float) -> Ramp:
        clock = VirtualClock()
        simulator = registration_limited(clock, URL, TOKEN, LIMIT, window)
        simulator.world.create_jobs(JobSpec("acme/app", LABELS, 3600.0) for _ in range(JOBS))
        github = GitHubClient(
            URL,
            TOKEN,
            transport=httpx.ASGITransport(app=create_app(simulator)),
            clock=clock.now,
            sleep=clock.sleep,
        )
        provider = FakeProvider(pool="linux")
        store = open_store(f"sqlite:///{tmp_path / f'state{len(ramps)}.db'}")
        pool = PoolRuntime(
            # Instances never come online here: no boot timeout within the test.
            spec=PoolSpec(
                name="linux",
                labels=normalize_labels(LABELS),
                max_runners=JOBS,
                boot_timeout=3 * LONG_WINDOW,
            ),
            provider=provider,
            labels=LABELS,
            prefix="rs-linux-",
            create_concurrency=CONCURRENCY,
        )
        ramp = Ramp(clock, simulator, github, provider, store, pool)
        ramp.controller = Controller(
            store,
            github,
            clock,
            pools=[pool],
            targets=[Target("org", "acme")],
            settings=ControllerSettings(
                poll_interval=5.0,
                reconcile_interval=1.0,
                janitor=JanitorSettings(create_timeout=CREATE_TIMEOUT),
            ),
            events=Events(
                tick=lambda loop, seconds: ramp.ticks.update([loop]),
                error=lambda pool, kind: ramp.errors.append(kind),
                cleaned=lambda pool, kind: ramp.cleaned.append(kind),
            ),
        )
        ramps.append(ramp)
        return ramp

    yield make
    for ramp in ramps:
        await ramp.controller.stop()
        ramp.store.close()


async def test_a_spent_registration_budget_holds_creations_while_polls_and_decisions_go_on(
    make_ramp: Callable[[float], Ramp],
) -> None:
    ramp = make_ramp(WINDOW)
    clock, ticks = ramp.clock, ramp.ticks
    began = clock.now()
    await ramp.controller.start()
    await until(lambda: len(ramp.provider.instances) == LIMIT)
    await settle()
    budget = ramp.github.budget.of("token")
    assert budget.held[REGISTRATION] >= 1  # the next registrations wait for the reset
    # Most of the window: the decisions and the polls go on, the creations wait.
    before = ticks.copy()
    for _ in range(int(WINDOW) - 5):
        clock.advance(1.0)
        await settle()
    assert ticks["reconcile"] - before["reconcile"] >= WINDOW - 10
    assert ticks["poll"] - before["poll"] >= (WINDOW - 10) / 5
    assert len(ramp.provider.instances) == LIMIT
    states = Counter(runner.state for runner in ramp.store.runners(pool="linux"))
    assert states == {RunnerState.BOOTING: LIMIT, RunnerState.PENDING: JOBS - LIMIT}
    # Nothing was refused: no runner failed, the pool does not back off.
    assert ramp.errors == []
    assert ramp.pool.backoff_until == 0.0
    assert ramp.simulator.stats.statuses[JIT][403] == 0
    # Past the reset (and the margin for GitHub's clock), the rest is created.
    clock.advance(began + WINDOW + RESET_MARGIN + 1.0 - clock.now())
    await until(lambda: len(ramp.provider.instances) == JOBS)
    assert ramp.errors == []
    assert ramp.simulator.stats.statuses[JIT] == {201: JOBS}


async def test_runners_waiting_minutes_for_the_registration_budget_are_not_given_up_on(
    make_ramp: Callable[[float], Ramp],
) -> None:
    """The window resets ten minutes away: the runners beyond the budget stay ``pending``,
    holding no creation slot, and the janitor's create timeout (two minutes) removes none of
    them; once the window resets they are created. (Before, the two that had taken the
    pool's slots waited inside their registration, ``pending`` with their create timeout
    running, the third waited for a slot, and the janitor removed all three.)"""
    ramp = make_ramp(LONG_WINDOW)
    clock, controller = ramp.clock, ramp.controller
    began = clock.now()
    await controller.start()
    await until(lambda: len(ramp.provider.instances) == LIMIT)
    await settle()
    waiting = {runner.name for runner in ramp.store.runners(states=[RunnerState.PENDING])}
    assert len(waiting) == JOBS - LIMIT
    before = ramp.ticks.copy()
    for _ in range(int(LONG_WINDOW / 10) - 1):
        clock.advance(10.0)
        await settle()
        assert ramp.states() == {RunnerState.BOOTING: LIMIT, RunnerState.PENDING: JOBS - LIMIT}
    # Waiting for the budget, not for a slot, and not being created.
    assert controller.actions.waiting == dict.fromkeys(waiting, "registration_budget")
    (status,) = controller.status.pools
    assert status.waiting == {"registration_budget": JOBS - LIMIT, "create_slot": 0}
    assert controller.janitor.cleaned == {}
    assert ramp.cleaned == []
    # The loops went on: the janitor swept all along, the decisions and the polls too.
    assert ramp.ticks["janitor"] - before["janitor"] >= LONG_WINDOW / 30 - 2
    assert ramp.ticks["reconcile"] - before["reconcile"] >= LONG_WINDOW / 10 - 2
    assert ramp.ticks["poll"] - before["poll"] >= LONG_WINDOW / 10 - 2
    # The window resets: they are created, none was given up on, none failed.
    clock.advance(began + LONG_WINDOW + RESET_MARGIN + 1.0 - clock.now())
    await until(lambda: len(ramp.provider.instances) == JOBS)
    await settle()
    assert ramp.states() == {RunnerState.BOOTING: JOBS}
    assert {spec.runner_name for spec in ramp.provider.specs} >= waiting
    assert controller.actions.waiting == {}
    assert ramp.cleaned == []
    assert ramp.errors == []
    assert ramp.simulator.stats.statuses[JIT] == {201: JOBS}
