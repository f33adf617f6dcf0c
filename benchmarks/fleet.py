"""The fleet benchmark: one reconcile tick at fleet size, and the creation rate of a ramp.

Why: issue 18 asks for a tick under 100 ms with 10,000 runners, 10,000 queued jobs and a week
of history in the store (SQLite and Postgres), and for at least 600 creations a minute into a
backend that takes no time, with decisions ticking all along. This measures both, on the
daemon's own wiring (:func:`runnerscale.wiring.build_controller`) over the simulation's
in-process GitHub and a zero-time backend (:class:`ZeroTimeProvider`).

* **tick**: the store holds ``rung`` busy runners (each on an in-progress job), ``rung`` queued
  jobs, and a week of finished history: ``history_per_day * rung`` completed jobs and as many
  gone runners a day. The pool's cap is the rung, so the decision is steady (it creates
  nothing): a tick is the cost of deciding, not of acting. ``Controller.reconcile_once`` is
  timed (wall) ``ticks`` times; median and p95.
* **ramp**: the daemon's loops (``Controller.start``) on the wall clock, ``ramp`` jobs queued
  in the simulated GitHub, a cap of ``ramp``: runners created per minute until every one is
  created, and the largest gap between two reconcile ticks meanwhile. ``--github http`` puts
  the daemon's own client (:class:`~runnerscale.github.client.GitHubClient`, with its
  :class:`~runnerscale.github.budget.ApiBudget`) in front of the fake GitHub's HTTP app (in
  process, an ASGI transport) instead of the in-process ``SimulatedGitHub``, which has no
  budget of its own; ``--registration-limit N --registration-window S`` gives the simulated
  GitHub a registration budget of ``N`` per ``S`` seconds (default: GitHub's 10,000 an hour),
  so that the ramp is limited by it rather than by the loop. ``--create-timeout S`` sets the
  janitor's ``timeouts.create`` (swept every ``S / 2``): a window that outlasts it shows
  whether the runners waiting for the budget are given up on (cleanup ``create_timeout``).

    .venv/bin/python benchmarks/fleet.py [--rungs 100,1000,10000] [--databases sqlite,postgres]
        [--ticks 7] [--history-per-day 10] [--ramp 1000] [--create-concurrency N]
        [--github in-process|http] [--registration-limit N] [--registration-window S]
        [--create-timeout S]

Postgres is Debian's server started on a temporary directory and port (as the tests'
``postgres_url`` fixture does, with durability off). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.postgres starts the Postgres server

import httpx
from sqlalchemy import insert
from tests.postgres import PostgresServer

from runnerscale.clock import SystemClock, VirtualClock
from runnerscale.config import Config, parse_config
from runnerscale.controller.actions import Events
from runnerscale.controller.janitor import JanitorSettings
from runnerscale.controller.loops import Controller
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.faults import FaultPlan, Faults, RateLimitFaults
from runnerscale.fakegithub.ratelimit import RUNNER_REGISTRATION, WINDOW_SECONDS, RateLimits
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec, World, WorldSettings
from runnerscale.github.client import GitHubClient
from runnerscale.heap import HeapKeeper
from runnerscale.model import Instance, InstanceSpec, JobState, Runner, RunnerState
from runnerscale.protocols import Clock, GitHubAPI
from runnerscale.simulation.github import SimulatedGitHub
from runnerscale.store import SqlStore, open_store
from runnerscale.store.tables import JobRow, RunnerRow
from runnerscale.wiring import build_controller

POOL = "x64"
LABELS = ["self-hosted", "linux", "x64"]
REPO = "acme/app"
TARGET = "org:acme"
GITHUB_URL = "http://github.benchmark.invalid"
TOKEN = "benchmark-token"
WEEK = 7 * 24 * 3600.0
#: Rows inserted per statement while filling the store.
BATCH = 5_000
#: ``timeouts.create`` when ``--create-timeout`` is not given.
DEFAULT_CREATE_TIMEOUT = JanitorSettings().create_timeout


def config(
    cap: int, create_concurrency: int | None = None, create_timeout: float | None = None
) -> Config:
    """One pool over the organisation ``acme``, capped at ``cap``; with ``create_timeout``,
    the janitor's ``timeouts.create`` (and a sweep every half of it)."""
    extra = "" if create_concurrency is None else f"\n    create_concurrency: {create_concurrency}"
    timeouts = ""
    if create_timeout is not None:
        sweep = create_timeout / 2
        timeouts = f"timeouts:\n  create: {create_timeout:g}s\n  janitor_interval: {sweep:g}s\n"
    return parse_config(
        f"""{timeouts}
github:
  api_url: http://127.0.0.1:9
  token: unused
targets:
  - org: acme
pools:
  - name: {POOL}
    labels: [{", ".join(LABELS)}]
    provider: local
    max_runners: {cap}
    min_idle: 0{extra}
    local:
      command: [runnerscale, sim-runner, --jitconfig, "{{jitconfig}}"]
"""
    )


