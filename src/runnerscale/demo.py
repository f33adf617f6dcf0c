"""``runnerscale demo``: the whole system on embedded defaults, in under a minute.

It starts the GitHub simulator, the daemon (temporary SQLite file, local backend running the
stand-in runner), connects the simulator's webhooks to the daemon, queues a built-in workload
over several label sets (one of which no pool serves), shows live progress, and ends with a
summary. It succeeds only when every job a pool can serve was served and nothing was left
behind: no runner registered in the simulator, no runner process, no live runner in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from runnerscale.config.load import parse_config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.entities import JobStatus
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, World, WorldSettings
from runnerscale.hostlabels import detect_local_host
from runnerscale.model import RunnerState

CONFIG = """\
github:
  api_url: ${DEMO_API_URL}
  token: ${DEMO_TOKEN}
  webhook_secret: ${DEMO_WEBHOOK_SECRET}
targets:
  - org: acme
server:
  listen: 127.0.0.1:8787
state: sqlite:///${DEMO_STATE_DIR}/state.db
poll_interval: 5s
timeouts:
  janitor_interval: 5s
pools:
  - name: linux
    labels: [self-hosted, linux, auto]   # this host's architecture and accelerators
    provider: local
    max_runners: 6
    idle_timeout: 3s
    boot_timeout: 60s
    local:
      command: ["${DEMO_PYTHON}", -m, runnerscale, sim-runner]
      capacity: 6
      stop_grace: 3s
  - name: linux-large
    labels: [self-hosted, linux, large]
    provider: local
    max_runners: 3
    idle_timeout: 3s
    boot_timeout: 60s
    local:
      command: ["${DEMO_PYTHON}", -m, runnerscale, sim-runner]
      capacity: 3
      stop_grace: 3s
"""

HOST_ARCH = detect_local_host().arch or "x64"
#: Jobs for this host's architecture (the `auto` pool), for the large pool, and for another
#: architecture, which no pool here serves: reported with the reason, never provisioned for.
NATIVE = ("self-hosted", "linux", HOST_ARCH)
LARGE = ("self-hosted", "linux", "large")
FOREIGN = ("self-hosted", "linux", "arm64" if HOST_ARCH != "arm64" else "x64")
REPOS = ("acme/web", "acme/api", "acme/docs")
#: Give up waiting after this long (the demo normally ends in about half a minute).
DEADLINE = 150.0


@dataclass(frozen=True)
class Arrival:
    at: float
    job: JobSpec


def workload(seed: int = 7) -> list[Arrival]:
    """A few bursts of jobs for this host, a trickle for the large pool and some jobs for
    another architecture that nobody serves."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    arrivals: list[Arrival] = []
    run_id = 100
    for burst_at, size in ((0.0, 8), (4.0, 6), (9.0, 10)):
        run_id += 1
        repo = rng.choice(REPOS)
        for index in range(size):
            spec = JobSpec(repo, NATIVE, round(rng.uniform(1.5, 4.0), 1), run_id, f"build-{index}")
            arrivals.append(Arrival(burst_at + index * 0.05, spec))
    for index in range(8):
        run_id += 1
        spec = JobSpec(rng.choice(REPOS), LARGE, round(rng.uniform(1.5, 3.5), 1), run_id, "large")
        arrivals.append(Arrival(1.0 + index * 1.5, spec))
    for index in range(4):
        run_id += 1
        spec = JobSpec("acme/ml", FOREIGN, 5.0, run_id, f"cross-{index}")
        arrivals.append(Arrival(2.0 + index * 3.0, spec))
    return sorted(arrivals, key=lambda a: a.at)


@dataclass
class Outcome:
    servable: int = 0
    served: int = 0
    unmatched: int = 0
    #: Why no pool serves them (as the daemon explains it).
    unmatched_reasons: set[str] = field(default_factory=set)
    waits: list[float] = field(default_factory=list)
    created: int = 0
    removed: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.served == self.servable and not any(self.leftovers.values())


