"""fake-github holding a fleet: its answers at 100 and at 10,000 registered runners.

Issue 18: the same ``world`` serves ``fake-github``, which must hold 10,000 registered runners
without slowing. Each operation is timed through the HTTP app in process (an ASGI transport, no
sockets), median of ``repeat`` calls, at each fleet size; "dispatch" is queueing one job that an
idle runner takes at once (the world's routing), measured on the world directly. Run by
``benchmarks/scaling.py fakegithub``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec, World

TOKEN = "bench-token"  # a simulator's token, not a secret
LABELS = ["self-hosted", "linux", "x64"]


@dataclass(frozen=True)
class Timings:
    """Median milliseconds per operation at one fleet size."""

    runners: int
    list_page: float
    get_one: float
    register: float
    dispatch: float


def _fleet(world: World, size: int) -> list[int]:
    """``size`` idle, connected JIT runners at organisation ``acme``."""
    world.ensure_repo("acme/app")
    ids = []
    for index in range(size):
        runner = world.register_jit_runner("acme", f"fleet-{index}", LABELS, None)
        world.runner_connect(runner.credential)
        ids.append(runner.id)
    return ids


async def _median_ms(repeat: int, call: Callable[[int], Awaitable[object]]) -> float:
    times = []
    for index in range(repeat):
        started = time.perf_counter()
        await call(index)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(size: int, repeat: int = 50) -> Timings:
    """Each dispatch takes one of the fleet's runners: ``size`` must be at least ``repeat``."""
    if size < repeat:
        raise ValueError(f"a fleet of {size} runners cannot take {repeat} dispatched jobs")
    simulator = build_simulator(
        SimulatorOptions(tokens=(TOKEN,)), VirtualClock(), "http://simulator.invalid"
    )
    world = simulator.world
    ids = _fleet(world, size)
    transport = httpx.ASGITransport(app=create_app(simulator))
    headers = {"Authorization": f"token {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://simulator.invalid", headers=headers
    ) as api:
        runners = "/orgs/acme/actions/runners"

        async def list_page(_: int) -> None:
            (await api.get(runners, params={"per_page": 100})).raise_for_status()

        async def get_one(index: int) -> None:
            (await api.get(f"{runners}/{ids[index * 7919 % len(ids)]}")).raise_for_status()

        async def register(index: int) -> None:
            body = {"name": f"new-{index}", "labels": LABELS, "runner_group_id": 1}
            (await api.post(f"{runners}/generate-jitconfig", json=body)).raise_for_status()

        async def dispatch(_: int) -> None:
            [job] = world.create_jobs([JobSpec("acme/app", tuple(LABELS), 60.0)])
            assert job.runner_id is not None, "an idle runner takes the job at once"

        return Timings(
            runners=size,
            list_page=await _median_ms(repeat, list_page),
            get_one=await _median_ms(repeat, get_one),
            register=await _median_ms(repeat, register),
            dispatch=await _median_ms(repeat, dispatch),
        )


def table(rows: list[Timings]) -> str:
    lines = [
        "| registered runners | list a page of 100 (ms) | get one (ms) "
        "| register (generate-jitconfig, ms) | dispatch a job (ms) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {t.runners:,} | {t.list_page:.2f} | {t.get_one:.2f} | {t.register:.2f} "
        f"| {t.dispatch:.3f} |"
        for t in rows
    ]
    return "\n".join(lines)
