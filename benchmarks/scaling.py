"""The scaling benchmark: the shared traces against the reference config.

Runs runnerscale, poll-60, static-N and the lower bound on each trace in ../shared/traces/ and
writes benchmarks/scaling.md: one table per trace and the targets, each marked met or missed.

    .venv/bin/python benchmarks/scaling.py [--traces DIR] [--seed N] [--out FILE]

Two more parts measure fleet scale (issue 18) and print a table for scaling.md's
"Fleet scale" section, which the traces' run keeps:

    .venv/bin/python benchmarks/scaling.py fleet [--limit SECONDS] [--rungs ...]
    .venv/bin/python benchmarks/scaling.py fakegithub [--sizes 100 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import scaling_fakegithub, scaling_fleet

from runnerscale.config import Config, load_config
from runnerscale.simulation.report import markdown_table
from runnerscale.simulation.results import Figures, SimulationResult
from runnerscale.simulation.run import simulate
from runnerscale.simulation.trace import read_trace

ROOT = Path(__file__).resolve().parents[1]
TRACES = ("workday", "matrix-bursts", "nightly")
#: Where the hand-kept fleet-scale part of scaling.md starts; the traces' run keeps it.
FLEET_SECTION = "## Fleet scale"
#: The rungs ``fleet`` runs by default: jobs/concurrent, and the bursts the issue profiled.
FLEET_RUNGS = ("1000/1000/10", "10000/10000/10", "5000/1000", "50000/10000")


def targets(result: SimulationResult) -> list[tuple[str, bool, str]]:
    main = result.result.figures
    limit = result.limit
    polling = next(p.figures for p in result.compared if p.policy == "poll-60")
    excess = main.queue_wait.p95 - limit.queue_wait.p95
    polling_excess = polling.queue_wait.p95 - limit.queue_wait.p95
    ratio = polling_excess / excess if excess > 0 else float("inf")
    return [
        ("p95 queue wait within 5 s of the lower bound", excess <= 5.0, f"+{excess:.1f} s"),
        (
            "idle runner time at most 10% of busy runner time",
            main.idle_ratio <= 0.10,
            f"{main.idle_ratio:.1%}",
        ),
        (
            "at most 3 GitHub API calls per job",
            main.api_calls_per_job <= 3.0,
            f"{main.api_calls_per_job:.2f}",
        ),
        (
            "p95 excess over the bound at least 5x smaller than poll-60's",
            ratio >= 5.0,
            f"{ratio:.0f}x (poll-60: +{polling_excess:.1f} s)" if excess > 0 else "no excess",
        ),
    ]


def section(name: str, result: SimulationResult, seconds: float) -> str:
    rows: list[tuple[str, Figures]] = [(result.result.policy, result.result.figures)]
    rows += [(p.policy, p.figures) for p in result.compared]
    rows.append(("lower bound", result.limit))
    lines = [
        f"## {name}",
        "",
        markdown_table(rows),
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    for text, met, measured in targets(result):
        lines.append(f"| {text} | {'yes' if met else '**no**'} | {measured} |")
    lines += ["", f"Simulated in {seconds:.1f} s.", ""]
    return "\n".join(lines)


def arguments(out: str, description: str = __doc__) -> argparse.Namespace:
    """A benchmark's options over the shared traces: where they are, the seed, the output
    (``out`` under benchmarks/ by default); ``description``: the benchmark's docstring."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / out)
    return parser.parse_args()


def reference_config(traces: Path) -> Config:
    """The traces' ``reference.yaml``; the secrets it names need not be set."""
    reference = traces / "reference.yaml"
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", reference.read_text())
    return load_config(reference, env=dict.fromkeys(names, "unused-in-simulation"))


async def main() -> None:
    args = arguments("scaling.md")
    config = reference_config(args.traces)
    parts = [
        "# Scaling benchmark",
        "",
        "The shared traces against `reference.yaml` (three pools, 30 s boot, `min_idle: 0`,",
        "caps 50/20/4). Reproduce with:",
        "",
        "```sh",
        f"bash scripts/bootstrap && .venv/bin/python benchmarks/scaling.py --seed {args.seed}",
        "```",
        "",
        "or one trace at a time: `runnerscale simulate --trace TRACE --config reference.yaml "
        f"--compare --seed {args.seed}`.",
        "",
    ]
    for name in TRACES:
        trace = read_trace(args.traces / f"{name}.jsonl")
        started = time.monotonic()
        result = await simulate(config, trace, trace_name=name, seed=args.seed, compare=True)
        parts.append(section(name, result, time.monotonic() - started))
        print(f"{name}: done in {time.monotonic() - started:.1f}s")
    parts += [
        "## Where the API calls go",
        "",
        "Per job, the JIT configuration costs 1 call; a finished JIT runner leaves GitHub by",
        "itself, so no delete is needed. The rest is the safety net. While webhooks arrive,",
        "GitHub is polled every `webhook_poll_interval` (5 minutes): the runner list, the",
        "repositories pushed to with no job heard of since, and a slow sweep of the others;",
        "jobs are re-read one by one only when they look stuck. Unchanged answers are free",
        "304s. `poll-60` has no webhooks: every minute it reads every repository with active",
        "jobs in full, and the first page of the repository list to see new pushes.",
        "",
        "Before a runner is created for a job queued longer than `queued_recheck` (2 minutes)",
        "since GitHub last said so, the job is re-read: a job that finished meanwhile must not",
        "boot a runner that idles until its timeout. That costs up to a call per runner",
        "created for a long queue: most visible in `nightly`, a queue of up to an hour",
        "behind a cap of 4.",
        "",
    ]
    kept = args.out.read_text().partition(FLEET_SECTION) if args.out.exists() else ("", "", "")
    args.out.write_text("\n".join(parts) + ("\n" + kept[1] + kept[2] if kept[1] else ""))
    print(f"wrote {args.out}")


def rung(text: str) -> scaling_fleet.Rung:
    """``JOBS/CONCURRENT`` or ``JOBS/CAP/BURST-SECONDS``."""
    jobs, concurrent, *burst = (float(part) for part in text.split("/"))
    return scaling_fleet.Rung(int(jobs), int(concurrent), burst=burst[0] if burst else None)


async def fleet(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="fleet-scale rungs of the simulation")
    parser.add_argument("--rungs", nargs="+", type=rung, default=[rung(r) for r in FLEET_RUNGS])
    parser.add_argument("--limit", type=float, default=300.0, help="wall seconds per rung")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for each in args.rungs:
            rows.append(await scaling_fleet.measure(each, Path(directory), limit=args.limit))
            print(scaling_fleet.table(rows[-1:]).splitlines()[-1], flush=True)
    print(scaling_fleet.table(rows))


async def fakegithub(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="fake-github at 100 and 10,000 runners")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 10_000])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    rows = [await scaling_fakegithub.measure(size, args.repeat) for size in args.sizes]
    print(scaling_fakegithub.table(rows))


if __name__ == "__main__":
    modes = {"fleet": fleet, "fakegithub": fakegithub}
    if len(sys.argv) > 1 and sys.argv[1] in modes:
        asyncio.run(modes[sys.argv[1]](sys.argv[2:]))
    else:
        asyncio.run(main())
