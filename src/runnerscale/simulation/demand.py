"""``runnerscale simulate --demand-sources``: how runnerscale hears of jobs, compared on a trace.

runnerscale can learn of demand three ways: ``workflow_job`` webhooks with REST polling as the
safety net (the default), REST polling alone (no inbound endpoint), and GitHub's runner scale
sets (a long poll to the Actions service that hands out the demand number itself:
``docs/scale-sets.md``). Which to pick is a trade of waits against API calls and of what can
go wrong: GitHub does not redeliver a lost webhook, so each source also runs with 30% of the
webhooks lost (:data:`WEBHOOK_LOSS`), where polling has to repair what the webhooks missed.

Each variant runs the config's pools on the same trace, seed and fault plan; only the demand
source (and the webhook loss) differs. A source is a registry entry (:data:`SOURCES`) with the
function that runs a variant on it; a source without one is listed and skipped with the
entry's reason, not left out silently.

The scale-set variants run the config's pools as ``demand: scale_set`` pools, and the trace's
jobs as a user who moved to them would write them (:func:`as_scale_sets`): each pool becomes
the scale set ``runnerscale-<pool>`` with the pool's labels as its extra labels, and each job
``runs-on`` the scale set of the pool that served it. Why not keep the jobs' labels: GitHub
gives a job to a scale set holding all of its labels, and "arbitrarily" to one of several
(docs/simulator.md); where pools' labels nest (``gpu`` holds all of ``x64``'s), plain jobs
would run on the dearest pool's runners, which no one would configure on purpose.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runnerscale.config.schema import Config
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.model import match_pool
from runnerscale.simulation.engine import EPOCH, Policy
from runnerscale.simulation.results import PolicyResult
from runnerscale.simulation.run import Progress, run_policy
from runnerscale.simulation.trace import TraceJob

#: The share of webhooks the lossy variants lose. GitHub "does not automatically redeliver
#: failed deliveries" (docs.github.com/en/webhooks/using-webhooks/
#: handling-failed-webhook-deliveries).
WEBHOOK_LOSS = 0.3

WEBHOOKS = "webhooks"
POLLING = "polling"
SCALE_SETS = "scale_sets"


@dataclass(frozen=True)
class DemandVariant:
    """One row of the comparison: a demand source, and how many webhooks GitHub loses."""

    name: str
    source: str
    webhook_loss: float = 0.0


@dataclass(frozen=True)
class Replay:
    """What every variant replays alike: the config's pools, the trace, the seed, the fault
    plan (the variant's webhook loss already in it), the progress hook, the start."""

    config: Config
    trace: Sequence[TraceJob]
    seed: int
    faults: FaultPlan
    progress: Progress | None
    start: float


#: Runs a variant on its source; the result's policy is named after the variant.
VariantRunner = Callable[[DemandVariant, Replay], Awaitable[PolicyResult]]


@dataclass(frozen=True)
class DemandSource:
    """A registry entry: how to run a variant on this source, or why it cannot be run yet."""

    runner: VariantRunner | None
    missing: str = ""


def _engine_runner(
    webhooks: bool, adapt: Callable[[Replay], Replay] = lambda replay: replay
) -> VariantRunner:
    """The engine with webhooks on or off; polling at the config's intervals either way.
    ``adapt``: the config and trace as this source runs them."""

    async def run(variant: DemandVariant, given: Replay) -> PolicyResult:
        replay = adapt(given)
        return await run_policy(
            replay.config,
            replay.trace,
            Policy(variant.name, webhooks=webhooks),
            seed=replay.seed,
            faults=replay.faults,
            progress=replay.progress,
            start=replay.start,
        )

    return run


def scale_set_name(pool: str) -> str:
    """The scale set a webhook pool becomes (a name no pool's label is, as a job's
    ``runs-on`` must single it out)."""
    return f"runnerscale-{pool}"


def as_scale_set_pools(config: Config) -> Config:
    """``config`` with every webhook pool a scale-set pool: the scale set
    :func:`scale_set_name`, the pool's labels its extra labels. The copy is validated as a
    file would be."""
    data = config.model_dump(mode="python", exclude_unset=True)
    for pool in data["pools"]:
        labels = pool.pop("labels", [])  # (a scale-set pool's: filled in from its block)
        if pool.get("demand", "webhooks") == "scale_set":
            continue
        pool["demand"] = "scale_set"
        pool["scale_set"] = {"name": scale_set_name(pool["name"]), "labels": labels}
    return Config.model_validate(data)


def as_scale_sets(replay: Replay) -> Replay:
    """The replay with the config's pools as scale-set pools (:func:`as_scale_set_pools`) and
    each job asking for the scale set of the pool that would have served it (the module says
    why); a job no pool serves, or a scale-set pool's, keeps its labels."""
    config = replay.config
    specs = config.pool_specs()
    webhook_pools = {pool.name for pool in config.pools if pool.scale_set is None}

    def runs_on(job: TraceJob) -> TraceJob:
        spec = match_pool(specs, job.labels)
        if spec is None or spec.name not in webhook_pools:
            return job
        return replace(job, labels=(scale_set_name(spec.name),))

    trace = tuple(runs_on(job) for job in replay.trace)
    return replace(replay, config=as_scale_set_pools(config), trace=trace)


#: The demand sources by name.
SOURCES: dict[str, DemandSource] = {
    WEBHOOKS: DemandSource(_engine_runner(webhooks=True)),
    POLLING: DemandSource(_engine_runner(webhooks=False)),
    # (No webhook: a scale set never hears one.)
    SCALE_SETS: DemandSource(_engine_runner(webhooks=False, adapt=as_scale_sets)),
}

#: The comparison's rows, in order. A scale set hears no webhook, so its lossy variant is the
#: same run by construction: it is there to show so beside the others.
VARIANTS: tuple[DemandVariant, ...] = (
    DemandVariant("webhooks+polling", WEBHOOKS),
    DemandVariant("polling only", POLLING),
    DemandVariant(f"webhooks+polling, {WEBHOOK_LOSS:.0%} webhooks lost", WEBHOOKS, WEBHOOK_LOSS),
    DemandVariant("scale sets", SCALE_SETS),
    DemandVariant(f"scale sets, {WEBHOOK_LOSS:.0%} webhooks lost", SCALE_SETS, WEBHOOK_LOSS),
)


def with_webhook_loss(plan: FaultPlan, loss: float) -> FaultPlan:
    """``plan`` with GitHub losing ``loss`` of the webhooks; a loss of 0 leaves it as given."""
    if loss <= 0.0:
        return plan
    webhooks = plan.webhooks.model_copy(update={"drop_rate": loss})
    return plan.model_copy(update={"webhooks": webhooks})


@dataclass(frozen=True)
class DemandComparison:
    """The variants that ran, in :data:`VARIANTS` order, and those skipped, with why."""

    trace: str
    seed: int
    results: tuple[PolicyResult, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "seed": self.seed,
            "demand_sources": {
                r.policy: {**r.figures.as_json(), **r.figures.demand_json()} for r in self.results
            },
            "skipped": dict(self.skipped),
        }


async def compare_demand_sources(
    config: Config,
    trace: Sequence[TraceJob],
    *,
    trace_name: str,
    seed: int = 0,
    faults: FaultPlan | None = None,
    progress: Progress | None = None,
    start: float = EPOCH,
    sources: Mapping[str, DemandSource] = SOURCES,
    variants: Sequence[DemandVariant] = VARIANTS,
    skipping: Callable[[str, str], None] | None = None,
) -> DemandComparison:
    """Run every variant whose source has a runner; ``skipping(variant, reason)`` hears of the
    others as they are passed over."""
    results: list[PolicyResult] = []
    skipped: dict[str, str] = {}
    for variant in variants:
        source = sources.get(variant.source)
        if source is None or source.runner is None:
            reason = source.missing if source is not None else "no such demand source"
            skipped[variant.name] = reason
            if skipping is not None:
                skipping(variant.name, reason)
            continue
        plan = with_webhook_loss(faults or FaultPlan(), variant.webhook_loss)
        replay = Replay(config, trace, seed, plan, progress, start)
        results.append(await source.runner(variant, replay))
    return DemandComparison(trace_name, seed, tuple(results), skipped)
