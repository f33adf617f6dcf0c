"""Fleet-scale rungs of the scaling benchmark: how long a big trace takes to simulate.

Issue 18's target: a 50,000-job trace with 10,000 concurrent jobs simulated in under 5 minutes,
in under 1 GB. A rung is a synthetic trace (jobs arriving evenly over a window, each running
``duration`` seconds, so about ``concurrent`` run at once) against one pool whose cap is that
concurrency; it reports wall time, CPU time, peak RSS, how far the virtual clock got when a
wall-time limit stopped it, and how many reconciles ran. Run by ``benchmarks/scaling.py fleet``.
"""

from __future__ import annotations

import logging
import resource
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerscale.config import Config, load_config
from runnerscale.fakegithub.faults import FaultPlan, RateLimitFaults
from runnerscale.fakegithub.ratelimit import RUNNER_REGISTRATION
from runnerscale.model import RunnerState
from runnerscale.simulation.engine import EPOCH, Engine
from runnerscale.simulation.results import percentile
from runnerscale.simulation.trace import TraceJob

LABELS = ("self-hosted", "linux", "x64")
REPOS = 50
#: GitHub's runner registration budget, raised for the rungs. A runner is registered per job
#: (a JIT configuration), and at GitHub's 10,000 an hour per credential (the simulated
#: GitHub's default) the 50,000-job rung's half hour of arrivals gets 10,000 runners an hour:
#: the rung would measure refused registrations, not a fleet of 10,000 at work.
REGISTRATIONS_PER_HOUR = 200_000
FAULTS = FaultPlan(rate_limit=RateLimitFaults(limits={RUNNER_REGISTRATION: REGISTRATIONS_PER_HOUR}))

CONFIG = """\
github:
  api_url: http://127.0.0.1:9
  token: unused-in-simulation
targets:
  - org: acme
pools:
  - name: x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: {cap}
    min_idle: 0
    idle_timeout: 60s
    local:
      command: [runnerscale, sim-runner, --jitconfig, "{{jitconfig}}"]
    simulation:
      boot_time: 30s
      cost_per_hour: 0.10
"""


@dataclass(frozen=True)
class Rung:
    """One size of fleet: how many jobs, how many at once, how long each runs."""

    jobs: int
    concurrent: int
    duration: float = 300.0
    #: A burst: every job arrives within this many seconds (None: evenly, so that
    #: ``concurrent`` run at once).
    burst: float | None = None

    @property
    def name(self) -> str:
        if self.burst is not None:
            return f"{self.jobs:,}-job burst in {self.burst:.0f} s (cap {self.concurrent:,})"
        return f"{self.jobs:,} jobs / {self.concurrent:,} concurrent"


@dataclass(frozen=True)
class Measured:
    rung: Rung
    wall: float
    cpu: float
    peak_rss_mb: float
    #: Virtual seconds simulated (from the first arrival) when the run ended or was stopped.
    virtual: float
    finished: bool
    served: int
    reconciles: int
    #: The longest a runner stayed ``deleting`` (one still there at the end: until then).
    longest_deleting: float = 0.0
    #: The janitor's "removal pending" warnings (an overdue removal).
    overdue_warnings: int = 0
    #: Queue wait of the jobs served (start less creation, virtual seconds): p95 and max.
    wait_p95: float = 0.0
    wait_max: float = 0.0

    @property
    def virtual_per_cpu(self) -> float:
        """Virtual seconds simulated per CPU second (the target: about 6 for the 50,000-job
        rung's 1,830 virtual seconds in 300 s)."""
        return self.virtual / self.cpu if self.cpu > 0 else 0.0


