"""Smoke tests of the fleet-scale parts of ``benchmarks/scaling.py`` at tiny sizes, so the
benchmark keeps working; its figures are in benchmarks/scaling.md, not asserted here."""

from __future__ import annotations

from pathlib import Path

from benchmarks.scaling import rung
from benchmarks.scaling_fakegithub import measure as measure_fakegithub
from benchmarks.scaling_fakegithub import table as fakegithub_table
from benchmarks.scaling_fleet import Rung, fleet_trace
from benchmarks.scaling_fleet import measure as measure_fleet
from benchmarks.scaling_fleet import table as fleet_table


def test_a_rung_is_written_as_jobs_over_concurrency_and_an_optional_burst() -> None:
    assert rung("5000/1000") == Rung(5000, 1000)
    assert rung("1000/1000/10") == Rung(1000, 1000, burst=10.0)


def test_a_fleet_trace_keeps_the_concurrency_it_is_built_for() -> None:
    trace = fleet_trace(Rung(jobs=40, concurrent=10, duration=100.0))
    assert len(trace) == 40
    assert trace[10].at == 100.0  # the eleventh job arrives as the first one ends
    burst = fleet_trace(Rung(jobs=40, concurrent=40, burst=4.0))
    assert max(job.at for job in burst) < 4.0


async def test_a_tiny_fleet_rung_is_simulated_to_the_end(tmp_path: Path) -> None:
    measured = await measure_fleet(Rung(jobs=30, concurrent=10, duration=60.0), tmp_path)
    assert measured.finished
    assert measured.served == 30
    assert measured.cpu > 0
    assert measured.peak_rss_mb > 0
    assert measured.reconciles > 0
    # Every runner was removed, none of them late.
    assert 0 <= measured.longest_deleting < 120
    assert measured.overdue_warnings == 0
    # Each job waited at least its runner's boot (30 s), and the p95 is one of the waits.
    assert 30 <= measured.wait_p95 <= measured.wait_max
    assert "30 / 30" in fleet_table([measured])


async def test_a_rung_over_its_limit_is_stopped_and_says_how_far_it_got(tmp_path: Path) -> None:
    measured = await measure_fleet(Rung(jobs=30, concurrent=10, duration=60.0), tmp_path, limit=0)
    assert not measured.finished
    assert "**stopped**" in fleet_table([measured])


async def test_fake_github_is_timed_at_each_fleet_size() -> None:
    rows = [await measure_fakegithub(size, repeat=3) for size in (3, 20)]
    assert [row.runners for row in rows] == [3, 20]
    assert all(row.dispatch > 0 and row.list_page > 0 for row in rows)
    assert fakegithub_table(rows).count("\n") == 3
