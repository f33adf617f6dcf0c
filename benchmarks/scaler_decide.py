"""The scaler alone: ``scaler.decide`` at 1,000 and 10,000 active jobs and live runners.

Issue 18's tick target (under 100 ms at 10,000 runners and 10,000 queued jobs) had the pure
decision at about 85 ms of it. This times ``decide`` on a synthetic fleet, the current code
and a baseline (``scaler.py`` of a git revision, ``main`` by default, loaded as its own
module over the same ``model``) side by side in one run, and checks both give the same
``Decision``. The fleet: three pools (x64, arm64, x64+gpu), two targets (an organisation and
one of its repositories), ``N`` active jobs over five label sets (one of them no pool serves,
one differing only in case) and 50 repositories (60 % queued, 5 % waiting, the rest in
progress), and ``N`` runners (half busy, a fifth idle, the rest on the way, finished or being
deleted). Reproduce with:

    taskset -c 1 .venv/bin/python benchmarks/scaler_decide.py --sizes 1000 10000 --repeat 20
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from runnerscale import scaler
from runnerscale.model import Job, JobState, PoolSpec, Runner, RunnerState, Target

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_767_225_600.0
LABEL_SETS = (
    ("self-hosted", "linux", "x64"),
    ("Self-Hosted", "Linux", "X64"),
    ("self-hosted", "linux", "arm64"),
    ("self-hosted", "gpu"),
    ("self-hosted", "windows"),
)
JOB_STATES = (JobState.QUEUED,) * 12 + (JobState.WAITING,) + (JobState.IN_PROGRESS,) * 7
RUNNER_STATES = (
    (RunnerState.BUSY,) * 10
    + (RunnerState.IDLE,) * 4
    + (RunnerState.PENDING, RunnerState.CREATING, RunnerState.BOOTING)
    + (RunnerState.FINISHED,) * 2
    + (RunnerState.DELETING,)
)
TARGETS = (Target("org", "acme"), Target("repo", "acme/repo-7"))

Decide = Callable[..., scaler.Decision]


@dataclass(frozen=True)
class Fleet:
    pools: list[PoolSpec]
    jobs: list[Job]
    runners: list[Runner]


def fleet(size: int, seed: int = 1) -> Fleet:
    """``size`` active jobs and ``size`` live runners over three pools (module docstring)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not security
    pools = [
        PoolSpec("x64", frozenset({"self-hosted", "linux", "x64"}), 2 * size, order=0),
        PoolSpec("arm", frozenset({"self-hosted", "linux", "arm64"}), size, order=1),
        PoolSpec("gpu", frozenset({"self-hosted", "linux", "x64", "gpu"}), size // 10, order=2),
    ]
    jobs = []
    for index in range(size):
        state = rng.choice(JOB_STATES)
        jobs.append(
            Job(
                id=10_000_000 + index,
                repo=f"acme/repo-{index % 50}",
                labels=rng.choice(LABEL_SETS),
                state=state,
                created_at=NOW - rng.uniform(0, 3600),
                runner_name=f"r-{index}" if state is JobState.IN_PROGRESS else None,
            )
        )
    runners = []
    for index in range(size):
        state = rng.choice(RUNNER_STATES)
        since = NOW - rng.uniform(0, 600)
        runners.append(
            Runner(
                name=f"r-{index}",
                pool=rng.choice(("x64", "x64", "arm", "gpu")),
                target=rng.choice(TARGETS).key,
                state=state,
                created_at=since - 60,
                state_since=since,
                # (some busy runners whose job is not known yet)
                job_id=10_000_000 + index if state is RunnerState.BUSY and index % 7 else None,
                idle_since=since if state is RunnerState.IDLE else None,
            )
        )
    return Fleet(pools, jobs, runners)


def baseline(revision: str) -> ModuleType:
    """``scaler.py`` as it is at ``revision`` (git), loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/runnerscale/scaler.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "baseline_scaler.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("baseline_scaler", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # (dataclasses look their module up)
        spec.loader.exec_module(module)
    return module


def timed(decide: Decide, workload: Fleet, repeat: int) -> tuple[float, scaler.Decision]:
    """The median milliseconds of ``repeat`` calls, and the decision."""
    times = []
    decision = None
    for _ in range(repeat):
        began = time.perf_counter()
        decision = decide(workload.pools, workload.jobs, workload.runners, NOW, targets=TARGETS)
        times.append((time.perf_counter() - began) * 1000)
    assert decision is not None
    return statistics.median(times), decision


@dataclass(frozen=True)
class Row:
    size: int
    before_ms: float
    after_ms: float
    #: Whether both gave the same decision.
    same: bool


def measure(size: int, repeat: int, before: Decide, after: Decide = scaler.decide) -> Row:
    """Both ``decide`` on the same fleet, alternating (so load hits both alike)."""
    workload = fleet(size)
    before_ms, before_decision = timed(before, workload, repeat)
    after_ms, after_decision = timed(after, workload, repeat)
    # A second round each, the other way round; the lower median of each counts.
    again_after, _ = timed(after, workload, repeat)
    again_before, _ = timed(before, workload, repeat)
    return Row(
        size,
        min(before_ms, again_before),
        min(after_ms, again_after),
        _same(before_decision, after_decision),
    )


def _same(before: object, after: scaler.Decision) -> bool:
    """Equal field by field, in order too (the baseline's classes are its own, so compared by
    their ``repr``, which names no module)."""
    return repr(before) == repr(after)


def table(rows: list[Row], revision: str) -> str:
    lines = [
        f"| jobs and runners | {revision}: median (ms) | this tree: median (ms) | ratio | "
        "same decision |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratio = row.before_ms / row.after_ms if row.after_ms else float("inf")
        lines.append(
            f"| {row.size:,} | {row.before_ms:.2f} | {row.after_ms:.2f} | {ratio:.1f}x | "
            f"{'yes' if row.same else '**no**'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--before", default="main", help="git revision of the baseline")
    args = parser.parse_args()
    before = baseline(args.before).decide
    rows = [measure(size, args.repeat, before) for size in args.sizes]
    print(table(rows, args.before))


if __name__ == "__main__":
    main()
