"""The registration budget with a window of its own (``rate_limit.windows``): GitHub's Actions
limits page documents runner registrations per five minutes, and a benchmark needs a budget
that runs out and resets within a minute. The calls charged to it report it in their
``x-ratelimit-*`` headers, a spent budget is answered as GitHub answers it, ``GET /rate_limit``
shows it, and the window's reset brings a fresh budget. On the simulator's clock (virtual),
every answer checked against the contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.api import Simulator
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.faults import FaultPlan, RateLimitFaults
from runnerscale.fakegithub.ratelimit import RUNNER_REGISTRATION, WINDOW_SECONDS
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.fakegithub.conftest import TOKEN

URL = "http://simulator.invalid"
START = 1_767_225_600.0
LIMIT, WINDOW = 2, 10.0
JIT = "/orgs/acme/actions/runners/generate-jitconfig"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


def registration_limited(
    clock: VirtualClock, url: str, token: str, limit: int, window: float
) -> Simulator:
    """A simulator at ``url`` knowing ``token``, with repository ``acme/app``, whose runner
    registration budget is ``limit`` per ``window`` seconds."""
    simulator = build_simulator(SimulatorOptions(tokens=(token,)), clock, url)
    simulator.world.ensure_repo("acme/app")
    simulator.set_faults(
        FaultPlan(
            rate_limit=RateLimitFaults(
                limits={RUNNER_REGISTRATION: limit}, windows={RUNNER_REGISTRATION: window}
            )
        )
    )
    return simulator


@pytest.fixture
def simulator(clock: VirtualClock) -> Simulator:
    return registration_limited(clock, URL, TOKEN, LIMIT, WINDOW)


@pytest.fixture
async def api(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = ValidatingTransport(
        httpx.ASGITransport(app=create_app(simulator)), default_contract()
    )
    headers = {"Authorization": f"token {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url=URL, headers=headers) as client:
        yield client
    transport.assert_clean()


async def register(api: httpx.AsyncClient, name: str) -> httpx.Response:
    body = {"name": name, "runner_group_id": 1, "labels": ["self-hosted", "linux"]}
    return await api.post(JIT, json=body)


def budget_headers(response: httpx.Response) -> tuple[str, ...]:
    return tuple(
        response.headers[f"x-ratelimit-{name}"]
        for name in ("resource", "limit", "used", "remaining", "reset")
    )


async def test_a_spent_budget_is_refused_until_its_window_resets(
    api: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock
) -> None:
    reset = str(int(START + WINDOW))
    first = await register(api, "first")
    clock.advance(3.0)
    second = await register(api, "second")
    refused = await register(api, "third")
    assert [r.status_code for r in (first, second, refused)] == [201, 201, 403]
    assert budget_headers(first) == (RUNNER_REGISTRATION, "2", "1", "1", reset)
    assert budget_headers(second) == (RUNNER_REGISTRATION, "2", "2", "0", reset)
    # GitHub's answer: 403, remaining 0 until the reset, the resource named; nothing made.
    assert budget_headers(refused) == (RUNNER_REGISTRATION, "2", "2", "0", reset)
    assert refused.json()["message"].startswith("API rate limit exceeded for ")
    assert "documentation_url" in refused.json()
    assert sorted(r.name for r in simulator.world.runners_in("acme")) == ["first", "second"]
    # GET /rate_limit shows it spent; core is untouched, polling goes on.
    overview = (await api.get("/rate_limit")).json()["resources"]
    assert overview[RUNNER_REGISTRATION] == {
        "limit": LIMIT,
        "remaining": 0,
        "used": LIMIT,
        "reset": int(START + WINDOW),
    }
    assert overview["core"]["used"] == 0
    listed = await api.get("/orgs/acme/actions/runners")
    assert (listed.status_code, listed.headers["x-ratelimit-resource"]) == (200, "core")
    # Still spent a moment before the reset; at the reset, a fresh window of the same length.
    clock.advance(WINDOW - 3.0 - 0.5)
    assert (await register(api, "early")).status_code == 403
    clock.advance(0.5)
    fresh = await register(api, "after")
    assert fresh.status_code == 201
    reset = str(int(START + 2 * WINDOW))
    assert budget_headers(fresh) == (RUNNER_REGISTRATION, "2", "1", "1", reset)


async def test_a_plan_without_windows_brings_back_the_hour(
    api: httpx.AsyncClient, simulator: Simulator, clock: VirtualClock
) -> None:
    await register(api, "short")
    simulator.set_faults(FaultPlan())
    # The running window keeps its reset; the next one is an hour, with GitHub's limit.
    assert budget_headers(await register(api, "kept"))[-1] == str(int(START + WINDOW))
    clock.advance(WINDOW)
    hourly = await register(api, "hourly")
    assert budget_headers(hourly) == (
        RUNNER_REGISTRATION,
        "10000",
        "1",
        "9999",
        str(int(START + WINDOW + WINDOW_SECONDS)),
    )
