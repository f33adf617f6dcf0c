"""Reference points for a simulation: the lower bound, and a static fleet. Pure functions.

A figure such as "p95 queue wait 41 s, idle ratio 0.3" means little on its own: is 41 s good
for this trace and these pools? Two reference points answer that, computed from the trace and
the pools alone (no simulator, no clock, no randomness), so they are exact and reproducible.

**The lower bound** (``limit`` in ``runnerscale simulate``'s JSON) is the best any autoscaler
could do with the same pools. It knows every job the instant it is queued (no webhook or
polling delay), starts a runner for it at once, and keeps no runner it does not need:

* each job goes to its most specific pool (:func:`~runnerscale.model.match_pool`, the routing
  runnerscale and GitHub use); a job no pool serves is ``unserved`` and has no wait;
* within a pool, the job takes a runner slot the moment it is queued or, when the pool already
  holds ``max_runners`` runners, the moment the earliest slot frees (first come, first served);
* the runner boots for the pool's boot time, runs the job, and its slot frees.

So with no binding cap ``queue_wait = boot`` for every job and the runner time is exactly
boot + job: no idle seconds at all. A real autoscaler can only add to this (detection delay,
API latency, a runner that boots while another one frees) — unless it keeps idle runners
warm, which trades idle seconds (cost) for waits below the boot time. That is what the second
reference point shows.

**The static fleet** (``static-N``) is the approach autoscaling replaces: N always-on runners
per pool, booted before the trace starts and kept for all of it. Jobs wait only when all N are
busy, but the fleet is paid for the whole trace, busy or not. It brackets the lower bound from
the other side: short waits bought with idle time. An autoscaler worth running should come near
the lower bound's waits at a cost much closer to the lower bound's than to the static fleet's.

The boot time here is a single number, the mean of the pool's configured distribution (see
:func:`pool_models`); the simulation draws each boot from the distribution itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runnerscale.model import PoolSpec, match_pool
from runnerscale.simulation.results import Figures, RunnerSeconds
from runnerscale.simulation.trace import TraceJob

if TYPE_CHECKING:
    from runnerscale.config.schema import Config
    from runnerscale.simulation.settings import BootTime


@dataclass(frozen=True)
class PoolModel:
    """What the reference points need of a pool: routing and cap, boot time, price."""

    spec: PoolSpec
    boot_time: float
    cost_per_hour: float = 0.0


def pool_models(config: Config) -> list[PoolModel]:
    """The config's pools, with the shortest boot time each pool's model allows (so the bound
    stays a bound when boot times vary: fixed value, uniform low, 0 for lognormal) and its
    price (a pool without a ``simulation`` section gets the defaults: 30 s boot, free)."""
    from runnerscale.simulation.settings import pool_simulation  # noqa: PLC0415 - keep this module light

    models: list[PoolModel] = []
    for spec, pool in zip(config.pool_specs(), config.pools, strict=True):
        simulation = pool_simulation(pool)
        models.append(
            PoolModel(
                spec=spec,
                boot_time=_shortest_boot(simulation.boot_time),
                cost_per_hour=simulation.cost_per_hour,
            )
        )
    return models


def _shortest_boot(boot: BootTime) -> float:
    if boot.distribution == "fixed" and boot.value is not None:
        return float(boot.value)
    if boot.distribution == "uniform" and boot.low is not None:
        return float(boot.low)
    return 0.0  # lognormal: no lower limit


def _route(
    jobs: Sequence[TraceJob], pools: Sequence[PoolModel]
) -> tuple[dict[str, list[TraceJob]], int]:
    """Jobs per pool name, each list in order of ``at`` (ties keep trace order), and the
    number of jobs no pool serves."""
    specs = [pool.spec for pool in pools]
    routed: dict[str, list[TraceJob]] = {pool.spec.name: [] for pool in pools}
    unmatched = 0
    for job in sorted(jobs, key=lambda job: job.at):
        spec = match_pool(specs, job.labels)
        if spec is None:
            unmatched += 1
        else:
            routed[spec.name].append(job)
    return routed, unmatched


def lower_bound(jobs: Sequence[TraceJob], pools: Sequence[PoolModel]) -> Figures:
    """The best any autoscaler could do with these pools (see the module docstring)."""
    routed, unmatched = _route(jobs, pools)
    waits: list[float] = []
    booting = busy = cost = 0.0
    served = 0
    for pool in pools:
        pool_jobs = routed[pool.spec.name]
        if not pool_jobs:
            continue
        boot = pool.boot_time
        # When each of the pool's max_runners slots next frees; a slot never used is free at 0.
        slots = [0.0] * min(pool.spec.max_runners, len(pool_jobs))
        for job in pool_jobs:
            start = max(job.at, heapq.heappop(slots))
            heapq.heappush(slots, start + boot + job.duration)
            waits.append(start + boot - job.at)
            booting += boot
            busy += job.duration
            cost += (boot + job.duration) / 3600.0 * pool.cost_per_hour
            served += 1
    return Figures(
        jobs=len(jobs),
        served=served,
        unserved=unmatched,
        queue_waits=tuple(waits),
        runner_seconds=RunnerSeconds(busy=busy, idle=0.0, booting=booting),
        cost=cost,
        api_calls=served,  # one JIT configuration per job
    )


def static_fleet(
    jobs: Sequence[TraceJob], pools: Sequence[PoolModel], n: int | None = None
) -> Figures:
    """N always-on runners per pool (each pool's ``max_runners`` when ``n`` is None), booted
    before the trace starts and on until it ends (see the module docstring).

    The trace lasts from 0 until the last job ends (or the last job is queued, if that is
    later). Jobs of a pool with no runners (``n=0``) are unserved, like unmatched ones.
    """
    if n is not None and n < 0:
        raise ValueError(f"a static fleet needs 0 or more runners per pool, not {n}")
    routed, unserved = _route(jobs, pools)
    waits: list[float] = []
    busy_by_pool: dict[str, float] = {}
    span = max((job.at for job in jobs), default=0.0)
    served = 0
    for pool in pools:
        pool_jobs = routed[pool.spec.name]
        size = pool.spec.max_runners if n is None else n
        if size == 0:
            unserved += len(pool_jobs)
            continue
        slots = [0.0] * size
        busy = 0.0
        for job in pool_jobs:
            start = max(job.at, heapq.heappop(slots))
            end = start + job.duration
            heapq.heappush(slots, end)
            waits.append(start - job.at)
            busy += job.duration
            span = max(span, end)
            served += 1
        busy_by_pool[pool.spec.name] = busy
    idle = cost = 0.0
    for pool in pools:
        size = pool.spec.max_runners if n is None else n
        idle += size * span - busy_by_pool.get(pool.spec.name, 0.0)
        cost += size * span / 3600.0 * pool.cost_per_hour
    return Figures(
        jobs=len(jobs),
        served=served,
        unserved=unserved,
        queue_waits=tuple(waits),
        runner_seconds=RunnerSeconds(busy=sum(busy_by_pool.values()), idle=idle, booting=0.0),
        cost=cost,
        api_calls=0,  # the fleet registers once, not per job
    )
