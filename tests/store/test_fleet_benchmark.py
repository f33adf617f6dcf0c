"""The fleet benchmark (``benchmarks/fleet.py``) at a tiny size, so that it keeps working:
a steady tick over a filled store on SQLite and Postgres, and a ramp on the daemon's loops (in
process, and over the daemon's client with a registration budget that binds)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fleet import (
    Quota,
    RampResult,
    measure_ramp,
    measure_ticks,
    ramp_table,
    tick_table,
)

from runnerscale.store import open_store


async def test_a_steady_tick_is_measured_over_a_filled_sqlite_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        result = await measure_ticks(store, "sqlite", 5, history_per_day=2, ticks=3)
    finally:
        store.close()
    assert (result.rung, result.history, len(result.ticks)) == (5, 70, 3)
    assert "| sqlite | 5 | 5 | 70 |" in tick_table([result])


async def test_a_steady_tick_is_measured_on_postgres(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        result = await measure_ticks(store, "postgres", 5, history_per_day=1, ticks=2)
    finally:
        store.close()
    assert len(result.ticks) == 2


async def test_a_ramp_creates_every_runner_while_the_loop_ticks(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ramp.db'}")
    try:
        result = await measure_ramp(
            store, "sqlite", 20, 4, give_up_after=60.0, progress=lambda message: None
        )
    finally:
        store.close()
    assert result.runners == 20
    assert result.ticks >= 1
    assert "| sqlite | 4 | 20 |" in ramp_table([result])


async def ramp_over_the_client(
    tmp_path: Path, quota: Quota, create_timeout: float | None = None
) -> RampResult:
    """A ramp of 8, four at once, over the daemon's client with a registration budget."""
    store = open_store(f"sqlite:///{tmp_path / 'ramp.db'}")
    try:
        return await measure_ramp(
            store,
            "sqlite",
            8,
            4,
            give_up_after=60.0,
            progress=lambda message: None,
            github="http",
            quota=quota,
            create_timeout=create_timeout,
        )
    finally:
        store.close()


async def test_a_ramp_over_the_client_waits_for_the_registration_budget(tmp_path: Path) -> None:
    result = await ramp_over_the_client(tmp_path, Quota(5, 1.0))
    assert (result.runners, result.failed) == (8, 0)
    assert result.held >= 1  # the budget ran out: registrations waited, none failed
    assert "| http | 5 / 1 s (300/min) | sqlite | 4 | 8 |" in ramp_table([result])


async def test_a_ramp_waiting_longer_than_the_create_timeout_gives_up_on_none(
    tmp_path: Path,
) -> None:
    """The wait for the registration window (3 s, plus the client's 2 s margin) outlasts the
    janitor's create timeout (2 s, swept every second): the runners waiting for it are not
    given up on."""
    result = await ramp_over_the_client(tmp_path, Quota(4, 3.0), create_timeout=2.0)
    assert (result.runners, result.failed, result.given_up) == (8, 0, 0)
    assert result.held >= 1
    assert "| 2 s | 0 |" in ramp_table([result])
