"""Warm windows in the controller: the scaler is handed the ``min_idle`` in force at the
clock's now, and the status says which window holds it and until when."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime

from starlette.responses import JSONResponse

from runnerscale.model import RunnerState
from runnerscale.warm import InForce, MinIdleSchedule, WarmWindow
from tests.controller.conftest import IDLE_TIMEOUT, MakeRig

MORNING = WarmWindow("0 8 * * *", 2 * 3600.0, 2)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_a_window_keeps_its_count_warm_while_open_and_lets_them_go_after(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=3)
    world.pool.warm = MinIdleSchedule(windows=(MORNING,))
    world.clock.set(at("2026-01-01T07:59"))  # the virtual clock, never the wall clock
    await world.reconcile()
    assert world.runners() == []
    status = world.controller.status.pools[0]
    assert (status.min_idle, status.warm) == (
        0,
        InForce(0, next_window=MORNING, next_index=0, next_starts_at=at("2026-01-01T08:00")),
    )

    world.clock.set(at("2026-01-01T08:00"))
    await world.reconcile()
    warm = world.runners(RunnerState.BOOTING)
    assert len(warm) == 2
    status = world.controller.status.pools[0]
    assert (status.min_idle, status.desired) == (2, 2)
    assert status.warm == InForce(2, MORNING, 0, ends_at=at("2026-01-01T10:00"))

    for runner in warm:
        world.github.set_runner(runner.name, online=True)
    await world.poll()
    world.clock.set(at("2026-01-01T09:59"))
    await world.reconcile()
    assert len(world.runners(RunnerState.IDLE)) == 2  # kept, however long they idle

    world.clock.set(at("2026-01-01T10:00") + IDLE_TIMEOUT)
    await world.reconcile()
    assert world.runners(RunnerState.IDLE) == []
    status = world.controller.status.pools[0]
    assert (status.min_idle, status.warm and status.warm.next_starts_at) == (
        0,
        at("2026-01-02T08:00"),
    )


async def test_the_base_is_kept_outside_the_windows(make_world: MakeRig) -> None:
    world = make_world(max_runners=3, min_idle=1)  # the wiring makes the base spec.min_idle
    world.pool.warm = MinIdleSchedule(base=1, windows=(MORNING,))
    world.clock.set(at("2026-01-01T06:00"))
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    world.clock.set(at("2026-01-01T08:30"))
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 2


async def test_a_pool_waiting_for_its_labels_keeps_no_window_warm(make_world: MakeRig) -> None:
    world = make_world(max_runners=3)
    world.pool.warm = MinIdleSchedule(windows=(MORNING,))
    world.pool.spec = replace(world.pool.spec, ready=False)
    world.clock.set(at("2026-01-01T08:30"))
    await world.reconcile()
    assert world.runners() == []
    assert world.controller.status.pools[0].warm is None


async def test_the_status_with_a_window_is_json(make_world: MakeRig) -> None:
    world = make_world(max_runners=3)
    world.pool.warm = MinIdleSchedule(
        windows=(WarmWindow("0 8 * * 1-5", 36000.0, 2, "Europe/Berlin"),)
    )
    world.clock.set(at("2026-01-05T08:00"))  # Monday, 09:00 in Berlin
    await world.reconcile()
    body = json.loads(JSONResponse(asdict(world.controller.status)).body)
    assert body["pools"][0]["min_idle"] == 2
    assert body["pools"][0]["warm"] == {
        "count": 2,
        "window": {
            "cron": "0 8 * * 1-5",
            "duration": 36000.0,
            "count": 2,
            "timezone": "Europe/Berlin",
        },
        "index": 0,
        "ends_at": at("2026-01-05T17:00"),
        "next_window": None,
        "next_index": None,
        "next_starts_at": None,
    }