class ZeroTimeProvider:
    """A backend whose instances exist the moment they are asked for (nothing runs)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.instances: dict[str, Instance] = {}
        #: When each creation returned (the clock's time), in order.
        self.created: list[float] = []

    async def create(self, spec: InstanceSpec) -> Instance:
        instance = Instance(
            id=spec.runner_name,
            runner_name=spec.runner_name,
            pool=POOL,
            running=True,
            created_at=self.clock.now(),
        )
        self.instances[instance.id] = instance
        self.created.append(self.clock.now())
        return instance

    async def delete(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)

    async def get(self, instance_id: str) -> Instance | None:
        return self.instances.get(instance_id)

    async def list(self) -> list[Instance]:
        return list(self.instances.values())

    async def close(self) -> None:
        return None


def in_process_github(clock: Clock) -> SimulatedGitHub:
    world = World(clock, WorldSettings(server_url=GITHUB_URL))
    world.ensure_owner("acme")
    world.ensure_repo(REPO)
    return SimulatedGitHub(world, Faults(), RateLimits())


@dataclass(frozen=True)
class Quota:
    """The simulated GitHub's registration budget: ``limit`` per ``window`` seconds."""

    limit: int
    window: float

    @property
    def per_minute(self) -> float:
        return self.limit / self.window * 60.0

    def plan(self) -> FaultPlan:
        return FaultPlan(
            rate_limit=RateLimitFaults(
                limits={RUNNER_REGISTRATION: self.limit},
                windows={RUNNER_REGISTRATION: self.window},
            )
        )

    def __str__(self) -> str:
        return f"{self.limit:,} / {self.window:g} s"


@dataclass
class SimulatedGitHubs:
    """The GitHub the controller talks to, and the world behind it."""

    api: GitHubAPI
    world: World


def simulated_github(clock: Clock, transport: str, quota: Quota | None) -> SimulatedGitHubs:
    """``in-process``: ``SimulatedGitHub`` (no budget of its own: a refusal fails the
    runner); ``http``: the daemon's ``GitHubClient`` over the fake GitHub's app."""
    plan = quota.plan() if quota is not None else None
    if transport == "in-process":
        direct = in_process_github(clock)
        if plan is not None:
            direct.ledger.put_in_force(plan)
        return SimulatedGitHubs(direct, direct.world)
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), clock, GITHUB_URL)
    simulator.world.ensure_owner("acme")
    simulator.world.ensure_repo(REPO)
    if plan is not None:
        simulator.set_faults(plan)
    client = GitHubClient(
        GITHUB_URL,
        TOKEN,
        transport=httpx.ASGITransport(app=create_app(simulator)),
        clock=clock.now,
    )
    return SimulatedGitHubs(client, simulator.world)


def controller(
    store: SqlStore,
    clock: Clock,
    cap: int,
    events: Events | None = None,
    create_concurrency: int | None = None,
    *,
    github: GitHubAPI | None = None,
    create_timeout: float | None = None,
) -> tuple[Controller, ZeroTimeProvider, GitHubAPI]:
    provider = ZeroTimeProvider(clock)
    github = github or in_process_github(clock)
    built = build_controller(
        config(cap, create_concurrency, create_timeout),
        store=store,
        github=github,
        clock=clock,
        providers={POOL: provider},
        capacity=lambda pool: None,
        events=events,
    )
    # A tick at least every second, so a gap between two ticks shows a blocked loop.
    built.settings.reconcile_interval = 1.0
    return built, provider, github


