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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runnerscale.model import PoolSpec, match_pool
from runnerscale.simulation.results import Figures, PoolFigures, RunnerSeconds
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
    lowest price (spot, for an ec2 pool that may launch there; see
    :func:`~runnerscale.simulation.pools.backend_model` for the defaults)."""
    from runnerscale.simulation.pools import backend_model  # noqa: PLC0415 - keep this module light

    models: list[PoolModel] = []
    for spec, pool in zip(config.pool_specs(), config.pools, strict=True):
        backend = backend_model(pool)
        models.append(
            PoolModel(
                spec=spec,
                boot_time=_shortest_boot(backend.boot_time),
                cost_per_hour=backend.cheapest,
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


def _first_come(jobs: Sequence[TraceJob], slots: int, boot: float) -> tuple[list[float], float]:
    """``jobs`` (in order of ``at``) on ``slots`` runner slots, first come, first served: a job
    takes the earliest slot to free (at once when one is free), its runner boots for ``boot``
    and runs it. The jobs' waits, and when the last slot frees (0 for no jobs)."""
    # When each slot next frees; a slot never used is free at 0.
    frees = [0.0] * min(slots, len(jobs))
    waits: list[float] = []
    for job in jobs:
        start = max(job.at, heapq.heappop(frees))
        heapq.heappush(frees, start + boot + job.duration)
        waits.append(start + boot - job.at)
    return waits, max(frees, default=0.0)


def lower_bound(
    jobs: Sequence[TraceJob],
    pools: Sequence[PoolModel],
    *,
    seen: Callable[[TraceJob], bool] = lambda job: True,
) -> Figures:
    """The best any autoscaler could do with these pools (see the module docstring).

    A job for which ``seen`` is false (its repository is outside the config's targets) is
    never heard of: unserved in the pool it is routed to, like in the simulation.
    """
    routed, unmatched = _route(jobs, pools)
    per_pool: dict[str, PoolFigures] = {}
    for pool in pools:
        pool_jobs = routed[pool.spec.name]
        heard = [job for job in pool_jobs if seen(job)]
        waits, _ = _first_come(heard, pool.spec.max_runners, pool.boot_time)
        busy = sum((job.duration for job in heard), 0.0)
        booting = pool.boot_time * len(heard)
        per_pool[pool.spec.name] = PoolFigures(
            jobs=len(pool_jobs),
            served=len(heard),
            unserved=len(pool_jobs) - len(heard),
            queue_waits=tuple(waits),
            runner_seconds=RunnerSeconds(busy=busy, idle=0.0, booting=booting),
            cost=(booting + busy) / 3600.0 * pool.cost_per_hour,
        )
    served = sum(figures.served for figures in per_pool.values())
    # One JIT configuration per job.
    return Figures.of_pools(per_pool, unmatched=unmatched, api_calls=served)


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
    routed, unmatched = _route(jobs, pools)
    span = max((job.at for job in jobs), default=0.0)
    served: dict[str, list[float]] = {}
    for pool in pools:
        size = pool.spec.max_runners if n is None else n
        if size > 0:
            waits, last_free = _first_come(routed[pool.spec.name], size, boot=0.0)
            served[pool.spec.name] = waits
            span = max(span, last_free)
    # Every pool's fleet is paid for the whole trace, which ends with the last job of any pool.
    per_pool: dict[str, PoolFigures] = {}
    for pool in pools:
        size = pool.spec.max_runners if n is None else n
        pool_jobs = routed[pool.spec.name]
        waits = served.get(pool.spec.name, [])
        ran = pool.spec.name in served  # (a fleet of 0 runs nothing)
        busy = sum((job.duration for job in pool_jobs), 0.0) if ran else 0.0
        per_pool[pool.spec.name] = PoolFigures(
            jobs=len(pool_jobs),
            served=len(waits),
            unserved=len(pool_jobs) - len(waits),
            queue_waits=tuple(waits),
            runner_seconds=RunnerSeconds(busy=busy, idle=size * span - busy, booting=0.0),
            cost=size * span / 3600.0 * pool.cost_per_hour,
        )
    return Figures.of_pools(per_pool, unmatched=unmatched)  # the fleet registers once: 0 calls
