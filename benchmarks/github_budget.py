"""The GitHub API budget at organisation scale: 1,000 repositories, 50 of them active.

The workday trace (``../shared/traces/workday.jsonl``) is replayed by the deterministic
simulation (the daemon's controller on a virtual clock, against the in-process simulator,
counting requests as GitHub counts them: a 304 is free) with its jobs spread over 50 active
repositories of organisation ``acme`` (a workflow run stays in one repository), next to 950
quiet ones. Once with webhooks, once with every webhook lost (polling alone). Reported: API
calls charged per hour and per job, the share of a GitHub App installation's ``core`` budget
(5,000 per hour) they take, the JIT configurations charged to ``actions_runner_registration``
instead (10,000 per hour), and all requests (304s included) per hour.

Targets (issue 6): with webhooks, at most 2 calls per job on average and under 20% of the
``core`` budget; without, every job served and under 60% of it.

    .venv/bin/python benchmarks/github_budget.py [--seed 1] [--out benchmarks/github_budget.md]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path

from runnerscale.config import Config, load_config
from runnerscale.github.budget import CORE, REGISTRATION
from runnerscale.simulation.engine import RUNNERSCALE, Engine, Policy
from runnerscale.simulation.trace import TraceJob, read_trace

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
ACTIVE = 50
QUIET = 950
BUDGET = 5000.0
#: ``actions_runner_registration``'s hourly budget (GitHub's published example).
REGISTRATION_BUDGET = 10000.0
MONTH = 30 * 24 * 3600.0
WEBHOOKS_OFF = Policy("webhooks off", webhooks=False)


@dataclasses.dataclass(frozen=True)
class Row:
    policy: str
    jobs: int
    served: int
    hours: float
    charged: int
    #: Of ``charged``, the calls charged to ``core`` (the rest: runner registrations).
    core: int
    requests: int
    seconds: float
    #: Charged first reads of quiet repositories' run lists (once each, then free 304s).
    first_reads: int

    @property
    def per_hour(self) -> float:
        return self.charged / self.hours

    @property
    def per_job(self) -> float:
        return self.charged / self.jobs

    @property
    def steady_per_job(self) -> float:
        return (self.charged - self.first_reads) / self.jobs

    @property
    def share(self) -> float:
        """The share of ``core``'s hourly budget: what polling spends, and runs out of."""
        return self.core / self.hours / BUDGET

    @property
    def registration_share(self) -> float:
        return (self.charged - self.core) / self.hours / REGISTRATION_BUDGET


def spread(trace: list[TraceJob]) -> list[TraceJob]:
    """The trace's jobs over 50 active repositories; a run's jobs stay together."""
    return [
        dataclasses.replace(job, repo=f"acme/active-{(job.run_id or 0) % ACTIVE:02d}")
        for job in trace
    ]


async def run(config: Config, trace: list[TraceJob], policy: Policy, seed: int) -> Row:
    started = time.perf_counter()
    engine = Engine(config, trace, seed=seed, policy=policy)
    for index in range(QUIET):
        # Quiet: nothing runs there, and nobody pushed to them in the last month.
        engine.world.ensure_repo(f"acme/quiet-{index:03d}", pushed_at=engine.world.now - MONTH)
    quiet_ids = {repo.id for repo in engine.world.repos.values() if repo.name.startswith("quiet-")}
    result = await engine.run()
    figures = result.figures
    first_reads = sum(
        1
        for key in engine.github._last
        if isinstance(key, tuple) and key[0] in ("runs", "probe") and key[1] in quiet_ids
    )
    hours = max(job.at for job in trace) / 3600
    return Row(
        policy=policy.name,
        jobs=figures.jobs,
        served=figures.served,
        hours=hours,
        charged=sum(engine.github.charged.values()),
        core=engine.github.charged_by_resource[CORE],
        requests=sum(engine.github.requests.values()),
        seconds=time.perf_counter() - started,
        first_reads=first_reads,
    )


