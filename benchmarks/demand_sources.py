"""The demand-source benchmark: how runnerscale hears of jobs, on the shared traces.

Runs ``runnerscale simulate --demand-sources`` on each trace in ../shared/traces/ against
reference.yaml (webhooks with polling, polling only, webhooks with polling and 30% of the
webhooks lost, and the same pools as runner scale sets, with and without the loss) and writes
benchmarks/demand_sources.md and benchmarks/demand_sources.png: p95 wait and API calls per
job (REST and Actions service apart) per variant per trace.

    .venv/bin/python benchmarks/demand_sources.py [--traces DIR] [--seed N] [--out FILE]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runnerscale.simulation.demand import VARIANTS, DemandComparison, compare_demand_sources
from runnerscale.simulation.report import demand_markdown
from runnerscale.simulation.results import Figures
from runnerscale.simulation.run import Progress
from runnerscale.simulation.trace import read_trace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scaling benchmark's options and reference config

from benchmarks.scaling import arguments, reference_config

TRACES = ("workday", "matrix-bursts", "nightly")


def progress_printer(trace: str) -> Progress:
    """Prints each variant's progress in quarters, and when it is done, with its time."""
    started: dict[str, float] = {}
    shown: dict[str, int] = {}

    def progress(variant: str, fraction: float) -> None:
        if variant not in started:
            started[variant] = time.monotonic()
            shown[variant] = -1
        quarter = int(fraction * 4)
        if quarter > shown[variant]:
            shown[variant] = quarter
            took = time.monotonic() - started[variant]
            print(f"{trace}: {variant}: {quarter * 25}% ({took:.1f} s)", flush=True)

    return progress


def skip_printer(trace: str) -> Callable[[str, str], None]:
    def skipping(variant: str, why: str) -> None:
        print(f"{trace}: skipped {variant}: {why}", flush=True)

    return skipping


def section(comparison: DemandComparison, seconds: float) -> str:
    rows = [(result.policy, result.figures) for result in comparison.results]
    lines = [f"## {comparison.trace}", "", demand_markdown(rows)]
    for variant, reason in comparison.skipped.items():
        lines.append(f"- skipped *{variant}*: {reason}")
    figures = dict(rows)
    lossless = figures.get("webhooks+polling")
    lossy = next((f for name, f in rows if name.startswith("webhooks+polling,")), None)
    polling = figures.get("polling only")
    if lossless is not None and lossy is not None and polling is not None:
        served = (
            f"every job is still served ({lossy.served} of {lossy.jobs}): the safety-net poll "
            "finds the rest"
            if lossy.served == lossy.jobs
            else f"**{lossy.unserved} of {lossy.jobs} jobs never served** (see below)"
        )
        lines += [
            "",
            f"With {lossy.webhooks_lost} of {lossy.webhooks_lost + lossy.webhooks_delivered} "
            f"webhooks lost, {served}, and p95 wait goes from "
            f"{lossless.queue_wait.p95:.1f} s to {lossy.queue_wait.p95:.1f} s. Polling alone "
            f"waits {polling.queue_wait.p95:.1f} s at p95 for "
            f"{polling.api_calls_per_job:.2f} REST calls per job "
            f"(webhooks: {lossless.api_calls_per_job:.2f}).",
        ]
    scale_sets = figures.get("scale sets")
    if lossless is not None and scale_sets is not None:
        lines += [
            "",
            f"As scale sets, {scale_sets.served} of {scale_sets.jobs} jobs are served with a "
            f"p95 wait of {scale_sets.queue_wait.p95:.1f} s (webhooks: "
            f"{lossless.queue_wait.p95:.1f} s), for {scale_sets.api_calls_per_job:.2f} REST "
            f"and {scale_sets.actions_service_calls_per_job:.2f} Actions-service calls per job.",
        ]
    lines += ["", f"Simulated in {seconds:.1f} s.", ""]
    return "\n".join(lines)


def plot(comparisons: list[DemandComparison], out: Path) -> None:
    """p95 wait, and API calls per job (REST, with the Actions service's stacked on top), per
    variant per trace. Deterministic: fixed style and size, no metadata."""
    import matplotlib  # noqa: PLC0415 - only for the picture

    matplotlib.use("Agg")
    import matplotlib.style  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    names = [variant.name for variant in VARIANTS]
    ran = [n for n in names if any(n in _by_name(c) for c in comparisons)]
    width = 0.8 / max(1, len(ran))
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
        waits, calls = figure.subplots(1, 2)
        for index, name in enumerate(ran):
            offsets = [t + (index - (len(ran) - 1) / 2) * width for t in range(len(comparisons))]
            found = [_by_name(c).get(name) for c in comparisons]
            p95 = [f.queue_wait.p95 if f is not None else 0.0 for f in found]
            rest = [f.api_calls_per_job if f is not None else 0.0 for f in found]
            service = [f.actions_service_calls_per_job if f is not None else 0.0 for f in found]
            colour = f"C{index}"
            waits.bar(offsets, p95, width, label=name, color=colour)
            calls.bar(offsets, rest, width, label=f"{name}: REST", color=colour)
            if any(service):
                calls.bar(
                    offsets,
                    service,
                    width,
                    bottom=rest,
                    color=colour,
                    hatch="//",
                    alpha=0.6,
                    label=f"{name}: Actions service",
                )
        for axes, title, unit in (
            (waits, "p95 queue wait", "seconds"),
            (calls, "API calls per job", "calls per job"),
        ):
            axes.set_xticks(range(len(comparisons)), [c.trace for c in comparisons])
            axes.set_title(title)
            axes.set_ylabel(unit)
            axes.grid(axis="y", alpha=0.3)
        waits.legend(loc="upper left", fontsize="small")
        figure.savefig(out, format="png", facecolor="white", metadata={"Software": None})


