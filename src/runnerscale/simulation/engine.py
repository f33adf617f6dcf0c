"""The deterministic simulation: the real controller, a trace, a virtual clock, no sockets.

A discrete-event driver replaces the daemon's background loops: it keeps one queue of timed
events (trace arrivals, webhook deliveries, polls, reconciles, janitor sweeps, runners
finishing their boot or their job, the simulated GitHub's own timeouts, samples for the
report) and runs them one at a time in time order, moving the virtual clock to each. Every
step is the daemon's own code (``Controller.observe``, ``reconcile_once``, ``poll_once``,
``Janitor.sweep``) on a real store, against the in-process simulator and a simulated backend.
Nothing runs concurrently and every random draw comes from the seed, so the same trace, config
and seed give the same result, byte for byte.

Reconciles coalesce as the daemon's do (``Controller.coalescing_wait``: a kicked reconcile
waits until nine times the previous one's length has passed since it began, at most a fifth of
``reconcile_interval``). A simulated reconcile takes no virtual time, so the rule is applied to
a modelled length (:mod:`runnerscale.simulation.reconcile_cost`: proportional to the rows it
reads, calibrated on the daemon's measured ticks): a small world waits a fraction of a
millisecond, a fleet of 10,000 runners about half a second, as the daemon does.

At fleet scale a run is minutes of CPU with tens of thousands of jobs alive (the world's, the
store's); the heap is settled between steps as the daemon settles its own
(:mod:`runnerscale.heap`: a collection, then what survived frozen out of the collector's
reach), on the wall clock, and everything is given back when the run ends. The collector never
changes a result, only the time it takes.

The ``poll-60`` reference policy is the same machinery with webhooks off and a poll every
60 seconds, deciding only after each poll: the approach of simple polling autoscalers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from runnerscale.clock import VirtualClock
from runnerscale.config.schema import Config, PoolConfig
from runnerscale.controller.loops import DAEMON_COALESCE
from runnerscale.fakegithub.accounting import Api
from runnerscale.fakegithub.entities import Job
from runnerscale.fakegithub.faults import FaultPlan, Faults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.scalesets import ScaleSets
from runnerscale.fakegithub.webhooks import Delivery, WebhookHub
from runnerscale.fakegithub.world import JobSpec, World, WorldSettings
from runnerscale.github.webhooks import Verdict, WebhookIntake, WebhookPayloadError
from runnerscale.heap import HeapKeeper
from runnerscale.model import RERUN, match_pool, normalize_labels
from runnerscale.protocols import GitHubError, ProviderError
from runnerscale.scaleset_api import ScaleSetAPI
from runnerscale.simulation.backend import SimulatedBackend
from runnerscale.simulation.github import SimulatedGitHub
from runnerscale.simulation.occupancy import Buckets, Span, bucketed
from runnerscale.simulation.pools import backend_models
from runnerscale.simulation.reconcile_cost import reconcile_length, rows_read
from runnerscale.simulation.results import (
    Figures,
    MarketFigures,
    PolicyResult,
    PoolFigures,
    RunnerSeconds,
    TimelinePoint,
)
from runnerscale.simulation.scalesets import SimulatedScaleSetAPI
from runnerscale.simulation.trace import TraceJob
from runnerscale.store.memory import MemoryStore
from runnerscale.wiring import build_controller, scale_set_clients

#: The virtual clock starts here by default (2026-01-01T00:00:00Z, a Thursday); reports count
#: from the start. A trace of working hours meets its pools' warm windows (cron times of day)
#: only when started at the time of day it was taken (``runnerscale simulate --start``).
EPOCH = 1_767_225_600.0
#: GitHub delivers a webhook about a second after the event.
WEBHOOK_DELAY = 1.0
#: How long before the replay starts the trace's repositories were last pushed to.
PRE_EXISTING_PUSH_AGE = 3600.0
#: How often the timeline is sampled for the report.
SAMPLE_EVERY = 60.0
#: After the last job could have ended, how long the simulation lets the system drain.
DRAIN = 3600.0
#: Rounds of the event loop after a step, for the scale-set listeners (tasks of their own) to
#: act on it until each waits again: a listener woken runs to its next wait in one round;
#: the spare rounds cover a wait that resumes another.
SETTLE_ROUNDS = 3
#: Wall-clock seconds before the heap is first settled (a small run never is), then between two
#: settlings (what became long-lived since: the jobs that arrived, the runners made).
HEAP_FIRST_SETTLE = 2.0
HEAP_SETTLE_EVERY = 10.0

Step = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True)
class Policy:
    name: str
    webhooks: bool = True
    poll_interval: float | None = None  # None: the config's
    periodic_reconcile: bool = True


RUNNERSCALE = Policy("runnerscale")
POLL_60 = Policy("poll-60", webhooks=False, poll_interval=60.0, periodic_reconcile=False)


def no_host_cap(pool: PoolConfig) -> int | None:
    """A simulated backend has no host of its own: a pool's cap is its ``max_runners``."""
    return None