# ---------------------------------------------------------------------- filling the store


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _job(job_id: int, state: JobState, at: float, **more: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": job_id,
        "repo": REPO,
        "labels": LABELS,
        "state": state.value,
        "created_at": at,
        "run_id": job_id,
        "name": "build",
        "started_at": None,
        "completed_at": None,
        "runner_name": None,
        "conclusion": None,
        "observed_at": at,
        "pool": POOL,
    }
    return values | more


def _runner(name: str, state: RunnerState, at: float, **more: Any) -> dict[str, Any]:
    runner = Runner(name, POOL, TARGET, state, at, at, instance_id=name, labels=tuple(LABELS))
    values = asdict(runner) | {"state": state.value, "labels": LABELS}
    return values | more


def fill(store: SqlStore, rung: int, history_per_day: int, now: float) -> None:
    """``rung`` busy runners on in-progress jobs, ``rung`` queued jobs, and a week of
    history (``history_per_day * rung`` completed jobs and gone runners a day)."""
    history = 7 * history_per_day * rung
    step = WEEK / max(history, 1)

    def jobs() -> Iterator[dict[str, Any]]:
        for i in range(history):
            at = now - WEEK + i * step
            yield _job(
                i + 1,
                JobState.COMPLETED,
                at,
                started_at=at + 1,
                completed_at=at + 60,
                runner_name=f"rs-x64-h{i}",
                conclusion="success",
            )
        for i in range(rung):
            job_id = history + i + 1
            yield _job(
                job_id,
                JobState.IN_PROGRESS,
                now - 60,
                started_at=now - 30,
                runner_name=f"rs-x64-b{i}",
                observed_at=now,
            )
        for i in range(rung):
            yield _job(history + rung + i + 1, JobState.QUEUED, now - 10, observed_at=now)

    def runners() -> Iterator[dict[str, Any]]:
        for i in range(history):
            at = now - WEEK + i * step
            yield _runner(f"rs-x64-h{i}", RunnerState.GONE, at, github_id=i + 1)
        for i in range(rung):
            yield _runner(
                f"rs-x64-b{i}",
                RunnerState.BUSY,
                now - 120,
                github_id=history + i + 1,
                job_id=history + i + 1,
                state_since=now - 30,
            )

    with store.engine.begin() as connection:
        for batch in _batches(jobs()):
            connection.execute(insert(JobRow), batch)
        for batch in _batches(runners()):
            connection.execute(insert(RunnerRow), batch)


# ---------------------------------------------------------------------- the measurements


@dataclass
class TickResult:
    database: str
    rung: int
    history: int
    ticks: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ticks)

    @property
    def p95(self) -> float:
        ordered = sorted(self.ticks)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure_ticks(
    store: SqlStore,
    database: str,
    rung: int,
    history_per_day: int,
    ticks: int,
    *,
    settle_heap: bool = True,
) -> TickResult:
    """Steady ticks; with ``settle_heap``, once the heap is settled as the daemon settles it
    after its start (:class:`~runnerscale.heap.HeapKeeper`)."""
    clock = VirtualClock()
    fill(store, rung, history_per_day, clock.now())
    built, provider, _ = controller(store, clock, cap=rung)
    result = TickResult(database, rung, 7 * history_per_day * rung)
    await built.reconcile_once()  # the first writes each job's pool: not a steady tick
    keeper = HeapKeeper()
    if settle_heap:
        keeper.settle()
    for _ in range(ticks):
        began = time.perf_counter()
        await built.reconcile_once()
        result.ticks.append(time.perf_counter() - began)
    await keeper.stop()  # everything given back to the collector
    assert not provider.created, "the steady tick created runners"
    return result