def _by_name(comparison: DemandComparison) -> dict[str, Figures]:
    return {result.policy: result.figures for result in comparison.results}


async def main() -> None:
    args = arguments("demand_sources.md", __doc__)
    config = reference_config(args.traces)
    picture = args.out.with_suffix(".png")
    parts = [
        "# Demand-source benchmark",
        "",
        "How runnerscale hears of jobs, on the shared traces against `reference.yaml` (three",
        "pools, 30 s boot, `min_idle: 0`, caps 50/20/4, `poll_interval` 15 s,",
        "`webhook_poll_interval` 5 min): `workflow_job` webhooks with REST polling as the",
        "safety net, REST polling alone (no inbound endpoint), the same webhooks with 30% of",
        "them lost (GitHub does not redeliver a failed delivery by itself), and runner scale",
        "sets (`docs/scale-sets.md`). Reproduce with:",
        "",
        "```sh",
        "bash scripts/bootstrap && .venv/bin/python benchmarks/demand_sources.py "
        f"--seed {args.seed}",
        "```",
        "",
        "or one trace at a time: `runnerscale simulate --trace TRACE --config reference.yaml "
        f"--demand-sources --seed {args.seed}`.",
        "",
        "REST calls are those GitHub charged (an unchanged answer is a free 304);",
        "Actions-service calls are the requests a scale set's listener and runners make to the",
        "Actions service (session, long poll, acknowledgements, JIT configurations), counted",
        "apart because they are not charged to a REST budget and their limits are unpublished.",
        "Webhooks are the `workflow_job` deliveries that reached runnerscale and those lost.",
        "",
        f"![p95 wait and API calls per job, per demand source and trace]({picture.name})",
        "",
    ]
    comparisons = []
    for name in TRACES:
        trace = read_trace(args.traces / f"{name}.jsonl")
        started = time.monotonic()
        comparison = await compare_demand_sources(
            config,
            trace,
            trace_name=name,
            seed=args.seed,
            progress=progress_printer(name),
            skipping=skip_printer(name),
        )
        comparisons.append(comparison)
        seconds = time.monotonic() - started
        parts.append(section(comparison, seconds))
        print(f"{name}: done in {seconds:.1f} s", flush=True)
    parts += [
        "## How to read it",
        "",
        "- **Webhooks with polling** wait a boot (30 s) and a delivery (1 s) for a runner and",
        "  cost about one REST call per job (its JIT configuration) plus the 5-minute",
        "  safety-net poll.",
        "- **30% of webhooks lost**: the lost `completed` and `in_progress` deliveries cost",
        "  re-reads, and a job whose `queued` delivery is lost waits for the safety-net poll.",
        "  A push whose jobs a webhook announced is no suspect for that poll, so it also",
        "  reads the jobs of each run heard of once, a minute after its newest job heard",
        "  (`github/schedule.py`, `runs_to_confirm`): a lost job whose siblings were heard is",
        "  found within that minute and a poll, for about one request per run. (Before, such",
        "  a job waited for the repository's slow sweep: in `matrix-bursts` job 7000380, the",
        "  last of run 5010's 39 jobs, was still queued when the simulation ended.)",
        "  Scale sets need none of this: GitHub redelivers a message until it is acknowledged.",
        "- **Polling only** hears of a job within `poll_interval` (15 s) but reads every",
        "  active repository's runs and jobs each time: several REST calls per job.",
        "- **Scale sets** run the same three pools as `demand: scale_set` pools (the scale set",
        "  `runnerscale-<pool>`, the pool's labels its extra labels), each job `runs-on` its",
        "  pool's scale set as a user who moved to them would write it, through the daemon's",
        "  own listeners and registrars against the simulated Actions service",
        "  (`runnerscale.simulation.scalesets`). They hear of a",
        "  job from a long poll whose messages wait until acknowledged, so no event is lost",
        "  and the 30% row is the same run by construction (no webhook is used). Their",
        "  Actions-service calls are the long polls (one per message, and one per empty",
        "  50 s hold per scale set: three scale sets poll all day), an acknowledgement per",
        "  message, and one JIT configuration per runner; their REST calls are only the",
        "  safety-net runner list (every `webhook_poll_interval`) and the registration",
        "  token the authentication chain renews hourly. No REST call reads a job.",
        "- Why the jobs name their scale set: GitHub gives a job to a scale set holding all",
        '  of its labels, and "arbitrarily" to one of several (docs/simulator.md). `gpu`',
        "  holds every label of `x64`, so with the jobs' labels unchanged many of",
        "  the plain `x64` jobs ran on `gpu` runners (at $1.20 an hour): on `workday` the",
        "  cost rose from $4.56 to $19.20 for the same waits.",
        "",
    ]
    args.out.write_text("\n".join(parts))
    plot(comparisons, picture)
    print(f"wrote {args.out} and {picture}")


if __name__ == "__main__":
    asyncio.run(main())
