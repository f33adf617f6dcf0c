"""``runnerscale simulate``: one trace, one config, the policies side by side.

The configured policy runs on the engine; ``--compare`` adds the reference points on the same
trace and seed: ``poll-60`` (the same engine, webhooks off, a poll every minute), ``static-N``
(each pool's cap of always-on runners) and, always, the lower bound (``limit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runnerscale.config.schema import Config
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.simulation.bounds import lower_bound, pool_models, static_fleet
from runnerscale.simulation.engine import EPOCH, POLL_60, RUNNERSCALE, Engine, Policy
from runnerscale.simulation.results import PolicyResult, SimulationResult
from runnerscale.simulation.trace import TraceJob

Progress = Callable[[str, float], None]


async def run_policy(
    config: Config,
    trace: Sequence[TraceJob],
    policy: Policy,
    *,
    seed: int,
    faults: FaultPlan | None,
    progress: Progress | None,
    start: float = EPOCH,
) -> PolicyResult:
    def report(fraction: float) -> None:
        if progress is not None:
            progress(policy.name, fraction)

    engine = Engine(
        config, trace, seed=seed, policy=policy, faults=faults, progress=report, start=start
    )
    result = await engine.run()
    report(1.0)
    return result


async def simulate(
    config: Config,
    trace: Sequence[TraceJob],
    *,
    trace_name: str,
    seed: int = 0,
    compare: bool = False,
    faults: FaultPlan | None = None,
    progress: Progress | None = None,
    start: float = EPOCH,
) -> SimulationResult:
    """``start``: when the trace's ``at: 0`` is on the virtual clock (warm windows open at
    times of day)."""
    pools = pool_models(config)
    main = await run_policy(
        config, trace, RUNNERSCALE, seed=seed, faults=faults, progress=progress, start=start
    )
    compared: tuple[PolicyResult, ...] = ()
    if compare:
        polling = await run_policy(
            config, trace, POLL_60, seed=seed, faults=faults, progress=progress, start=start
        )
        sizes = "/".join(str(pool.spec.max_runners) for pool in pools)
        static = PolicyResult(f"static-{sizes}", static_fleet(trace, pools))
        compared = (polling, static)
    # Jobs of repositories outside the targets cannot be served by any autoscaler here.
    targets = config.to_targets()
    limit = lower_bound(
        trace, pools, seen=lambda job: any(target.covers(job.repo) for target in targets)
    )
    return SimulationResult(
        trace=trace_name, seed=seed, result=main, limit=limit, compared=compared
    )
