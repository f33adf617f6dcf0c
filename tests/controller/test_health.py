"""Health that tells the truth (issue 12): ``/healthz`` is 503 with the reason when a loop is
stuck or stopped, or a pool keeps failing past its backoff; ``/readyz`` says whether the daemon
has reconciled since it started. On the virtual clock; the HTTP answers through the daemon's
own health routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from runnerscale.controller.actions import PoolRuntime
from runnerscale.controller.health import STALL_AFTER, Heartbeat, assess
from runnerscale.metrics import Metrics
from runnerscale.model import Instance
from runnerscale.server import DaemonHTTP
from tests.controller.conftest import Rig
from tests.controller.test_loops import settle

NOW = 1_000_000.0


def test_loops_that_keep_their_pace_and_pools_that_recover_are_healthy(world: Rig) -> None:
    beats = {"poll": Heartbeat(), "events": Heartbeat(waits_for_work=True)}
    beats["poll"].began(NOW - 30)
    beats["events"].began(NOW - 10 * STALL_AFTER)  # waiting for a delivery is its work
    assert assess(NOW, beats, world.controller.pools.values()) == []


def test_a_stuck_an_overdue_and_a_stopped_loop_are_each_named() -> None:
    stuck, late, dead = Heartbeat(), Heartbeat(), Heartbeat(waits_for_work=True)
    stuck.began(NOW - STALL_AFTER - 5)
    late.ended(wakes_at=NOW - STALL_AFTER - 60)
    dead.alive = False
    reasons = assess(NOW, {"poll": stuck, "janitor": late, "events": dead}, [])
    assert reasons == [
        "the poll loop has been in one cycle for 605 s",
        "the janitor loop is 660 s late",
        "the events loop has stopped (see the log for its error)",
    ]


def test_a_pool_is_unhealthy_once_its_backoff_reaches_its_cap(world: Rig) -> None:
    pool: PoolRuntime = world.pool
    for failure in range(6):  # 5, 10, 20, 40, 80, 160 s: still backing off more each time
        pool.failed(NOW + failure * 1000, "boom")
        assert assess(NOW, {}, [pool]) == [], failure
    pool.failed(NOW + 7000, "boom")  # 320 s > the 300 s cap
    (reason,) = assess(NOW, {}, [pool])
    assert reason.startswith("pool linux: 7 failures in a row to start a runner")
    assert "boom" not in reason  # errors stay in the status API and the log
    pool.succeeded()
    assert assess(NOW, {}, [pool]) == []


class HangingList:
    """A backend whose ``list`` never answers (a hung API call) once ``hang`` is set."""

    def __init__(self, world: Rig) -> None:
        self.hang = asyncio.Event()
        self._list = world.provider.list

    async def __call__(self) -> list[Instance]:
        if self.hang.is_set():
            await asyncio.Event().wait()
        return await self._list()


@pytest.fixture
async def daemon_http(world: Rig) -> AsyncIterator[httpx.AsyncClient]:
    controller = world.controller
    metrics = Metrics(lambda: controller.status, lambda: None)
    app = Starlette(routes=DaemonHTTP(controller, world.store, metrics, None).routes("health"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as http:
        yield http


async def test_readyz_is_503_until_the_first_reconcile(
    world: Rig, daemon_http: httpx.AsyncClient
) -> None:
    answer = await daemon_http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "ready": False,
        "reason": "the daemon has not reconciled since it started",
    }
    await world.controller.start()
    await settle()
    try:
        assert (await daemon_http.get("/readyz")).json() == {"ready": True}
    finally:
        await world.controller.stop()


async def test_healthz_is_503_while_a_loop_hangs_and_200_once_it_moves_again(
    world: Rig, daemon_http: httpx.AsyncClient
) -> None:
    hanging = HangingList(world)
    world.provider.list = hanging  # type: ignore[method-assign]
    controller = world.controller
    # A listing is abandoned past the delete timeout and a minute: here, long after the
    # loop is reported stuck (a cycle held by any other call that hangs looks the same).
    controller.settings.janitor.delete_timeout = 2 * STALL_AFTER
    await controller.start()
    await settle()
    try:
        assert (await daemon_http.get("/healthz")).status_code == 200
        hanging.hang.set()
        world.clock.advance(controller.settings.poll_interval)  # the poll cycle starts, hangs
        await settle()
        world.clock.advance(STALL_AFTER + 1)
        await settle()
        answer = await daemon_http.get("/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "unhealthy"
        assert any(
            reason.startswith("the poll loop has been in one cycle") for reason in body["reasons"]
        )
    finally:
        await controller.stop()


async def test_a_hung_listing_is_abandoned_before_its_loop_counts_as_stuck(
    world: Rig, daemon_http: httpx.AsyncClient
) -> None:
    """With the default timeouts, a listing that never answers is given up on at the delete
    timeout and a minute: the poll and the janitor go on, and ``/healthz`` stays 200."""
    hanging = HangingList(world)
    world.provider.list = hanging  # type: ignore[method-assign]
    controller = world.controller
    await controller.start()
    await settle()
    try:
        hanging.hang.set()
        assert controller.actions.timeouts.list_limit < STALL_AFTER
        for _ in range(int(2 * STALL_AFTER) // 10):
            world.clock.advance(10.0)
            await settle()
        answer = await daemon_http.get("/healthz")
        assert answer.status_code == 200, answer.json()
        assert controller.errors["poll"] >= 1
    finally:
        await controller.stop()


async def test_healthz_names_a_loop_whose_task_died(
    world: Rig, daemon_http: httpx.AsyncClient
) -> None:
    controller = world.controller
    await controller.start()
    await settle()
    try:
        janitor = next(task for task in controller._tasks if task.get_name() == "janitor")
        janitor.cancel()  # as if it had died
        await settle()
        body = (await daemon_http.get("/healthz")).json()
        assert body["reasons"] == ["the janitor loop has stopped (see the log for its error)"]
    finally:
        await controller.stop()