@dataclass
class RampResult:
    database: str
    runners: int
    seconds: float
    per_minute: float
    ticks: int
    largest_gap: float
    longest_tick: float
    create_concurrency: int | None
    #: Creations a minute from the first creation to the last (the loop's own rate).
    steady_per_minute: float
    #: ``in-process`` or ``http`` (see the module docstring).
    github: str = "in-process"
    quota: Quota | None = None
    #: Poll cycles while the ramp lasted.
    polls: int = 0
    #: Creations that failed (a registration GitHub refused, for one).
    failed: int = 0
    #: Registrations that waited for the budget's reset (the client's own count).
    held: int = 0
    #: The janitor's ``timeouts.create`` (None: its default, 120 s).
    create_timeout: float | None = None
    #: Runners the janitor gave up on (cleanup ``create_timeout``).
    given_up: int = 0


async def measure_ramp(
    store: SqlStore,
    database: str,
    runners: int,
    create_concurrency: int | None,
    *,
    give_up_after: float,
    progress: Callable[[str], None],
    github: str = "in-process",
    quota: Quota | None = None,
    create_timeout: float | None = None,
) -> RampResult:
    """The daemon's loops on the wall clock, ``runners`` jobs queued at once."""
    clock = SystemClock()
    tick_times: list[float] = []
    tick_lengths: list[float] = []
    polls: list[float] = []
    failed: list[str] = []
    given_up: list[str] = []

    def ticked(loop: str, seconds: float) -> None:
        if loop == "reconcile":
            tick_times.append(time.monotonic())
            tick_lengths.append(seconds)
        elif loop == "poll":
            polls.append(seconds)

    def errored(pool: str, kind: str) -> None:
        if kind == "create":
            failed.append(pool)

    def cleaned(pool: str, kind: str) -> None:
        if kind == "create_timeout":
            given_up.append(pool)

    events = Events(tick=ticked, error=errored, cleaned=cleaned)
    simulated = simulated_github(clock, github, quota)
    built, provider, _ = controller(
        store,
        clock,
        runners,
        events,
        create_concurrency,
        github=simulated.api,
        create_timeout=create_timeout,
    )
    simulated.world.create_jobs(JobSpec(REPO, tuple(LABELS), 3600.0) for _ in range(runners))
    began = time.monotonic()
    await built.start()
    try:
        while len(provider.created) < runners:
            if time.monotonic() - began > give_up_after:
                break
            await asyncio.sleep(0.5)
            progress(f"  ramp {database}: {len(provider.created)}/{runners} created")
    finally:
        await built.stop()
    seconds = time.monotonic() - began
    # Between two ticks' ends (the start-up's first poll and recovery come before the first).
    gaps = [b - a for a, b in itertools.pairwise(tick_times)]
    created = len(provider.created)
    held = 0
    if isinstance(simulated.api, GitHubClient):
        budgets = simulated.api.budget.by_credential.values()
        held = sum(budget.held[RUNNER_REGISTRATION] for budget in budgets)
    return RampResult(
        database,
        created,
        seconds,
        created / seconds * 60.0,
        len(tick_times),
        max(gaps, default=seconds),
        max(tick_lengths, default=0.0),
        create_concurrency,
        (created - 1) / (provider.created[-1] - provider.created[0]) * 60.0 if created > 1 else 0.0,
        github,
        quota,
        len(polls),
        len(failed),
        held,
        create_timeout,
        len(given_up),
    )


# ---------------------------------------------------------------------- databases


@contextmanager
def databases(names: Sequence[str]) -> Iterator[Callable[[str], SqlStore]]:
    """A factory of fresh stores by database name (``sqlite``, ``postgres``)."""
    server = None
    opened: list[SqlStore] = []
    with tempfile.TemporaryDirectory(prefix="runnerscale-fleet-") as directory:
        count = 0

        def fresh(name: str) -> SqlStore:
            nonlocal server, count
            count += 1
            if name == "sqlite":
                store = open_store(f"sqlite:///{directory}/fleet{count}.db")
            else:
                if server is None:
                    server = PostgresServer.start()
                store = open_store(server.url(server.create_database()))
            opened.append(store)
            return store

        try:
            yield fresh
        finally:
            for store in opened:
                store.close()
            if server is not None:
                server.stop()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tick_table(results: Sequence[TickResult]) -> str:
    lines = [
        "| database | runners | queued | finished jobs kept | tick median | tick p95 | ticks |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.database} | {r.rung:,} | {r.rung:,} | {r.history:,} | "
            f"{r.median * 1000:.0f} ms | {r.p95 * 1000:.0f} ms | {len(r.ticks)} |"
        )
    return "\n".join(lines)