class Removals(logging.Handler):
    """How removals went: the longest stay in ``deleting``, timed around the store's
    compare-and-set (every runner write goes through it, so a build that does not time it is
    timed the same way), and the janitor's warnings of an overdue removal."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(logging.WARNING)
        self.longest = 0.0
        self.warnings = 0
        self._clock = engine.clock
        self._since: dict[str, float] = {}
        store = engine.store
        transition = store.transition

        def timed(
            name: str,
            expected: RunnerState | Collection[RunnerState],
            new: RunnerState,
            **changes: Any,
        ) -> bool:
            written = transition(name, expected, new, **changes)
            if written:
                self._moved(name, new)
            return written

        store.transition = timed  # type: ignore[method-assign]

    def _moved(self, name: str, state: RunnerState) -> None:
        if state is RunnerState.DELETING:
            self._since.setdefault(name, self._clock.now())
        elif (since := self._since.pop(name, None)) is not None:
            self.longest = max(self.longest, self._clock.now() - since)

    def emit(self, record: logging.LogRecord) -> None:
        if "removal pending" in str(record.msg):
            self.warnings += 1

    def longest_deleting(self) -> float:
        """The longest stay in ``deleting``, counting the runners still there."""
        now = self._clock.now()
        return max([self.longest, *(now - since for since in self._since.values())])


def fleet_trace(rung: Rung) -> list[TraceJob]:
    """``rung.jobs`` jobs arriving evenly, in a burst or so that ``rung.concurrent`` run at
    once."""
    spacing = rung.burst / rung.jobs if rung.burst is not None else rung.duration / rung.concurrent
    return [
        TraceJob(
            at=round(index * spacing, 3),
            repo=f"acme/repo-{index % REPOS}",
            labels=LABELS,
            duration=rung.duration,
            run_id=1000 + index,
            job=f"job-{index}",
        )
        for index in range(rung.jobs)
    ]


def fleet_config(cap: int, directory: Path) -> Config:
    path = directory / f"fleet-{cap}.yaml"
    path.write_text(CONFIG.format(cap=cap))
    return load_config(path, env={})


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(rung: Rung, directory: Path, *, limit: float | None = None) -> Measured:
    """Simulate the rung; stop after ``limit`` wall seconds (None: run to the end).

    The engine does not yield while it has steps to run, and one virtual minute of a big
    rung can take minutes, so the limit is a timer signal; its handler asks the engine to
    stop after the step under way (raising from the handler would land in whatever code
    runs then, a garbage collector callback included, which swallows it)."""
    config = fleet_config(rung.concurrent, directory)
    engine = Engine(config, fleet_trace(rung), seed=1, faults=FAULTS)
    # Counted around the controller's step, not by the engine, so that a build whose engine
    # does not count (an older one, measured side by side) is counted the same way.
    reconciles = 0
    reconcile_once = engine.controller.reconcile_once

    async def counted() -> None:
        nonlocal reconciles
        reconciles += 1
        await reconcile_once()

    engine.controller.reconcile_once = counted  # type: ignore[method-assign]
    removals = Removals(engine)
    janitor_log = logging.getLogger("runnerscale.janitor")
    janitor_log.addHandler(removals)
    wall, cpu = time.monotonic(), time.process_time()
    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: engine.request_stop())
    if limit is not None:
        signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001))
    try:
        await engine.run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        janitor_log.removeHandler(removals)
    waits = [
        job.started_at - job.created_at
        for job in engine.world.jobs.values()
        if job.started_at is not None
    ]
    return Measured(
        rung=rung,
        wall=time.monotonic() - wall,
        cpu=time.process_time() - cpu,
        peak_rss_mb=peak_rss_mb(),
        virtual=engine.clock.now() - EPOCH,
        finished=not engine.stopped,
        served=len(waits),
        reconciles=reconciles,
        longest_deleting=removals.longest_deleting(),
        overdue_warnings=removals.warnings,
        wait_p95=percentile(waits, 0.95),
        wait_max=max(waits, default=0.0),
    )


def table(rows: list[Measured]) -> str:
    lines = [
        "| rung | wall (s) | CPU (s) | peak RSS (MB) | virtual s reached | jobs served | done "
        "| virtual s per CPU s | reconciles | longest deleting (s) | removal pending warnings "
        "| p95 wait (s) | max wait (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for m in rows:
        lines.append(
            f"| {m.rung.name} | {m.wall:.1f} | {m.cpu:.1f} | {m.peak_rss_mb:.0f} | "
            f"{m.virtual:.0f} | {m.served:,} / {m.rung.jobs:,} | "
            f"{'yes' if m.finished else '**stopped**'} | {m.virtual_per_cpu:.2f} | "
            f"{m.reconciles:,} | {m.longest_deleting:,.0f} | {m.overdue_warnings:,} | "
            f"{m.wait_p95:,.1f} | {m.wait_max:,.1f} |"
        )
    return "\n".join(lines)
