"""A spent registration budget holds registrations, nothing else: the daemon's loops over the
daemon's own GitHub client and the fake GitHub's HTTP app (in process, an ASGI transport), on
one virtual clock. The runners beyond the budget wait for its reset instead of failing one by
one, while polls and decisions go on."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import Events, PoolRuntime
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.faults import FaultPlan, RateLimitFaults
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.budget import REGISTRATION, RESET_MARGIN
from runnerscale.github.client import GitHubClient
from runnerscale.model import PoolSpec, RunnerState, Target, normalize_labels
from runnerscale.store import open_store
from tests.controller.fakes import FakeProvider

URL = "http://github.test.invalid"
TOKEN = "ghp_registration_budget_test"
LABELS = ("self-hosted", "linux")
#: Three registrations a minute; the pool creates two at once (at most the budget: the first
#: ones are sent before any answer has said what is left).
LIMIT, WINDOW, CONCURRENCY = 3, 60.0, 2
JOBS = 6
JIT = "actions/generate-runner-jitconfig-for-org"


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


async def test_a_spent_registration_budget_holds_creations_while_polls_and_decisions_go_on(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), clock, URL)
    simulator.world.ensure_repo("acme/app")
    simulator.set_faults(
        FaultPlan(
            rate_limit=RateLimitFaults(limits={REGISTRATION: LIMIT}, windows={REGISTRATION: WINDOW})
        )
    )
    simulator.world.create_jobs(JobSpec("acme/app", LABELS, 3600.0) for _ in range(JOBS))
    github = GitHubClient(
        URL,
        TOKEN,
        transport=httpx.ASGITransport(app=create_app(simulator)),
        clock=clock.now,
        sleep=clock.sleep,
    )
    ticks: Counter[str] = Counter()
    errors: list[str] = []
    provider = FakeProvider(pool="linux")
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    pool = PoolRuntime(
        spec=PoolSpec(name="linux", labels=normalize_labels(LABELS), max_runners=JOBS),
        provider=provider,
        labels=LABELS,
        prefix="rs-linux-",
        create_concurrency=CONCURRENCY,
    )
    controller = Controller(
        store,
        github,
        clock,
        pools=[pool],
        targets=[Target("org", "acme")],
        settings=ControllerSettings(poll_interval=5.0, reconcile_interval=1.0),
        events=Events(
            tick=lambda loop, seconds: ticks.update([loop]),
            error=lambda pool, kind: errors.append(kind),
        ),
    )
    began = clock.now()
    await controller.start()
    try:
        await until(lambda: len(provider.instances) == LIMIT)
        await settle()
        budget = github.budget.of("token")
        assert budget.held[REGISTRATION] >= 1  # the next registrations wait for the reset
        # Most of the window: the decisions and the polls go on, the creations wait.
        before = ticks.copy()
        for _ in range(int(WINDOW) - 5):
            clock.advance(1.0)
            await settle()
        assert ticks["reconcile"] - before["reconcile"] >= WINDOW - 10
        assert ticks["poll"] - before["poll"] >= (WINDOW - 10) / 5
        assert len(provider.instances) == LIMIT
        states = Counter(runner.state for runner in store.runners(pool="linux"))
        assert states == {RunnerState.BOOTING: LIMIT, RunnerState.PENDING: JOBS - LIMIT}
        # Nothing was refused: no runner failed, the pool does not back off.
        assert errors == []
        assert pool.backoff_until == 0.0
        assert simulator.stats.statuses[JIT][403] == 0
        # Past the reset (and the margin for GitHub's clock), the rest is created.
        clock.advance(began + WINDOW + RESET_MARGIN + 1.0 - clock.now())
        await until(lambda: len(provider.instances) == JOBS)
        assert errors == []
        assert simulator.stats.statuses[JIT] == {201: JOBS}
    finally:
        await controller.stop()
        store.close()
