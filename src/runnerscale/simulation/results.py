"""What a simulation measures, in the shape ``runnerscale simulate --json`` writes.

The keys are an interface (DESIGN.md): ``jobs``, ``served``, ``unserved``, ``queue_wait_s``
(``p50``, ``p95``, ``p99``, ``max``), ``runner_seconds`` (``busy``, ``idle``, ``booting``),
``idle_ratio`` (idle / busy), ``api_calls``, ``api_calls_per_job``, ``cost``, and the same
figures for the lower bound under ``limit``. Timelines for the report ride along under
``timeline``; they are sampled, so the JSON stays small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values); deterministic and dependency-free."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class QueueWait:
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, waits: Sequence[float]) -> QueueWait:
        return cls(
            p50=percentile(waits, 0.50),
            p95=percentile(waits, 0.95),
            p99=percentile(waits, 0.99),
            max=max(waits, default=0.0),
        )


@dataclass(frozen=True)
class RunnerSeconds:
    busy: float
    idle: float
    booting: float

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.booting


@dataclass(frozen=True)
class Figures:
    """The figures one policy (or the lower bound) achieved on one trace."""

    jobs: int
    served: int
    unserved: int
    queue_waits: tuple[float, ...]
    runner_seconds: RunnerSeconds
    cost: float
    api_calls: int = 0
    #: The calls GitHub charged, by REST operation (its ``operationId``), as the fake GitHub
    #: counts them (``GET /_sim/stats``); empty for figures no controller produced.
    api_calls_by_operation: Mapping[str, int] = field(default_factory=dict)

    @property
    def queue_wait(self) -> QueueWait:
        return QueueWait.of(self.queue_waits)

    @property
    def idle_ratio(self) -> float:
        busy = self.runner_seconds.busy
        return self.runner_seconds.idle / busy if busy > 0 else 0.0

    @property
    def api_calls_per_job(self) -> float:
        return self.api_calls / self.jobs if self.jobs else 0.0

    def as_json(self) -> dict[str, Any]:
        wait = self.queue_wait
        return {
            "jobs": self.jobs,
            "served": self.served,
            "unserved": self.unserved,
            "queue_wait_s": {
                "p50": _round(wait.p50),
                "p95": _round(wait.p95),
                "p99": _round(wait.p99),
                "max": _round(wait.max),
            },
            "runner_seconds": {
                "busy": _round(self.runner_seconds.busy),
                "idle": _round(self.runner_seconds.idle),
                "booting": _round(self.runner_seconds.booting),
            },
            "idle_ratio": _round(self.idle_ratio, 4),
            "api_calls": self.api_calls,
            "api_calls_per_job": _round(self.api_calls_per_job, 3),
            "api_calls_by_operation": dict(sorted(self.api_calls_by_operation.items())),
            "cost": _round(self.cost, 4),
        }


@dataclass(frozen=True)
class TimelinePoint:
    """A sample of the system at one instant (seconds from the trace start)."""

    at: float
    queued: int
    booting: int
    idle: int
    busy: int
    cost: float


@dataclass(frozen=True)
class PolicyResult:
    """One policy's run: its figures and its timeline."""

    policy: str
    figures: Figures
    timeline: tuple[TimelinePoint, ...] = ()


@dataclass(frozen=True)
class SimulationResult:
    """``runnerscale simulate``'s answer for one trace and config."""

    trace: str
    seed: int
    result: PolicyResult
    limit: Figures
    compared: tuple[PolicyResult, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        body = self.result.figures.as_json()
        body["limit"] = self.limit.as_json()
        body["policy"] = self.result.policy
        body["trace"] = self.trace
        body["seed"] = self.seed
        if self.compared:
            body["compared"] = {p.policy: p.figures.as_json() for p in self.compared}
        body["timeline"] = [
            {
                "at": _round(p.at),
                "queued": p.queued,
                "booting": p.booting,
                "idle": p.idle,
                "busy": p.busy,
                "cost": _round(p.cost, 4),
            }
            for p in self.result.timeline
        ]
        return body


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits)