def report(rows: list[Row], seed: int) -> str:
    with_hooks, without = rows
    targets = [
        (
            "with webhooks: at most 2 API calls per job",
            with_hooks.per_job <= 2.0,
            f"{with_hooks.per_job:.2f}",
        ),
        (
            "with webhooks: under 20% of core's hourly budget",
            with_hooks.share < 0.20,
            f"{with_hooks.share:.1%}",
        ),
        (
            "webhooks off: every job served",
            without.served == without.jobs,
            f"{without.served} of {without.jobs}",
        ),
        (
            "webhooks off: under 60% of core's hourly budget",
            without.share < 0.60,
            f"{without.share:.1%}",
        ),
    ]
    lines = [
        "# GitHub API budget: an organisation of 1,000 repositories, 50 active",
        "",
        f"Made by `.venv/bin/python benchmarks/github_budget.py --seed {seed}`: the workday "
        f"trace ({with_hooks.jobs} jobs over {with_hooks.hours:.1f} h) spread over {ACTIVE} "
        f"active repositories next to {QUIET} quiet ones, replayed by the deterministic "
        'simulation. "Charged" calls are what GitHub counts against the budget (304s are '
        'free); "requests" counts every request. The JIT configurations are charged to '
        f"`{REGISTRATION}` (10,000/h), everything else to `{CORE}` (5,000/h), as the "
        "simulator and the daemon's budget assume (GitHub does not document it).",
        "",
        "| policy | jobs | served | charged calls | calls/hour | calls/job | of which first "
        "reads of quiet repos | calls/job without them | share of core's 5,000/h "
        "| JIT configs (share of 10,000/h) | requests/hour (304s included) | simulated in |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.policy} | {row.jobs} | {row.served} | {row.charged} | {row.per_hour:.0f} "
            f"| {row.per_job:.2f} | {row.first_reads} | {row.steady_per_job:.2f} "
            f"| {row.share:.1%} | {row.charged - row.core} ({row.registration_share:.1%}) "
            f"| {row.requests / row.hours:.0f} | {row.seconds:.0f} s |"
        )
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {value} |" for name, ok, value in targets]
    lines += [
        "",
        "How: while webhooks arrive, a GitHub poll (every `webhook_poll_interval`, 5 minutes) "
        "leaves the repositories with active jobs to them and reads only a repository pushed "
        "to after the newest job heard of there (its webhooks were lost), the jobs of each "
        "run heard of, once, a minute after its newest job heard of (one request per run: a "
        "sibling's delivery may have been lost; about 0.3 calls per job here), plus a slow "
        "sweep of the others, one request each (their newest runs). Repositories without a push "
        "for a week (the 950 quiet ones, pushed a month ago) are left to webhooks; they are "
        "read only in the first seconds, before the first webhook arrives (the column above). "
        "A job the poll did not show is asked for only when it looks stuck: queued while a "
        "runner of its pool idles, or running where no runner of ours can tell its end. "
        "Without webhooks, every poll reads the repositories with active jobs in full, the "
        "ones pushed to since their last read, and a slice of the rest (the quiet ones three "
        "times more slowly); re-reads that did not change are free 304s. Before this "
        "schedule (every repository every poll), requests per hour were about 25,000 with "
        "webhooks and 494,000 without; before polls trusted webhooks, 8.09 calls per job.",
    ]
    return "\n".join(lines) + "\n"


async def measure(seed: int) -> list[Row]:
    config = load_config(
        TRACES / "reference.yaml", env={"GITHUB_TOKEN": "unused", "HOME": str(ROOT)}
    )
    trace = spread(read_trace(TRACES / "workday.jsonl"))
    rows = []
    for policy in (RUNNERSCALE, WEBHOOKS_OFF):
        row = await run(config, trace, policy, seed)
        print(f"{policy.name}: done in {row.seconds:.0f}s", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "github_budget.md")
    args = parser.parse_args()
    text = report(asyncio.run(measure(args.seed)), args.seed)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
