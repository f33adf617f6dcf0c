"""A smoke test of ``benchmarks/scaler_decide.py`` at a tiny size, so that it keeps working;
its figures are in benchmarks/scaler_decide.md, not asserted here."""

from __future__ import annotations

from benchmarks.scaler_decide import fleet, measure, table

from runnerscale import scaler
from runnerscale.model import JobState, RunnerState


def test_the_fleet_has_every_kind_of_job_and_runner_it_names() -> None:
    workload = fleet(200)
    assert len(workload.jobs) == len(workload.runners) == 200
    assert {job.state for job in workload.jobs} == {
        JobState.QUEUED,
        JobState.WAITING,
        JobState.IN_PROGRESS,
    }
    assert RunnerState.FINISHED in {runner.state for runner in workload.runners}


def test_a_tiny_size_is_timed_and_compared_with_a_baseline() -> None:
    row = measure(50, repeat=2, before=scaler.decide)
    assert row.same
    assert row.before_ms > 0
    assert row.after_ms > 0
    assert "| 50 |" in table([row], "main")
