"""The fleet benchmark (``benchmarks/fleet.py``) at a tiny size, so that it keeps working:
a steady tick over a filled store on SQLite and Postgres, and a ramp on the daemon's loops (in
process, and over the daemon's client with a registration budget that binds)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fleet import Quota, measure_ramp, measure_ticks, ramp_table, tick_table

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


async def test_a_ramp_over_the_client_waits_for_the_registration_budget(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ramp.db'}")
    try:
        result = await measure_ramp(
            store,
            "sqlite",
            8,
            4,
            give_up_after=60.0,
            progress=lambda message: None,
            github="http",
            quota=Quota(5, 1.0),
        )
    finally:
        store.close()
    assert (result.runners, result.failed) == (8, 0)
    assert result.held >= 1  # the budget ran out: registrations waited, none failed
    assert "| http | 5 / 1 s (300/min) | sqlite | 4 | 8 |" in ramp_table([result])
