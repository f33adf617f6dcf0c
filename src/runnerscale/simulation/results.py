"""What a simulation measures, in the shape ``runnerscale simulate --json`` writes.

The keys are an interface (DESIGN.md): ``jobs``, ``served``, ``unserved``, ``queue_wait_s``
(``p50``, ``p95``, ``p99``, ``max``), ``runner_seconds`` (``busy``, ``idle``, ``booting``),
``idle_ratio`` (idle / busy), ``api_calls``, ``api_calls_per_job``, ``cost``, and the same
figures for the lower bound under ``limit``. Under ``pools`` the same figures but the API
calls come again for each pool: a whole-run p95 or cost does not say which pool made it.
Timelines for the report ride along under ``timeline``; they are sampled, so the JSON stays
small. A pool priced by market (ec2) adds ``market`` (:class:`MarketFigures`), and so does the
run when it has such a pool.

``api_calls`` are REST calls (those GitHub charged). ``runnerscale simulate --demand-sources``
adds, per variant, how the run heard of its jobs otherwise (:meth:`Figures.demand_json`):
``actions_service_calls`` (the requests to the Actions service, which runner scale sets talk
to; uncharged, so all of them) and ``webhooks`` (deliveries that reached runnerscale, and those
GitHub lost).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerscale.simulation.occupancy import Buckets


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

    def __add__(self, other: RunnerSeconds) -> RunnerSeconds:
        return RunnerSeconds(
            busy=self.busy + other.busy,
            idle=self.idle + other.idle,
            booting=self.booting + other.booting,
        )


#: No runner time at all: where sums of :class:`RunnerSeconds` start.
NO_RUNNER_SECONDS = RunnerSeconds(busy=0.0, idle=0.0, booting=0.0)


def _merged(first: Mapping[str, float], second: Mapping[str, float]) -> dict[str, float]:
    merged = dict(first)
    for key, value in second.items():
        merged[key] = merged.get(key, 0) + value
    return merged


@dataclass(frozen=True)
class MarketFigures:
    """What a pool priced by market (ec2) spent on each market, and what spot cost it besides
    money: launches refused for capacity, instances taken back, the jobs they were running
    (``jobs_lost``: by the simulation's own books) and those runnerscale re-ran
    (``jobs_rerun``: losses the controller settled as re-run)."""

    cost: Mapping[str, float]
    launches: Mapping[str, int]
    spot_capacity_short: int = 0
    interruption_notices: int = 0
    interruptions: int = 0
    jobs_lost: int = 0
    jobs_rerun: int = 0

    def __add__(self, other: MarketFigures) -> MarketFigures:
        return MarketFigures(
            cost=_merged(self.cost, other.cost),
            launches={k: int(v) for k, v in _merged(self.launches, other.launches).items()},
            spot_capacity_short=self.spot_capacity_short + other.spot_capacity_short,
            interruption_notices=self.interruption_notices + other.interruption_notices,
            interruptions=self.interruptions + other.interruptions,
            jobs_lost=self.jobs_lost + other.jobs_lost,
            jobs_rerun=self.jobs_rerun + other.jobs_rerun,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "cost": {market: _round(cost, 4) for market, cost in self.cost.items()},
            "launches": dict(self.launches),
            "spot_capacity_short": self.spot_capacity_short,
            "interruption_notices": self.interruption_notices,
            "interruptions": self.interruptions,
            "jobs_lost": self.jobs_lost,
            "jobs_rerun": self.jobs_rerun,
        }


@dataclass(frozen=True)
class PoolFigures:
    """How one pool served its jobs and what its runners cost.

    A job belongs to the pool it is routed to (:func:`runnerscale.model.match_pool`, the rule
    the controller provisions by and the lower bound assumes), whichever runner took it in
    the end; runner time and cost are the pool's own instances'. :class:`Figures` are these
    figures for the whole run, with what only the whole run has: the GitHub API calls, which
    are made per target, not per pool.
    """

    jobs: int
    served: int
    unserved: int
    queue_waits: tuple[float, ...]
    runner_seconds: RunnerSeconds
    cost: float
    #: For a pool priced by market (and a run with one): cost by market, spot's toll.
    market: MarketFigures | None = None

    @property
    def queue_wait(self) -> QueueWait:
        return QueueWait.of(self.queue_waits)

    @property
    def idle_ratio(self) -> float:
        busy = self.runner_seconds.busy
        return self.runner_seconds.idle / busy if busy > 0 else 0.0

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
            "cost": _round(self.cost, 4),
            **({"market": self.market.as_json()} if self.market is not None else {}),
        }


@dataclass(frozen=True)
class Figures(PoolFigures):
    """The figures one policy (or the lower bound) achieved on one trace."""

    api_calls: int = 0
    #: The calls GitHub charged, by REST operation (its ``operationId``), as the fake GitHub
    #: counts them (``GET /_sim/stats``); empty for figures no controller produced.
    api_calls_by_operation: Mapping[str, int] = field(default_factory=dict)
    #: The same figures per pool, in the config's order; empty for figures made by hand.
    pools: Mapping[str, PoolFigures] = field(default_factory=dict)
    #: Requests to the Actions service (scale sets), by operation: apart from the REST calls.
    actions_service_calls_by_operation: Mapping[str, int] = field(default_factory=dict)
    #: ``workflow_job`` deliveries that reached runnerscale, and those GitHub lost.
    webhooks_delivered: int = 0
    webhooks_lost: int = 0

    @classmethod
    def of_pools(
        cls,
        pools: Mapping[str, PoolFigures],
        *,
        unmatched: int,
        api_calls: int = 0,
        api_calls_by_operation: Mapping[str, int] | None = None,
        actions_service_calls_by_operation: Mapping[str, int] | None = None,
        webhooks_delivered: int = 0,
        webhooks_lost: int = 0,
    ) -> Figures:
        """The whole run as the sum of its pools, so that the two never disagree. The
        ``unmatched`` jobs, which no pool serves, count as jobs and as unserved, in no pool."""
        parts = list(pools.values())
        markets = [part.market for part in parts if part.market is not None]
        return cls(
            jobs=sum(part.jobs for part in parts) + unmatched,
            served=sum(part.served for part in parts),
            unserved=sum(part.unserved for part in parts) + unmatched,
            queue_waits=tuple(wait for part in parts for wait in part.queue_waits),
            runner_seconds=sum((part.runner_seconds for part in parts), NO_RUNNER_SECONDS),
            cost=sum((part.cost for part in parts), 0.0),
            market=sum(markets[1:], markets[0]) if markets else None,
            api_calls=api_calls,
            api_calls_by_operation=dict(api_calls_by_operation or {}),
            pools=dict(pools),
            actions_service_calls_by_operation=dict(actions_service_calls_by_operation or {}),
            webhooks_delivered=webhooks_delivered,
            webhooks_lost=webhooks_lost,
        )

    @property
    def api_calls_per_job(self) -> float:
        return self.api_calls / self.jobs if self.jobs else 0.0

    @property
    def actions_service_calls(self) -> int:
        return sum(self.actions_service_calls_by_operation.values())

    @property
    def actions_service_calls_per_job(self) -> float:
        return self.actions_service_calls / self.jobs if self.jobs else 0.0

    def as_json(self) -> dict[str, Any]:
        body = super().as_json()
        cost = body.pop("cost")  # the keys keep the order they have always had
        market = body.pop("market", None)
        body["api_calls"] = self.api_calls
        body["api_calls_per_job"] = _round(self.api_calls_per_job, 3)
        body["api_calls_by_operation"] = dict(sorted(self.api_calls_by_operation.items()))
        body["cost"] = cost
        if market is not None:
            body["market"] = market
        body["pools"] = {name: pool.as_json() for name, pool in self.pools.items()}
        return body

    def demand_json(self) -> dict[str, Any]:
        """How the run heard of its jobs besides the REST calls (``--demand-sources`` adds
        these keys to each variant's :meth:`as_json`; ``--json`` keeps the keys it has always
        had)."""
        return {
            "actions_service_calls": self.actions_service_calls,
            "actions_service_calls_per_job": _round(self.actions_service_calls_per_job, 3),
            "actions_service_calls_by_operation": dict(
                sorted(self.actions_service_calls_by_operation.items())
            ),
            "webhooks": {"delivered": self.webhooks_delivered, "lost": self.webhooks_lost},
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
    """One policy's run: its figures, its timeline (samples, for the JSON and the cost plot)
    and, for a simulated run, its runners by state over time (exact, in buckets, for the
    report's plot; see :mod:`runnerscale.simulation.occupancy`)."""

    policy: str
    figures: Figures
    timeline: tuple[TimelinePoint, ...] = ()
    occupancy: Buckets | None = None


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