def ramp_table(results: Sequence[RampResult]) -> str:
    lines = [
        "| github | registration budget | database | create_concurrency | runners created "
        "| seconds | per minute | per minute, first to last creation | creations failed "
        "| registrations held for the reset | reconcile ticks | polls "
        "| largest gap between ticks | longest tick | create timeout "
        "| given up (create timeout) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        concurrency = "default" if r.create_concurrency is None else str(r.create_concurrency)
        timeout = DEFAULT_CREATE_TIMEOUT if r.create_timeout is None else r.create_timeout
        quota = (
            "GitHub's (10,000 / h)"
            if r.quota is None
            else f"{r.quota} ({r.quota.per_minute:,.0f}/min)"
        )
        lines.append(
            f"| {r.github} | {quota} | {r.database} | {concurrency} | {r.runners:,} | "
            f"{r.seconds:.1f} | {r.per_minute:,.0f} | {r.steady_per_minute:,.0f} | {r.failed} | "
            f"{r.held} | {r.ticks} | {r.polls} | {r.largest_gap:.2f} s | "
            f"{r.longest_tick:.2f} s | {timeout:g} s | {r.given_up} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> tuple[list[TickResult], list[RampResult]]:
    names = args.databases.split(",")
    ticks: list[TickResult] = []
    ramps: list[RampResult] = []
    with databases(names) as fresh:
        for database in names:
            for rung in (int(r) for r in args.rungs.split(",") if r):
                progress(f"tick {database} rung {rung:,}: filling")
                result = await measure_ticks(
                    fresh(database),
                    database,
                    rung,
                    args.history_per_day,
                    args.ticks,
                    settle_heap=not args.no_heap_settling,
                )
                progress(f"tick {database} rung {rung:,}: median {result.median * 1000:.0f} ms")
                ticks.append(result)
            if args.ramp:
                ramps.append(
                    await measure_ramp(
                        fresh(database),
                        database,
                        args.ramp,
                        args.create_concurrency,
                        give_up_after=args.ramp_timeout,
                        progress=progress,
                        github=args.github,
                        quota=quota(args),
                        create_timeout=args.create_timeout,
                    )
                )
    return ticks, ramps


def quota(args: argparse.Namespace) -> Quota | None:
    """The registration budget asked for; None: GitHub's (10,000 an hour)."""
    if args.registration_limit is None:
        return None
    return Quota(args.registration_limit, args.registration_window)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", default="100,1000,10000")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--ticks", type=int, default=7)
    parser.add_argument("--history-per-day", type=int, default=10)
    parser.add_argument(
        "--no-heap-settling",
        action="store_true",
        help="tick without settling the heap first (the daemon settles it: runnerscale.heap)",
    )
    parser.add_argument("--ramp", type=int, default=1000, help="runners to ramp to (0: no ramp)")
    parser.add_argument("--ramp-timeout", type=float, default=300.0)
    parser.add_argument("--create-concurrency", type=int, default=None)
    parser.add_argument(
        "--github",
        choices=("in-process", "http"),
        default="in-process",
        help="the in-process SimulatedGitHub, or the daemon's client over the fake's HTTP app",
    )
    parser.add_argument(
        "--registration-limit",
        type=int,
        default=None,
        help="registrations the simulated GitHub allows per window (default: GitHub's 10,000)",
    )
    parser.add_argument(
        "--registration-window",
        type=float,
        default=WINDOW_SECONDS,
        help="seconds of the registration budget's window (default: an hour)",
    )
    parser.add_argument(
        "--create-timeout",
        type=float,
        default=None,
        help="the janitor's timeouts.create in seconds, swept every half of it (default: 2m, "
        "every 30 s): shorter than the registration window, it shows whether runners waiting "
        "for the budget are given up on",
    )
    args = parser.parse_args(argv)
    ticks, ramps = asyncio.run(run(args))
    if ticks:
        print(tick_table(ticks))
    if ramps:
        print()
        print(ramp_table(ramps))


if __name__ == "__main__":
    main()