class Demo:
    def __init__(self, console: Console, stop: asyncio.Event | None = None) -> None:
        self.console = console
        #: Set on Ctrl-C (or SIGTERM): the workload stops and the demo removes what it made.
        self.stop = stop or asyncio.Event()

    async def run(self) -> Outcome:
        with tempfile.TemporaryDirectory(prefix="runnerscale-demo-") as state_dir:
            token = f"demo-{secrets.token_hex(12)}"
            secret = secrets.token_hex(16)
            options = SimulatorOptions(
                tokens=(token,), world=WorldSettings(runner_offline_after=30.0)
            )
            async with SimulatorServer(options) as simulator:
                env = {
                    "DEMO_API_URL": simulator.url,
                    "DEMO_TOKEN": token,
                    "DEMO_WEBHOOK_SECRET": secret,
                    "DEMO_STATE_DIR": state_dir,
                    "DEMO_PYTHON": sys.executable,
                }
                config = parse_config(CONFIG, source="<demo defaults>", env=env)
                daemon = Daemon.build(config, port=0, controller_id="runnerscale-demo")
                try:
                    await daemon.start()
                    simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", secret)
                    return await self._drive(simulator, daemon, Path(state_dir))
                finally:
                    if self.stop.is_set():
                        self.console.print("interrupted: stopping the demo's runners…")
                    # Whatever happened, the demo's runners end with it (the simulator they
                    # talk to is still up, so they stop at once), then its folder goes.
                    await daemon.stop(remove_runners=True)

    async def _drive(self, simulator: SimulatorServer, daemon: Daemon, state_dir: Path) -> Outcome:
        world = simulator.simulator.world
        arrivals = workload()
        servable_labels: set[tuple[str, ...]] = {NATIVE, LARGE}
        started = time.monotonic()
        pending = list(arrivals)
        outcome = Outcome(servable=sum(1 for a in arrivals if a.job.labels in servable_labels))
        with Live(
            self._table(daemon, world, started), console=self.console, refresh_per_second=4
        ) as live:
            while time.monotonic() - started < DEADLINE and not self.stop.is_set():
                elapsed = time.monotonic() - started
                due = [a for a in pending if a.at <= elapsed]
                if due:
                    world.create_jobs([a.job for a in due])
                    simulator.simulator.notify()
                    pending = [a for a in pending if a.at > elapsed]
                live.update(self._table(daemon, world, started))
                if not pending and await self._settled(daemon, world, servable_labels):
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await self.stop.wait()
            live.update(self._table(daemon, world, started))
        outcome.elapsed = time.monotonic() - started
        if self.stop.is_set():
            return outcome
        outcome.unmatched_reasons = {job.reason for job in daemon.controller.status.unmatched}
        for job in world.jobs.values():
            if tuple(job.labels) in servable_labels:
                if job.status is JobStatus.COMPLETED and job.started_at is not None:
                    outcome.served += 1
                    outcome.waits.append(job.started_at - job.created_at)
            else:
                outcome.unmatched += 1
        runners = daemon.store.runners()
        outcome.created = sum(1 for r in runners if r.state is not RunnerState.FAILED)
        outcome.removed = sum(1 for r in runners if r.state is RunnerState.GONE)
        outcome.leftovers = await self._leftovers(daemon, world)
        return outcome

    async def _settled(self, daemon: Daemon, world: World, servable: set[tuple[str, ...]]) -> bool:
        served = all(
            job.status is JobStatus.COMPLETED
            for job in world.jobs.values()
            if tuple(job.labels) in servable
        )
        return served and not any((await self._leftovers(daemon, world)).values())

    async def _leftovers(self, daemon: Daemon, world: World) -> dict[str, int]:
        instances = 0
        for pool in daemon.controller.pools.values():
            instances += sum(1 for i in await pool.provider.list() if i.running)
        live = [r for r in daemon.store.runners() if r.state.live]
        return {
            "runners registered in GitHub": len(world.runners),
            "runner processes": instances,
            "live runners in the store": len(live),
        }

    def _table(self, daemon: Daemon, world: World, started: float) -> Table:
        table = Table(title=f"runnerscale demo — {time.monotonic() - started:.1f}s")
        for column in ("pool", "queued", "booting", "idle", "busy", "desired"):
            table.add_column(column, justify="right" if column != "pool" else "left")
        for pool in daemon.controller.status.pools:
            table.add_row(
                pool.name,
                str(pool.queued),
                str(pool.booting),
                str(pool.idle),
                str(pool.busy),
                str(pool.desired),
            )
        statuses = [job.status for job in world.jobs.values()]
        table.caption = (
            f"jobs: {statuses.count(JobStatus.QUEUED)} queued, "
            f"{statuses.count(JobStatus.IN_PROGRESS)} running, "
            f"{statuses.count(JobStatus.COMPLETED)} done; "
            f"unmatched: {daemon.controller.status.unmatched_jobs}"
        )
        return table


def summary(outcome: Outcome) -> Table:
    table = Table(title="summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    waits = sorted(outcome.waits)
    p50 = statistics.median(waits) if waits else 0.0
    p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0
    table.add_row("jobs served", f"{outcome.served} of {outcome.servable}")
    table.add_row("queue wait p50 / p95", f"{p50:.1f}s / {p95:.1f}s")
    table.add_row("runners created / removed", f"{outcome.created} / {outcome.removed}")
    table.add_row("jobs no pool can serve", str(outcome.unmatched))
    for reason in sorted(outcome.unmatched_reasons):
        table.add_row("  why", reason)
    for what, count in outcome.leftovers.items():
        table.add_row(f"left behind: {what}", str(count))
    table.add_row("time", f"{outcome.elapsed:.1f}s")
    return table


async def run_demo(console: Console) -> int:
    """Run the demo; 0 when it passed, 1 when not, 128 + the signal's number when stopped by
    Ctrl-C (130) or SIGTERM, after removing every runner and the folder it made."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def interrupt(signum: int) -> None:
        if received:
            console.print("still stopping: removing the demo's runners and its folder…")
        received.append(signum)
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, interrupt, signum)
    try:
        outcome = await Demo(console, stop).run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    if received:
        console.print("[bold yellow]demo interrupted:[/] its runners and its folder are removed")
        return 128 + received[0]
    console.print()
    console.print(summary(outcome))
    if outcome.ok:
        console.print(
            "[bold green]demo passed:[/] every servable job was served, nothing left behind"
        )
        return 0
    console.print("[bold red]demo failed:[/] see the summary above")
    return 1
