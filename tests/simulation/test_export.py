"""``runnerscale trace export`` against a live simulator, through the production client.

The simulator runs on the wall clock, so a week of history is fabricated: jobs are queued
through :meth:`World.create_jobs`, then their runs and jobs are moved into the past and marked
as having run (``created_at``, ``started_at``, ``completed_at``, a runner), as GitHub would
report them after the fact. Times are whole seconds, because GitHub's timestamps are.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import GitHub

from runnerscale.clock import Clock
from runnerscale.fakegithub.entities import Conclusion, JobStatus
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, World
from runnerscale.model import PoolSpec, normalize_labels
from runnerscale.simulation.bounds import PoolModel, lower_bound
from runnerscale.simulation.export import (
    MAX_RETRIES,
    MAX_WAIT,
    ExportError,
    export_trace,
    parse_since,
)
from runnerscale.simulation.trace import TraceJob, read_trace, write_trace
from tests.virtual_time import SkipAhead, virtual_clock

REPO = "acme/app"
X64 = ("self-hosted", "linux", "x64")
ARM = ("self-hosted", "linux", "arm64")
NOW = int(time.time())
#: Three days ago: the start of the fabricated history.
BASE = NOW - 3 * 86_400
WEEK = 7 * 86_400
RUNS = 105  # more than a page of runs
WIDE = 101  # more than a page of jobs in one run


def fabricate(
    world: World,
    run_id: int,
    created: int,
    jobs: list[tuple[tuple[str, ...], int, int]],
    *,
    repo: str = REPO,
) -> None:
    """A run created at ``created`` whose jobs ``(labels, queued after, ran for)`` ran."""
    made = world.create_jobs(
        JobSpec(repo=repo, labels=labels, duration=float(ran), run_id=run_id, name=f"j{index}")
        for index, (labels, _, ran) in enumerate(jobs)
    )
    world.runs[run_id].created_at = created
    for job, (_, after, ran) in zip(made, jobs, strict=True):
        job.created_at = created + after
        job.started_at = created + after + 7  # a runner took 7 s to pick it up
        job.completed_at = job.started_at + ran
        job.status = JobStatus.COMPLETED
        job.conclusion = Conclusion.SUCCESS
        job.runner_name = f"runner-{job.id}"


def expected_history() -> Iterator[tuple[int, int, tuple[str, ...], int]]:
    """``(run_id, queued at, labels, duration)`` of every job that should be exported."""
    for index in range(RUNS):
        yield index + 1, BASE + 1 + index * 60, ARM if index % 5 == 0 else X64, 100 + index
    for index in range(WIDE):
        yield 500, BASE + 10_000 + index, X64, 10 + index


async def simulator_with(
    build: Callable[[World], None], clock: Clock | None = None
) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorOptions(tokens=("t",)), clock) as live:
        build(live.simulator.world)
        yield live


def week_of_history(world: World) -> None:
    for index in range(RUNS):
        labels = ARM if index % 5 == 0 else X64
        fabricate(world, index + 1, BASE + index * 60, [(labels, 1, 100 + index)])
    fabricate(world, 500, BASE + 10_000, [(X64, i, 10 + i) for i in range(WIDE)])
    # Older than a week: left out.
    for run_id in (900, 901, 902):
        fabricate(world, run_id, NOW - 10 * 86_400, [(X64, 1, 50)])
    # A recent run whose jobs did not run to their end: left out.
    (queued, skipped, running) = world.create_jobs(
        JobSpec(repo=REPO, labels=X64, duration=1.0, run_id=700) for _ in range(3)
    )
    skipped.status = JobStatus.COMPLETED
    skipped.conclusion = Conclusion.SKIPPED
    skipped.completed_at = skipped.created_at
    running.status = JobStatus.IN_PROGRESS
    running.started_at = running.created_at
    running.runner_name = "busy-runner"
    assert queued.status is JobStatus.QUEUED
    # Another repository's history is not this one's.
    fabricate(world, 800, BASE, [(X64, 0, 5)], repo="acme/other")


def three_runs(world: World) -> None:
    for index in range(3):
        fabricate(world, index + 1, BASE + index * 3_600, [(X64, 2, 60), (ARM, 5, 30)])
    fabricate(world, 9, NOW - 10 * 86_400, [(X64, 1, 50)])


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    """More than a page of runs, a run with more than a page of jobs, and what to leave out."""
    async for live in simulator_with(week_of_history):
        yield live


@pytest.fixture
async def small() -> AsyncIterator[SimulatorServer]:
    """Three recent runs of two jobs each, and an old one."""
    async for live in simulator_with(three_runs):
        yield live


def client(
    server: SimulatorServer, token: str = "t", seen: list[httpx.Request] | None = None
) -> GitHub[Any]:
    async def record(request: httpx.Request) -> None:
        if seen is not None:
            seen.append(request)

    return GitHub(
        token,
        base_url=server.url,
        http_cache=False,
        auto_retry=False,
        async_event_hooks={"request": [record]},
    )


class Sleeps:
    """Records the waits asked for, and does not wait (time stands still)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_export_reads_a_week_page_by_page(server: SimulatorServer, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    seen: list[httpx.Request] = []
    jobs = await export_trace(
        client(server, seen=seen),
        REPO,
        parse_since("7d"),
        progress=lambda done, total: calls.append((done, total)),
    )
    expected = list(expected_history())
    t0 = expected[0][1]
    assert len(jobs) == RUNS + WIDE == 206
    assert jobs == [
        TraceJob(
            at=float(queued - t0),
            repo=REPO,
            labels=labels,
            duration=float(duration),
            run_id=run_id,
            job="j0" if run_id != 500 else f"j{queued - BASE - 10_000}",
        )
        for run_id, queued, labels, duration in expected
    ]
    assert jobs[0].at == 0.0
    assert [job.at for job in jobs] == sorted(job.at for job in jobs)
    # The old runs (900-902) and the unfinished jobs of run 700 are left out.
    assert {job.run_id for job in jobs} == {*range(1, RUNS + 1), 500}

    # Progress: once before the first run's jobs are read, then after each run.
    runs = RUNS + 2  # and the wide run, and the run whose jobs did not finish
    assert calls == [(done, runs) for done in range(runs + 1)]

    # Requests: two pages of runs with the created qualifier, two pages of the wide run's jobs.
    run_pages = [r.url for r in seen if r.url.path == f"/repos/{REPO}/actions/runs"]
    assert [url.params["page"] for url in run_pages] == ["1", "2"]
    assert all(url.params["per_page"] == "100" for url in run_pages)
    assert all(url.params["created"].startswith(">=") for url in run_pages)
    wide = [r.url for r in seen if r.url.path == f"/repos/{REPO}/actions/runs/500/jobs"]
    assert [(url.params["page"], url.params["filter"]) for url in wide] == [
        ("1", "all"),
        ("2", "all"),
    ]
    assert len(seen) == 2 + runs + 1

    # ... and the export replays.
    path = tmp_path / "last-week.jsonl"
    write_trace(jobs, path)
    assert read_trace(path) == jobs
    pools = [
        PoolModel(PoolSpec("x64", normalize_labels(X64), max_runners=50), boot_time=30.0),
        PoolModel(PoolSpec("arm64", normalize_labels(ARM), max_runners=5, order=1), 30.0),
    ]
    figures = lower_bound(read_trace(path), pools)
    assert (figures.served, figures.unserved) == (206, 0)


async def test_since_leaves_out_older_runs(small: SimulatorServer) -> None:
    jobs = await export_trace(client(small), REPO, NOW - WEEK)
    assert [(job.run_id, job.at, job.labels, job.duration) for job in jobs] == [
        (1, 0.0, X64, 60.0),
        (1, 3.0, ARM, 30.0),
        (2, 3_600.0, X64, 60.0),
        (2, 3_603.0, ARM, 30.0),
        (3, 7_200.0, X64, 60.0),
        (3, 7_203.0, ARM, 30.0),
    ]
    # Since the second run (the simulator ignores ``created``: the export filters itself).
    jobs = await export_trace(client(small), REPO, BASE + 3_600)
    assert [(job.run_id, job.at) for job in jobs] == [
        (2, 0.0),
        (2, 3.0),
        (3, 3_600.0),
        (3, 3_603.0),
    ]
    # Nothing since: nothing to export.
    calls: list[tuple[int, int]] = []
    assert (
        await export_trace(client(small), REPO, NOW + 60, progress=lambda *a: calls.append(a)) == []
    )
    assert calls == [(0, 0)]


async def test_a_secondary_rate_limit_is_waited_out() -> None:
    # The simulator on a virtual clock that the export's waits move on: the limit lifts when
    # the export has waited it out, without anyone waiting for real.
    clock = virtual_clock()
    async for small in simulator_with(three_runs, clock):
        small.simulator.set_faults(
            FaultPlan.model_validate({"rate_limit": {"secondary_for": 1, "retry_after": 1}})
        )
        sleeps = SkipAhead(clock)
        jobs = await export_trace(client(small), REPO, NOW - WEEK, sleep=sleeps)
        assert len(jobs) == 6
        assert sleeps.waits
        assert all(wait == 1.0 for wait in sleeps.waits)
        assert len(sleeps.waits) <= MAX_RETRIES


async def test_a_rate_limit_that_lasts_gives_up_with_a_clear_message(
    small: SimulatorServer,
) -> None:
    small.simulator.set_faults(
        FaultPlan.model_validate({"rate_limit": {"secondary_for": 3600, "retry_after": 30}})
    )
    sleeps = Sleeps()
    with pytest.raises(ExportError) as caught:
        await export_trace(client(small), REPO, NOW - WEEK, sleep=sleeps)
    assert sleeps.waits == [30.0] * MAX_RETRIES
    message = str(caught.value)
    assert message.startswith(f"list workflow runs of {REPO} (page 1): still rate limited")
    assert "run the export again later" in message


@pytest.mark.parametrize("status", [403, 429])
async def test_an_exhausted_primary_limit_waits_at_most_a_minute_each_time(
    small: SimulatorServer, status: int
) -> None:
    small.simulator.set_faults(
        FaultPlan.model_validate({"rate_limit": {"exhaust_primary": True, "status": status}})
    )
    sleeps = Sleeps()
    with pytest.raises(ExportError, match="still rate limited"):
        await export_trace(client(small), REPO, NOW - WEEK, sleep=sleeps)
    assert sleeps.waits == [MAX_WAIT] * MAX_RETRIES  # the window resets in about an hour


async def test_other_failures_say_what_to_fix(small: SimulatorServer) -> None:
    with pytest.raises(ExportError) as caught:
        await export_trace(client(small), "acme/missing", NOW - WEEK)
    assert str(caught.value).startswith(
        "list workflow runs of acme/missing (page 1): GitHub answered 404 (Not Found) — "
        "check OWNER/NAME"
    )
    with pytest.raises(ExportError, match=r"GitHub answered 401 .* give a valid token"):
        await export_trace(client(small, token="wrong"), REPO, NOW - WEEK)
    with pytest.raises(ValueError, match="is not OWNER/NAME"):
        await export_trace(client(small), "acme", NOW - WEEK)


async def test_an_unreachable_server_is_named() -> None:
    unreachable = GitHub("t", base_url="http://127.0.0.1:9", http_cache=False, auto_retry=False)
    with pytest.raises(ExportError, match="cannot reach GitHub"):
        await export_trace(unreachable, REPO, NOW - WEEK)


# ---------------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("text", "ago"), [("7d", 7 * 86_400), ("24h", 86_400), ("90m", 5_400), ("3600s", 3_600)]
)
def test_since_as_a_span(text: str, ago: int) -> None:
    assert parse_since(text, now=2_000_000_000.0) == 2_000_000_000.0 - ago


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_since_as_a_date(text: str, moment: datetime) -> None:
    assert parse_since(text) == moment.timestamp()


@pytest.mark.parametrize("text", ["7", "7 days", "-7d", "7w", "", "yesterday", "2024-13-01"])
def test_since_not_understood(text: str) -> None:
    with pytest.raises(ValueError, match=r'use "7d", "24h", "90m", "3600s" .* or an ISO date'):
        parse_since(text)


def test_since_in_the_future() -> None:
    with pytest.raises(ValueError, match="is in the future"):
        parse_since("2999-01-01")