def unique_suffixes(draws: random.Random) -> Callable[[], str]:
    """Seeded runner-name suffixes of 32 random bits, never one twice: a run of tens of
    thousands of runners would otherwise repeat one (the birthday bound: about one chance in
    five by 40,000). The daemon draws 64 bits (``actions.SUFFIX_BYTES``); 32 stay here so a
    seeded run names its runners, and draws its numbers, as it always did."""
    drawn: set[str] = set()

    def suffix() -> str:
        while (value := f"{draws.getrandbits(32):08x}") in drawn:
            pass
        drawn.add(value)
        return value

    return suffix


class Engine:
    def __init__(
        self,
        config: Config,
        trace: Sequence[TraceJob],
        *,
        seed: int = 0,
        policy: Policy = RUNNERSCALE,
        faults: FaultPlan | None = None,
        progress: Callable[[float], None] | None = None,
        start: float = EPOCH,
        heap: HeapKeeper | None = None,
    ) -> None:
        """``heap``: what settles the heap between steps (None: every
        :data:`HEAP_SETTLE_EVERY` seconds of the wall clock, the first after
        :data:`HEAP_FIRST_SETTLE`)."""
        self.config = config
        self.trace = list(trace)
        self.policy = policy
        self.progress = progress
        self.heap = heap or HeapKeeper(
            settle_every=HEAP_SETTLE_EVERY, first_after=HEAP_FIRST_SETTLE
        )
        #: When the trace's ``at: 0`` is, on the virtual clock.
        self.start = start
        self.clock = VirtualClock(start)
        self._queue: list[tuple[float, int, Step]] = []
        self._sequence = itertools.count()
        rng = random.Random(seed)  # noqa: S311 - reproducible simulation, not security
        self.world = World(
            self.clock,
            WorldSettings(
                server_url="http://github.simulation.invalid",
                runner_offline_after=math.inf,
                lost_runner_timeout=math.inf,
                seed=seed,
            ),
        )
        self.github = SimulatedGitHub(self.world, Faults(), RateLimits())
        # Shared with the webhook hub below: one seeded generator draws every fault.
        self.faults = self.github.faults
        self.github.ledger.put_in_force(faults or FaultPlan())
        self.hub = WebhookHub(
            self.world,
            self.faults,
            self.clock,
            web_url="https://github.simulation.invalid",
            api_url="https://api.github.simulation.invalid",
        )
        if policy.webhooks:
            self.hub.add_hook("http://runnerscale.simulation.invalid/webhook")
        self.store = MemoryStore()
        self.backends: dict[str, SimulatedBackend] = {}
        for name, model in backend_models(config.pools).items():
            self.backends[name] = SimulatedBackend(
                model,
                self.world,
                self.schedule,
                random.Random(rng.random()),  # noqa: S311
            )
        names = unique_suffixes(random.Random(rng.random()))  # noqa: S311
        #: Long polls (and session waits) of the scale-set listeners, woken by any change.
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        scale_sets = self._scale_set_apis(config)
        # The daemon's own wiring; what differs is a parameter: the virtual clock, the
        # in-process GitHub, the simulated backends (which have no host of their own to cap
        # a pool: ``max_runners`` is the cap), the policy's poll, seeded runner names.
        self.controller = build_controller(
            config,
            store=self.store,
            github=self.github,
            clock=self.clock,
            providers=self.backends,
            capacity=no_host_cap,
            poll_interval=policy.poll_interval,
            runner_suffix=names,
            scale_sets=scale_sets,
            owner="runnerscale-simulation",
        )
        # The daemon's coalescing of kicked reconciles, on the modelled lengths (_reconcile_soon).
        self.controller.settings.reconcile_coalesce = DAEMON_COALESCE
        self._listener_tasks: list[asyncio.Task[None]] = []
        # The trace's repositories exist before the replay starts, last pushed to a while
        # before it (within a day, so the first poll still probes them): a push at the very
        # instant of the first poll would make every first read ambiguous to the second.
        for repo in sorted({job.repo for job in self.trace}):
            self.world.ensure_repo(repo, pushed_at=self.world.now - PRE_EXISTING_PUSH_AGE)
        for target in config.to_targets():
            if target.kind == "org":
                self.world.ensure_owner(target.name)
            elif target.kind == "repo":
                self.world.ensure_repo(target.name)
        self.world.add_listener(self._on_job_event)
        self.intake = WebhookIntake(
            self.store, self.controller.covers, self.clock, fresh=self.controller.fresh
        )
        self._servable = {
            index
            for index, job in enumerate(self.trace)
            if any(normalize_labels(job.labels) <= spec.labels for spec in config.pool_specs())
        }
        self._open_jobs = 0
        self._arrived = 0
        self._reconcile_at: float | None = None
        #: When the last reconcile began, and its modelled length (None: none yet).
        self._last_reconcile: tuple[float, float] | None = None
        #: How many reconciles ran (the kicks a coalescing wait gathered count once).
        self.reconciles = 0
        self._tick_at: float | None = None
        #: Sends scheduled and not yet done, per delivery (see :meth:`_sent`).
        self._sends: dict[Delivery, int] = {}
        self._timeline: list[TimelinePoint] = []
        last_end = max((job.at + job.duration for job in self.trace), default=0.0)
        self.horizon = self.start + last_end + DRAIN
        self._stop_requested = False
        self.stopped = False  # the run ended at request_stop(), before its end

    def request_stop(self) -> None:
        """End the run after the step under way (safe from a signal handler: it only sets
        a flag the loop reads between steps, so no exception lands in foreign code such as
        a garbage collector callback)."""
        self._stop_requested = True

    def _scale_set_apis(self, config: Config) -> dict[str, ScaleSetAPI]:
        """The in-process Actions service for the scale-set pools (none: no scale sets in
        the world), one client per target a scale set lives at, as the daemon has."""
        if all(pool.scale_set is None for pool in config.pools):
            return {}  # no service: it would draw from the world's seeded secrets
        service = ScaleSets(self.world)
        return scale_set_clients(
            config,
            lambda target: SimulatedScaleSetAPI(service, self.github, target, self._wait),
        )

    async def _wait(self, until: float) -> None:
        """A listener's wait: until the next step changes anything, or ``until``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((until, future))
        await future

    def _listeners_due(self) -> float | None:
        """When a listener acts next of itself: a back-off ends, or a long poll's hold."""
        times = [until for until, future in self._waiters if not future.done()]
        wakeup = self.clock.next_wakeup()
        if wakeup is not None:
            times.append(wakeup)
        return min(times, default=None)

    async def _settle(self) -> None:
        """Wake the listeners' waits and let them act on what the step changed; a message
        that moved a pool's demand or its jobs is reconciled, as a webhook is."""
        if not self._listener_tasks:
            return
        before = self._listener_marks()
        waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_result(None)
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
        if self._listener_marks() != before:
            self._reconcile_soon()

    def _listener_marks(self) -> list[tuple[int, int]]:
        return [
            (listener.state.last_message_id, listener.state.assigned)
            for listener in self.controller.listeners.values()
        ]

    # ------------------------------------------------------------------ the event queue

    def schedule(self, at: float, step: Step) -> None:
        heapq.heappush(self._queue, (at, next(self._sequence), step))

    def _every(self, name: str, interval: float, step: Step, first: float) -> None:
        """Run ``step`` every ``interval``, surviving errors as the daemon's loops do: count
        them, and wait at least what GitHub's ``retry_after`` asks before the next run."""

        async def repeat() -> None:
            error: GitHubError | ProviderError | None = None
            try:
                result = step()
                if result is not None:
                    await result
            except (GitHubError, ProviderError) as caught:
                error = caught
            # The daemon's rule after a cycle: count a failure, back off after failures in a
            # row, and wait at least what GitHub's ``retry_after`` asks.
            wait = self.controller.after_cycle(name, error, interval)
            self.schedule(self.clock.now() + (interval if wait is None else wait), repeat)

        self.schedule(first, repeat)

    def _reconcile_soon(self) -> None:
        """A kick of the reconciler: a reconcile after the daemon's coalescing wait (the same
        rule, on the last reconcile's modelled length); one already due by then serves it,
        as a kick during the daemon's wait is served by the reconcile about to run. The
        periodic reconcile's kicks too: they keep their schedule, and wait only within a
        coalescing window, where the daemon, kicked meanwhile, has no periodic reconcile."""
        at = self.clock.now()
        if self._last_reconcile is not None:
            at += self.controller.coalescing_wait(*self._last_reconcile)
        if self._reconcile_at is None or self._reconcile_at > at:
            self._reconcile_at = at
            self.schedule(at, self._reconcile)

    async def _reconcile(self) -> None:
        now = self.clock.now()
        if self._reconcile_at is None or self._reconcile_at > now:
            return  # superseded
        self._reconcile_at = None
        self.reconciles += 1
        self._last_reconcile = (now, reconcile_length(rows_read(self.store)))
        try:
            await self.controller.reconcile_once()
        except (GitHubError, ProviderError):
            self.controller.count_failure("reconcile")

    # ------------------------------------------------------------------ what happens

    def _arrive(self, job: TraceJob) -> Step:
        def arrive() -> None:
            self._arrived += 1
            self.world.create_jobs(
                [JobSpec(job.repo, tuple(job.labels), job.duration, job.run_id, job.job)]
            )

        return arrive

    def _on_job_event(self, action: str, job: Job) -> None:
        if action in ("queued", "waiting") and job.started_at is None:
            self._open_jobs += 1
        if action == "in_progress" and job.runner_name is not None:
            backend = self._backend_of(job.runner_name)
            if backend is not None:
                backend.job_started(job.runner_name, self.clock.now())
            self.schedule(self.clock.now() + job.duration, self._finish(job))
        if action == "completed":
            self._open_jobs -= 1
            if job.runner_name is not None:
                backend = self._backend_of(job.runner_name)
                if backend is not None:
                    backend.job_ended(job.runner_name, self.clock.now())

    def _backend_of(self, runner_name: str) -> SimulatedBackend | None:
        for backend in self.backends.values():
            if runner_name in backend.instances:
                return backend
        return None

    def _sent(self, delivery: Delivery) -> None:
        """One send of ``delivery`` done. Its body is let go after its last (a duplicated one
        leaves twice, a reordered one later): nothing redelivers in a simulation, and 50,000
        jobs' bodies kept in the hub's log were over a gigabyte (only counts are read)."""
        left = self._sends.pop(delivery) - 1
        if left:
            self._sends[delivery] = left
        elif not self.hub.holds(delivery):
            delivery.body = b""

    def _finish(self, job: Job) -> Step:
        def finish() -> None:
            runner = self.world.runners.get(job.runner_id or -1)
            if runner is None or runner.job_id != job.id:
                return  # cancelled or lost meanwhile
            self.world.runner_complete(runner.credential, job.id, job.planned_conclusion)

        return finish

    def _deliver(self, delivery: Delivery) -> Step:
        def deliver() -> None:
            try:
                intake = self.intake.take(delivery.body, delivery.guid)
            except WebhookPayloadError:
                return
            finally:
                self._sent(delivery)
            delivery.status = "delivered"
            delivery.status_code = 202
            if intake.verdict is not Verdict.ACCEPTED:
                return
            assert intake.observed is not None
            # The daemon queues it for its events loop; here it is folded in at once.
            assert intake.taken is not None
            self.controller.observe_webhook(intake.observed, intake.taken)
            self._reconcile_soon()

        return deliver

    def _periodic_reconcile(self) -> None:
        busy = self._open_jobs > 0 or any(b.instances for b in self.backends.values())
        # (as in the daemon, whose reconcile loop runs on: a warm window opens on time)
        needs_idle = any(pool.keeps_idle for pool in self.controller.pools.values())
        if busy or needs_idle:
            self._reconcile_soon()

    async def _poll(self) -> None:
        try:
            # The daemon's poll step: GitHub when due (a safety net while webhooks arrive),
            # the backends and booting runners every time.
            await self.controller.poll_step()
        finally:
            self._reconcile_soon()  # what the poll did observe is acted on, as in the daemon

    def _sample(self) -> None:
        now = self.clock.now()
        booting = idle = busy = 0
        cost = 0.0
        for backend in self.backends.values():
            b, i, u = backend.state_counts()
            booting, idle, busy = booting + b, idle + i, busy + u
            cost += backend.cost(now)
        queued = sum(1 for job in self.world.jobs.values() if job.status.value == "queued")
        self._timeline.append(TimelinePoint(now - self.start, queued, booting, idle, busy, cost))
        if self.progress is not None:
            self.progress(min(1.0, (now - self.start) / max(1.0, self.horizon - self.start)))

    def _after_step(self) -> None:
        now = self.clock.now()
        for delivery in self.hub.take_ready():
            self._sends[delivery] = self._sends.get(delivery, 0) + 1
            self.schedule(now + WEBHOOK_DELAY, self._deliver(delivery))
        deadline = self.world.next_deadline()
        if deadline is not None and (self._tick_at is None or deadline < self._tick_at):
            self._tick_at = deadline
            self.schedule(max(now, deadline), self._tick)

    def _tick(self) -> None:
        self._tick_at = None
        self.world.tick()

    def _finished(self) -> bool:
        if self._arrived < len(self.trace) or self._open_jobs > len(self.trace) - len(
            self._servable
        ):
            return False
        if any(b.instances for b in self.backends.values()):
            return False
        if self.store.job_losses(settled=False):
            return False  # a lost job's re-run is still to be asked for (or refused)
        return all(
            self.world.jobs[job_id].status.value == "completed"
            for job_id in self._servable_job_ids()
        )

    def _servable_job_ids(self) -> list[int]:
        specs = self.config.pool_specs()
        return [
            job.id
            for job in self.world.jobs.values()
            if any(normalize_labels(job.labels) <= spec.labels for spec in specs)
        ]

    # ------------------------------------------------------------------ running

    async def run(self) -> PolicyResult:
        for job in self.trace:
            self.schedule(self.start + job.at, self._arrive(job))
        settings = self.controller.settings
        self._every("poll", settings.poll_interval, self._poll, self.start)
        self._every(
            "janitor",
            settings.janitor_interval,
            self.controller.janitor.sweep,
            self.start + settings.janitor_interval,
        )
        if self.policy.periodic_reconcile:
            self._every(
                "reconcile", settings.reconcile_interval, self._periodic_reconcile, self.start
            )
        self._every("sample", SAMPLE_EVERY, self._sample, self.start)
        self._listener_tasks = [
            asyncio.create_task(listener.run(), name=f"scale set {name}")
            for name, listener in self.controller.listeners.items()
        ]
        try:
            await self._settle()
            while self._queue:
                if self._stop_requested:
                    self.stopped = True
                    break
                at = self._queue[0][0]
                due = self._listeners_due()
                if due is not None and due <= min(at, self.horizon):
                    # A listener's wait ends first: it acts at its own time.
                    self.clock.advance(max(0.0, due - self.clock.now()))
                    await self._settle()
                    self._after_step()
                    continue
                at, _, step = heapq.heappop(self._queue)
                if at > self.horizon:
                    break
                self.clock.set(at)
                result = step()
                if result is not None:
                    await result
                await self._settle()
                self._after_step()
                if self._finished():
                    break
                self.heap.settle_when_due()
            self._sample()
            return PolicyResult(
                self.policy.name, self._figures(), tuple(self._timeline), self._occupancy()
            )
        finally:
            await self._stop_listeners()
            self.store.close()
            if self.heap.settled:
                self.heap.give_back()  # the process as it was (a test runs many engines)

    async def _stop_listeners(self) -> None:
        """Stop the listeners as the daemon does on shutdown (each closes its session)."""
        for task in self._listener_tasks:
            task.cancel()
        if self._listener_tasks:
            await asyncio.gather(*self._listener_tasks, return_exceptions=True)
        self._listener_tasks = []

    def _occupancy(self) -> Buckets:
        """Runners by state and jobs queued over the run, exactly, in buckets for the report."""
        now = self.clock.now()
        spans = [span for backend in self.backends.values() for span in backend.spans(now)]
        for job in self.world.jobs.values():
            # Queued until a runner took it (or it was cancelled), or until the end.
            left = job.started_at if job.started_at is not None else job.completed_at
            spans.append(Span("queued", job.created_at, now if left is None else left))
        return bucketed(spans, self.start, now)

    def _market(self, backend: SimulatedBackend, now: float) -> MarketFigures | None:
        """A pool priced by market: its books by market, and the lost jobs the controller
        re-ran (its own record of them, as ``runnerscale status`` shows it)."""
        if not backend.model.has_markets:
            return None
        rerun = sum(
            1
            for loss in self.store.job_losses(settled=True)
            if loss.pool == backend.pool and loss.outcome == RERUN
        )
        return MarketFigures(
            cost={str(m): cost for m, cost in backend.cost_by_market(now).items()},
            launches={str(m): count for m, count in backend.launches_by_market().items()},
            spot_capacity_short=backend.spot_refused,
            interruption_notices=backend.notices,
            interruptions=backend.interruptions,
            jobs_lost=backend.jobs_lost,
            jobs_rerun=rerun,
        )

    def _figures(self) -> Figures:
        """Each pool's figures, from the jobs routed to it and its backend's books; the run's
        are their sum (:meth:`Figures.of_pools`)."""
        now = self.clock.now()
        specs = self.config.pool_specs()
        routed: dict[str, list[Job]] = {spec.name: [] for spec in specs}
        unmatched = 0
        for job in self.world.jobs.values():
            spec = match_pool(specs, job.labels)
            if spec is None:
                unmatched += 1
            else:
                routed[spec.name].append(job)
        pools: dict[str, PoolFigures] = {}
        for name, jobs in routed.items():
            waits = [job.started_at - job.created_at for job in jobs if job.started_at is not None]
            backend = self.backends[name]
            booting, idle, busy = backend.seconds(now)
            pools[name] = PoolFigures(
                jobs=len(jobs),
                served=len(waits),
                unserved=len(jobs) - len(waits),
                queue_waits=tuple(waits),
                runner_seconds=RunnerSeconds(busy=busy, idle=idle, booting=booting),
                cost=backend.cost(now),
                market=self._market(backend, now),
            )
        deliveries = [d for d in self.hub.log if d.event == "workflow_job"]
        return Figures.of_pools(
            pools,
            unmatched=unmatched,
            api_calls=self.github.api_calls,
            # (REST only: the Actions service's requests are never charged)
            api_calls_by_operation=self.github.ledger.stats.charged,
            actions_service_calls_by_operation=self.github.ledger.stats.requests_of(
                Api.ACTIONS_SERVICE
            ),
            webhooks_delivered=sum(1 for d in deliveries if d.status == "delivered"),
            webhooks_lost=sum(1 for d in deliveries if d.status == "dropped"),
        )
