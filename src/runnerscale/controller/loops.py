"""The controller: small loops that observe, decide and act.

* **events**: webhook observations are queued by the HTTP server (which answers at once) and
  folded into the store here; each one kicks the reconciler, so a queued job gets a runner
  without waiting for any interval. This is the fast path.
* **reconcile**: on every kick, and at least every ``reconcile_interval``, recompute demand
  from the store with the pure scaler and write its decision: ``pending`` runners to create
  (on the targets it chose), idle runners to remove and finished ones to reap. Demand is never
  kept as a running count, and the reconcile decides nothing the scaler did not. It also
  settles the jobs lost with a runner that died mid-job (:mod:`runnerscale.controller.reruns`).
* **a worker per pool** (:mod:`runnerscale.controller.workers`): acts on its pool's part of
  the decision in tasks of its own, so a pool whose backend takes a minute to create a runner
  holds up no other pool (and no other runner of its own).
* **poll**: list each backend's inventory every ``poll_interval``; poll GitHub (active jobs
  and the runner list of each target, conditional requests: unchanged answers are free) as
  often, or every ``webhook_poll_interval`` while webhooks arrive. This repairs whatever
  webhooks missed. Jobs the poll did not show are re-checked one by one (while webhooks
  arrive, only those that look stuck); :attr:`Controller.newest_jobs` and the active
  repositories tell the GitHub client which repositories need reading.
* **janitor**: every ``janitor_interval``, enforce timeouts and remove orphans.

Every loop survives errors (logged and counted, then the next cycle) and waits on the injected
clock, so the same controller runs on the wall clock and on the simulation's virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from runnerscale.controller.actions import Actions, Events, LoopName, Planned, PoolRuntime
from runnerscale.controller.deliveries import DeliveryWriter
from runnerscale.controller.draining import drain
from runnerscale.controller.health import Heartbeat, assess
from runnerscale.controller.janitor import Janitor, JanitorSettings
from runnerscale.controller.observe import (
    REGISTERED,
    apply_instances,
    apply_runner_list,
    mark_runner,
)
from runnerscale.controller.pooldrain import (
    DrainReport,
    DrainStatus,
    drain_status,
    put_back,
    sweep,
    take_out,
)
from runnerscale.controller.pooldrain import load as load_drain
from runnerscale.controller.registrar import ScaleSetRegistrar
from runnerscale.controller.reruns import Reruns, record_loss
from runnerscale.controller.scaleset import ScaleSetListener, ScaleSetState
from runnerscale.controller.spend import SpendBook
from runnerscale.controller.workers import PoolWorker
from runnerscale.logs import untrusted
from runnerscale.model import (
    ACTIVE_JOB_STATES,
    LIVE_RUNNER_STATES,
    Instance,
    Job,
    JobLoss,
    JobState,
    Runner,
    RunnerState,
    Target,
    explain_unmatched,
    until_next_utc_day,
)
from runnerscale.protocols import (
    Clock,
    GitHubAPI,
    GitHubError,
    ObservedJob,
    Placement,
    PolledJobs,
    PollHints,
    PollPacer,
    ProviderError,
    Store,
    Taken,
)
from runnerscale.scaler import (
    ROUTED_JOB_STATES,
    Decision,
    budget_reached,
    decide,
    manual_runners,
)
from runnerscale.scaleset_api import ScaleSetAPI
from runnerscale.warm import InForce

log = logging.getLogger("runnerscale.controller")

#: Between GitHub polls, runners booting this long are looked up in GitHub's runner list.
BOOTING_CHECK_AFTER = 60.0
#: The longest wait between two failing cycles of a loop.
LOOP_BACKOFF_CAP = 600.0
#: How long a run heard of is remembered for the poll (GitHub cancels a job queued a day).
HEARD_RUN_MEMORY = 24 * 3600.0
#: The longest coalescing wait of a kicked reconcile, as a fraction of ``reconcile_interval``.
COALESCE_CAP = 0.2
#: The daemon's ``reconcile_coalesce``: a kicked reconcile waits nine times the last one's
#: length (it then takes at most a tenth of the core under a storm of deliveries).
DAEMON_COALESCE = 9.0
#: The longest wait between two re-checks of a job that looks stuck while webhooks arrive.
RECHECK_BACKOFF_CAP = 3600.0


class ScaleUpRefusedError(Exception):
    """A manual scale-up that cannot start any runner now (the message says why)."""


@dataclass
class ControllerSettings:
    poll_interval: float = 15.0
    #: While webhooks arrive (one within ``webhook_trust``), polling is only the safety net:
    #: it runs this often instead (never more often than ``poll_interval``).
    webhook_poll_interval: float = 300.0
    webhook_trust: float = 3600.0
    reconcile_interval: float = 5.0
    #: A kicked reconcile waits until this many times the previous reconcile's length has
    #: passed since that one began (capped: :data:`COALESCE_CAP`), so reconciles are
    #: coalesced, not one per delivery. 0: off (the default: tests on a virtual clock decide
    #: at once); the daemon turns it on, and the simulation (on a modelled length: its
    #: reconciles take no virtual time).
    reconcile_coalesce: float = 0.0
    janitor_interval: float = 30.0
    #: A job that stays queued this long without being seen again is re-checked in the API.
    queued_recheck: float = 120.0
    janitor: JanitorSettings = field(default_factory=JanitorSettings)


@dataclass(frozen=True)
class NodeStatus:
    """One host of a pool over several hosts, as its backend knows it now
    (:class:`~runnerscale.protocols.NodeState`)."""

    name: str
    up: bool
    slots: int
    #: Its own labels beyond the pool's, sorted.
    labels: tuple[str, ...]
    #: Why it is down ("" when up).
    reason: str = ""
    #: When it last went up or down (wall clock; None: not since the daemon started).
    since: float | None = None
    #: The pool's runners the backend knows on it.
    runners: int = 0


def node_statuses(placement: Placement | None) -> list[NodeStatus] | None:
    """The nodes of a placing backend for the status (None: not a placing backend)."""
    if placement is None:
        return None
    return [
        NodeStatus(
            node.name,
            node.up,
            node.slots,
            tuple(sorted(node.extra_labels)),
            node.reason,
            node.since,
            node.runners,
        )
        for node in placement.nodes
    ]


@dataclass(frozen=True)
class DrainingRunner:
    """A runner whose instance drains: it takes no new job (a busy one finishes its own)."""

    name: str
    #: Its state (``busy``: it finishes its job; otherwise it is being removed).
    state: str
    #: Why, as the backend says (a spot interruption notice, say).
    reason: str


@dataclass
class ScaleSetStatus:
    """A scale-set pool's scale set and its listener, as ``status`` shows them."""

    name: str
    #: None until the listener has found or created it.
    id: int | None
    #: Jobs assigned to it, waiting or running (the pool's demand).
    assigned_jobs: int
    #: Where its listener is (``open``, ``opening the session``, ``backing off``, ...).
    session: str
    last_error: str | None = None


def scale_set_status(state: ScaleSetState | None) -> ScaleSetStatus | None:
    if state is None:
        return None
    return ScaleSetStatus(
        name=state.spec.name,
        id=None if state.scale_set is None else state.scale_set.id,
        assigned_jobs=state.assigned,
        session=state.session,
        last_error=state.last_error,
    )


@dataclass
class PoolStatus:
    name: str
    max_runners: int
    #: The number in force now (with warm windows: the window's, or the base).
    min_idle: int
    desired: int = 0
    booting: int = 0
    idle: int = 0
    busy: int = 0
    queued: int = 0
    healthy: bool = True
    last_error: str | None = None
    #: Why ``max_runners`` (the pool's effective cap) is below the configured one, if it is.
    capped_by: str | None = None
    #: With warm windows: the one in force, its count and when it closes, or the base and the
    #: window that opens next (None: ``min_idle`` is a plain number).
    warm: InForce | None = None
    #: The scaler's sentence for this pool's last decision: what it counts and does, or why
    #: its queued jobs wait (the cap, the failure backoff).
    reason: str = ""
    #: A pool whose backend places runners on several hosts: its nodes (None: another pool).
    nodes: list[NodeStatus] | None = None
    #: Its runners whose instance drains (they take no new job), by name.
    draining: list[DrainingRunner] = field(default_factory=list)
    #: Runners it would create now but for its budget or its failure backoff, and which of
    #: the two holds them (``budget``, ``failure_backoff``; "" when nothing does).
    held_back: int = 0
    held_back_by: str = ""
    #: Its ``pending`` runners (counted in ``booting``) whose creation has not begun, by what
    #: they wait for: ``registration_budget`` (GitHub's runner registration budget, spent
    #: until its window resets, or paused), ``create_slot`` (a free one of its
    #: ``create_concurrency``). No create timeout runs while they wait.
    waiting: dict[str, int] = field(default_factory=dict)
    #: US dollars its instances cost today (UTC) and since it was first counted (from the
    #: prices its backend lists; 0 for a backend that tells none).
    spend_today: float = 0.0
    cost_total: float = 0.0
    #: Its ``budget.per_day`` (None: no cap).
    budget_per_day: float | None = None
    #: A scale-set pool's scale set and listener (None: a webhook pool).
    scale_set: ScaleSetStatus | None = None
    #: Out of service by an operator's hand (``runnerscale pools drain``); None: in service.
    drain: DrainStatus | None = None


@dataclass(frozen=True)
class ListedJob:
    """A job the status lists: which one, and what it runs on."""

    id: int
    repo: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class QueuedJob(ListedJob):
    """A queued job a pool serves, waiting for a runner (its pool's ``reason`` says why)."""

    pool: str
    #: When GitHub created it (what its queue wait is counted from).
    created_at: float


@dataclass(frozen=True)
class UnmatchedJob(ListedJob):
    """A queued job no pool serves, and why (never provisioned for)."""

    reason: str


@dataclass(frozen=True)
class QueueWait:
    """How long a job of a pool waited for a runner: from its creation to its start, as
    GitHub says."""

    id: int
    repo: str
    pool: str
    started_at: float
    wait: float


#: Unmatched jobs listed in the status (the count covers them all).
UNMATCHED_SHOWN = 50
#: Queued jobs listed in the status, the oldest (``jobs`` counts them all).
QUEUED_SHOWN = 50
#: Queue waits kept for the status, the latest: enough for a plot of the recent past, a
#: bounded size whatever the traffic.
RECENT_WAITS = 200


@dataclass
class Status:
    pools: list[PoolStatus]
    unmatched_jobs: int = 0
    unmatched: list[UnmatchedJob] = field(default_factory=list)
    #: The oldest queued jobs that a pool serves (at most :data:`QUEUED_SHOWN`).
    queued: list[QueuedJob] = field(default_factory=list)
    #: The latest jobs started, oldest first (at most :data:`RECENT_WAITS`, since the start).
    queue_waits: list[QueueWait] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)
    #: Jobs whose runner died mid-job: those not settled yet, then the latest settled (re-run,
    #: or why not).
    lost_jobs: list[JobLoss] = field(default_factory=list)
    updated_at: float = 0.0


@dataclass(frozen=True)
class Demand:
    """The jobs a decision is made on, read together: those the scaler routes (queued and
    waiting), as rows, and every active job counted by state (the status's counts).

    Why not every active row: the in-progress jobs, at fleet scale nearly all of them, are
    neither routed nor shown; copying each out of the store on every reconcile only to count
    it was most of a 10,000-job simulation's time."""

    jobs: list[Job]
    counts: dict[JobState, int]


def _first_seen_started(before: Job | None, after: Job) -> bool:
    """Whether this observation is the first to show that a runner started the job: it is in
    progress now, or done by a runner while it was last seen waiting for one (it ran between
    two polls: its queue wait counts all the same)."""
    if after.state is JobState.IN_PROGRESS:
        return before is None or before.state is not JobState.IN_PROGRESS
    return (
        after.state is JobState.COMPLETED
        and bool(after.runner_name)
        and before is not None
        and before.state in (JobState.QUEUED, JobState.WAITING)
    )


def _oldest_queued(jobs: list[Job], decision: Decision) -> list[QueuedJob]:
    """The queued jobs a pool serves, oldest first, at most :data:`QUEUED_SHOWN`. ``jobs``:
    oldest first (by creation, then id), as the store reads them."""
    served = (
        (job, pool)
        for job in jobs
        if job.state is JobState.QUEUED and (pool := decision.job_pools.get(job.id)) is not None
    )
    # Only the shown ones are made, and looked for: a fleet's queue holds thousands.
    return [
        QueuedJob(job.id, job.repo, tuple(job.labels), pool, job.created_at)
        for job, pool in itertools.islice(served, QUEUED_SHOWN)
    ]


def _counted_without(demand: Demand, left_out: set[int]) -> dict[str, int]:
    """The active jobs by state (its ``value``) but those ``left_out`` (their rows are among
    the routed ones read), a state with none left out of the counts."""
    gone = Counter(job.state for job in demand.jobs if job.id in left_out)
    counts = ((state, count - gone[state]) for state, count in demand.counts.items())
    return {state.value: count for state, count in counts if count}


async def wait_for(clock: Clock, event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` of the clock's time have passed.

    The helper tasks are tidied up with :func:`asyncio.wait`, which never raises their
    cancellation: suppressing ``CancelledError`` around them would also swallow a cancellation
    of the waiting task itself arriving meanwhile (a daemon told to stop just as a kick woke
    its reconcile loop would then never stop).
    """
    if event.is_set():
        return
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waiter):
            task.cancel()
        await asyncio.wait({sleeper, waiter})


def _cap_of(pool: PoolRuntime) -> Callable[[], int]:
    """The pool's cap as it is now (a reload may change it)."""
    return lambda: pool.spec.max_runners


class Controller:
    def __init__(
        self,
        store: Store,
        github: GitHubAPI,
        clock: Clock,
        *,
        pools: list[PoolRuntime],
        targets: list[Target],
        settings: ControllerSettings | None = None,
        events: Events | None = None,
        on_job_started: Callable[[str, float], None] | None = None,
        runner_suffix: Callable[[], str] | None = None,
        poll_pacer: PollPacer | None = None,
        rng: random.Random | None = None,
        scale_sets: Mapping[str, ScaleSetAPI] | None = None,
        owner: str = "runnerscale",
    ) -> None:
        """``scale_sets``: the Actions-service client of each scale-set pool (by pool name);
        ``owner``: the name its sessions are opened as (the deployment's controller id)."""
        self.store = store
        self.github = github
        self.clock = clock
        self.settings = settings or ControllerSettings()
        self.targets = {target.key: target for target in targets}
        self.pools = {pool.name: pool for pool in pools}
        self._read_drains(store)
        self.actions = Actions(
            store,
            github,
            clock,
            self.targets,
            self.pools,
            events or Events(),
            timeouts=self.settings.janitor,
        )
        if runner_suffix is not None:
            self.actions.suffix = runner_suffix
        self.janitor = Janitor(self.actions, self.settings.janitor)
        #: Re-runs jobs whose runner died mid-job (pools with ``rerun_lost_jobs``).
        self.reruns = Reruns(store, github, clock, self.pools, self.actions.events)
        #: What each pool's instances cost, today and in all (kept in the store).
        self.spend = SpendBook(store)
        #: One worker per pool, acting on the pool's part of each decision.
        self.workers = {
            pool.name: PoolWorker(
                self.actions, pool, freed=self._slot_freed, failed=self._worker_failed
            )
            for pool in pools
        }
        #: Runners the workers removed (slots freed): ``reconcile_once`` decides again.
        self._freed = 0
        self._jobs: list[Job] = []
        #: The active jobs by state (their ``value``) as last decided on, for the status.
        self._job_counts: dict[str, int] = {}
        self._on_job_started = on_job_started or (lambda pool, wait: None)
        #: Paces the poll: the GitHub client stretches the interval when the rate-limit
        #: budget runs low, from what the calls made inside its ``polling()`` cost.
        self._poll_pacer = poll_pacer
        self._rng = rng or random.Random(0)  # noqa: S311 - jitter, not a secret
        self._failures: Counter[str] = Counter()
        self._next_github_poll = 0.0
        #: When the last webhook delivery was handed over (None: none since the start).
        self.last_webhook_at: float | None = None
        self._kick = asyncio.Event()
        self._inbox: asyncio.Queue[ObservedJob] = asyncio.Queue()
        #: Webhook deliveries' writes (grouped in a thread once the daemon starts it).
        self.deliveries = DeliveryWriter(store, clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._reported_unmatched: set[int] = set()
        self._last_observed: dict[int, ObservedJob] = {}
        #: The newest creation time of a job heard of, per repository (lower case): a push
        #: newer than that may have started jobs whose webhooks were lost.
        self.newest_jobs: dict[str, float] = {}
        #: The newest creation time of a job heard of per run, (``owner/name``, run id): a poll
        #: reads the jobs of a heard run once, in case a sibling's webhook was lost.
        self.heard_runs: dict[tuple[str, int], float] = {}
        #: Targeted re-checks while webhooks arrive: job id -> (next check, wait after it).
        self._rechecks: dict[int, tuple[float, float]] = {}
        #: Webhooks may have been missed: the next poll reads as if none arrived. So at the
        #: start (those sent while the daemon was down are lost), and when a runner of ours
        #: died while runnerscale thought it had no job (it may have run one whose webhooks
        #: were all lost).
        self._missed_events_suspected = True
        #: Each loop's pulse (see :mod:`.health`), and when the first decision was written.
        self.heartbeats: dict[str, Heartbeat] = {}
        self.reconciled_at: float | None = None
        #: Stale queued jobs whose re-read failed in this cycle: no demand until confirmed.
        self._unconfirmed: set[int] = set()
        #: Repositories (lower case) the last GitHub poll could not read: their jobs are
        #: unknown, kept as they were (:class:`~runnerscale.protocols.PolledJobs`).
        self._unread_repos: frozenset[str] = frozenset()
        self.errors: Counter[str] = Counter()
        #: The latest queue waits, for the status (the metric has them all, in buckets).
        self._waits: deque[QueueWait] = deque(maxlen=RECENT_WAITS)
        self.status = Status(pools=[])
        self.last_decision: Decision | None = None
        #: One listener per scale-set pool (:mod:`.scaleset`), run while the loops run.
        self.listeners = self._listeners(scale_sets or {}, owner)
        #: Whether any pool learns of jobs from GitHub's REST API (a webhook pool): when all
        #: are scale-set pools, the poll reads no jobs (their listeners tell), only runners.
        self.polls_jobs = any(pool.scale_set is None for pool in pools)

    def _listeners(
        self, apis: Mapping[str, ScaleSetAPI], owner: str
    ) -> dict[str, ScaleSetListener]:
        listeners = {}
        for pool in self.pools.values():
            if pool.scale_set is None:
                continue
            api = apis.get(pool.name)
            if api is None:
                raise ValueError(f"pool {pool.name} is a scale-set pool but has no scale set API")
            self.actions.registrars[pool.name] = ScaleSetRegistrar(api, pool.scale_set)
            listeners[pool.name] = ScaleSetListener(
                pool.scale_set,
                api,
                self.store,
                self.clock,
                owner=owner,
                capacity=_cap_of(pool),
                observe=self.observe,
                changed=self.kick,
                failed=lambda: self.count_failure("scaleset"),
            )
        return listeners

    # ------------------------------------------------------------------ intake

    def covers(self, repo: str) -> bool:
        return any(target.covers(repo) for target in self.targets.values())

    def submit(self, observed: ObservedJob) -> None:
        """Hand over a webhook observation. While the loops run, the events loop folds it in
        (the HTTP answer never waits for that); while they do not (a daemon standing by for
        another that leads), it is folded into the store at once, where the leader's next
        decision finds it: nothing accepted is kept in memory only, with no loop to take it."""
        self.last_webhook_at = self.clock.now()
        if self.running:
            self._inbox.put_nowait(observed)
        else:
            self.observe(observed)

    def observe_webhook(self, observed: ObservedJob, taken: Taken) -> None:
        """A webhook observation the store has taken with its delivery
        (:meth:`~runnerscale.protocols.Store.take_deliveries`): what follows it, at once, and
        a kick of the reconcile loop (the simulation schedules its own reconcile)."""
        self.last_webhook_at = self.clock.now()
        if taken.after is not None:
            self._observed(observed, taken.before, taken.after)
        self.kick()

    def github_poll_interval(self) -> float:
        """The wait before GitHub is polled again: ``poll_interval``, or the safety-net
        ``webhook_poll_interval`` while webhooks arrive, stretched by the pacer when the API
        budget runs low. (Backends are listed every ``poll_interval`` regardless.)"""
        settings = self.settings
        base = settings.poll_interval
        if self.webhooks_flow() or not self.polls_jobs:
            # (With scale-set pools only, their listeners tell of every job: the runner list
            # read here is a safety net, as the poll is while webhooks arrive.)
            base = max(base, settings.webhook_poll_interval)
        return base if self._poll_pacer is None else self._poll_pacer.poll_interval(base)

    def webhooks_flow(self) -> bool:
        """Whether webhook deliveries arrive (one within ``webhook_trust``)."""
        return (
            self.last_webhook_at is not None
            and self.clock.now() - self.last_webhook_at <= self.settings.webhook_trust
        )

    def active_repos(self) -> frozenset[str]:
        """Repositories of the jobs the store holds as not done (for the poll's schedule)."""
        return frozenset(job.repo for job in self.store.jobs(list(ACTIVE_JOB_STATES)))

    def poll_hints(self) -> PollHints:
        """What a GitHub poll of an organisation needs to know to read less. Runs heard of
        more than a day ago are forgotten: GitHub cancels a job queued that long."""
        oldest = self.clock.now() - HEARD_RUN_MEMORY
        self.heard_runs = {run: at for run, at in self.heard_runs.items() if at >= oldest}
        return PollHints(
            self.active_repos(),
            self.webhooks_flow() and not self._missed_events_suspected,
            self.newest_jobs,
            self.reruns.expected_repos(),
            self.heard_runs,
        )

    def kick(self) -> None:
        self._kick.set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the loops run (:meth:`start` until :meth:`stop`)."""
        return bool(self._tasks)

    def _read_drains(self, store: Store) -> None:
        """Which pools an operator drained, as the store keeps it (a restart, a reload, a
        standby taking the lead: the pools stay out of service)."""
        for pool in self.pools.values():
            pool.drained = load_drain(store, pool.name)

    async def start(self) -> None:
        self._read_drains(self.store)
        await self.actions.recover()
        self._tasks = [
            asyncio.create_task(self._forever("events", self._drain_inbox, None), name="events"),
            asyncio.create_task(
                self._forever("reconcile", self.reconcile_step, "reconcile_interval"),
                name="reconcile",
            ),
            *(
                asyncio.create_task(worker.run(), name=f"pool {worker.name}")
                for worker in self.workers.values()
            ),
            asyncio.create_task(
                self._forever("poll", self.poll_step, "poll_interval"), name="poll"
            ),
            asyncio.create_task(
                self._forever("janitor", self.janitor.sweep, "janitor_interval"), name="janitor"
            ),
            *(
                asyncio.create_task(listener.run(), name=f"scale set {name}")
                for name, listener in self.listeners.items()
            ),
        ]
        self.kick()

    def health(self) -> list[str]:
        """Why the daemon is not healthy now (empty: it is); see :mod:`.health`."""
        reasons: list[str] = []
        for task in self._tasks:
            if not task.done():
                continue
            beat = self.heartbeats.get(task.get_name())
            if beat is not None:
                beat.alive = False
            else:
                reasons.append(f"the {task.get_name()} task has stopped (see the log)")
        return assess(self.clock.now(), self.heartbeats, self.pools.values()) + reasons

    @property
    def ready(self) -> bool:
        """Whether the daemon has reconciled (decided for its pools) since it started."""
        return self.reconciled_at is not None

    async def stop(self) -> None:
        """Stop the loops. Runners keep running: a restarted daemon (or the one that takes the
        lead) adopts them. Webhook observations not folded in yet are stored now, and the
        loops' heartbeats are forgotten (a stopped loop is not a stuck one); :meth:`start`
        may run the loops again."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for worker in self.workers.values():
            await worker.stop()
        await self.actions.online.stop()
        self.heartbeats.clear()
        while not self._inbox.empty():
            try:
                self.observe(self._inbox.get_nowait())
            except Exception:  # the store may be what failed: the next poll finds the jobs
                log.exception("a webhook observation could not be stored on stopping")

    async def _forever(
        self, name: LoopName, step: Callable[[], Awaitable[None]], interval_setting: str | None
    ) -> None:
        """Run ``step`` forever; the interval is read from the settings each cycle, so a
        reloaded configuration takes effect at the next one."""
        beat = self.heartbeats.setdefault(name, Heartbeat(waits_for_work=interval_setting is None))
        while True:
            error: BaseException | None = None
            began = self.clock.now()
            beat.began(began)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except (GitHubError, ProviderError) as caught:
                error = caught
                log.warning("%s: %s", name, caught)
            except Exception as caught:
                error = caught
                log.exception("%s loop failed; retrying next cycle", name)
            if interval_setting is None:
                # Its step waits for work (the events loop): its length is no tick's.
                wait = self.after_cycle(name, error, None)
                beat.ended(self.clock.now() + wait if wait else None)
                if wait:
                    await self.clock.sleep(wait)
                continue
            length = self.clock.now() - began
            self.actions.events.tick(name, length)
            interval = float(getattr(self.settings, interval_setting))
            wait = self.after_cycle(name, error, interval)
            beat.ended(self.clock.now() + (interval if wait is None else wait))
            if wait is not None:
                await self.clock.sleep(wait)
            elif name == "reconcile":
                await wait_for(self.clock, self._kick, interval)
                coalescing = self.coalescing_wait(began, length)
                if coalescing:
                    await self.clock.sleep(coalescing)
                # Cleared only now: a kick during the wait is served by the step about to
                # run (which reads the store after it); one during the step runs another.
                self._kick.clear()
            else:
                await self.clock.sleep(interval)

    def coalescing_wait(self, began: float, length: float) -> float:
        """How much longer a kicked reconcile waits, so that a burst of deliveries costs a few
        reconciles rather than one each: until ``reconcile_coalesce`` times the length of the
        previous one (which began at ``began``) has passed since it began, never more than
        :data:`COALESCE_CAP` of ``reconcile_interval``. 0 when coalescing is off."""
        factor = self.settings.reconcile_coalesce
        if not factor:
            return 0.0
        cap = COALESCE_CAP * self.settings.reconcile_interval
        return max(0.0, began + min(factor * length, cap) - self.clock.now())

    def after_cycle(
        self, name: str, error: BaseException | None, interval: float | None
    ) -> float | None:
        """The loops' failure rule, the daemon's and the simulation's alike: after one cycle
        of loop ``name`` that raised ``error`` (None: it succeeded), count it, and say how long
        to wait before the next cycle: None after a success (the loop's own interval), else
        what GitHub's ``retry_after`` asks, then the interval stretched by
        :meth:`failure_delay` for the failures in a row (``interval`` None: a loop without
        one, which waits only for ``retry_after``)."""
        if error is None:
            self._failures[name] = 0
            return None
        self.count_failure(name)
        self._failures[name] += 1
        retry = error.retry_after if isinstance(error, GitHubError) and error.retry_after else 0.0
        if interval is None:
            return retry
        delay = self.failure_delay(interval, self._failures[name])
        log.info(
            "%s: failed %d time(s) in a row; next try in %.0fs",
            name,
            self._failures[name],
            delay,
        )
        return retry + delay

    def count_failure(self, loop: str) -> None:
        """One failed cycle of ``loop``: counted in ``errors`` (the status API) and told to
        ``Events.failed`` (the metric) in one place, so that the two never disagree."""
        self.errors[loop] += 1
        self.actions.events.failed(loop)

    def failure_delay(self, interval: float, failures: int) -> float:
        """After ``failures`` failed cycles in a row: the interval doubled per failure, capped
        at :data:`LOOP_BACKOFF_CAP`, with jitter (between half and all of it; never less than
        the interval), so that nothing retries GitHub or a backend in a tight loop."""
        ceiling = min(LOOP_BACKOFF_CAP, interval * 2 ** min(failures - 1, 16))
        return max(interval, self._rng.uniform(ceiling / 2, ceiling))

    async def _drain_inbox(self) -> None:
        observed = await self._inbox.get()
        self.observe(observed)
        while not self._inbox.empty():
            self.observe(self._inbox.get_nowait())
        self.kick()

    def observe(self, observed: ObservedJob) -> None:
        """Fold one job observation into the store (and time its queue wait).

        An observation identical to the last one of the same job changes nothing and is
        skipped: polling re-reads every active job each interval.
        """
        if not self.fresh(observed):
            return
        before = self.store.get_job(observed.id)
        after = self.store.observe_job(observed, self.clock.now())
        self._observed(observed, before, after)

    def fresh(self, observed: ObservedJob) -> bool:
        """Whether ``observed`` differs from the last observation of its job taken."""
        return self._last_observed.get(observed.id) != observed

    def _observed(self, observed: ObservedJob, before: Job | None, after: Job) -> None:
        """What follows an observation the store has recorded (``before``: the job as it was,
        None when new): the runner it names, the queue wait, what the poll must know."""
        repo = observed.repo.lower()
        self.newest_jobs[repo] = max(
            self.newest_jobs.get(repo, observed.created_at), observed.created_at
        )
        if observed.run_id is not None:
            run = (observed.repo, observed.run_id)
            self.heard_runs[run] = max(
                self.heard_runs.get(run, observed.created_at), observed.created_at
            )
        connected = mark_runner(self.store, after, self.clock.now())
        self._last_observed[observed.id] = observed
        if connected is not None:
            self.actions.connected(connected)
        started = _first_seen_started(before, after)
        if started and after.state is JobState.IN_PROGRESS and after.runner_name:
            self.actions.came_online(after.runner_name)
        if started and after.started_at is not None:
            wait = max(0.0, after.started_at - after.created_at)
            self._on_job_started(after.pool or "", wait)
            if after.pool:  # one of ours: the status's series is of the pools' waits
                self._waits.append(
                    QueueWait(after.id, after.repo, after.pool, after.started_at, wait)
                )
        if (
            after.state is JobState.COMPLETED
            and (before is None or before.state is not JobState.COMPLETED)
            and after.started_at is not None
            and after.completed_at is not None
        ):
            ran = max(0.0, after.completed_at - after.started_at)
            self.actions.events.job_ran(after.pool or "", ran)

    # ------------------------------------------------------------------ polling

    async def poll_step(self) -> None:
        """One cycle of the poll loop: GitHub when it is due, the backends every time."""
        with contextlib.nullcontext() if self._poll_pacer is None else self._poll_pacer.polling():
            if self.clock.now() >= self._next_github_poll:
                try:
                    await self.poll_once()
                finally:
                    self._next_github_poll = self.clock.now() + self.github_poll_interval()
            else:
                await self.poll_backends()

    async def poll_once(self) -> None:
        """Poll every target and backend; one that fails does not stop the others. The first
        failure is raised at the end, for the loop to count (and honour ``retry_after``).

        A target's poll may leave repositories unread (their read failed): counted in
        ``errors["poll_repository"]`` (and told to ``Events.unread``: a metric), and their
        jobs are unknown, not gone (kept as they were: neither re-checked as unseen nor taken
        out of demand). A target's poll that read none of its repositories counts as failed.
        A target whose calls would wait for a paused or spent rate limit is not read (no
        call, no error: read at the next poll), its jobs unknown as a failed target's, so
        that the poll never waits for a rate limit and the backends are listed meanwhile."""
        now = self.clock.now()
        seen: set[int] = set()
        unread: set[str] = set()
        failed: list[Target] = []
        errors: list[GitHubError | ProviderError] = []
        for target in self.targets.values():
            if self.actions.rate_limited("list-runners", target.key):
                # Its calls (all on core, the credential's) would wait for a rate limit, up to
                # an hour, and the backends' listing with them: read at the next poll.
                log.info("poll: target %s not read: GitHub's rate limit holds it", target.name)
                failed.append(target)
                continue
            try:
                # Scale-set pools' jobs come from their listeners: no job is read for them.
                polled = await self.github.active_jobs(target) if self.polls_jobs else PolledJobs()
                for observed in polled.jobs:
                    seen.add(observed.id)
                    self.observe(observed)
                if polled.unread:
                    unread |= polled.unread
                    self.errors["poll_repository"] += len(polled.unread)
                    self.actions.events.unread(len(polled.unread))
                if polled.error is not None:
                    errors.append(polled.error)  # it read nothing it tried: a failed cycle
                listed = await self.github.list_runners(target)
            except GitHubError as error:
                log.warning("poll: target %s: %s", target.name, error)
                failed.append(target)
                errors.append(error)
                continue
            for runner in apply_runner_list(self.store, target.key, listed, now):
                self.actions.connected(runner)
        backend_error = await self._list_backends()
        if backend_error is not None:
            errors.append(backend_error)
        # What a target that failed outright could not tell is as unknown as before.
        self._unread_repos = frozenset(
            unread | {repo for repo in self._unread_repos if any(t.covers(repo) for t in failed)}
        )
        if not failed:
            # Forget jobs the poll no longer returns (it re-reads every active one).
            self._last_observed = {k: v for k, v in self._last_observed.items() if k in seen}
            # Some repository unread: the poll did not read all it would have.
            self._missed_events_suspected = self._missed_events_suspected and bool(unread)
        recheck_error = (
            await self._recheck_unseen(seen, failed, unread) if self.polls_jobs else None
        )
        if recheck_error is not None:
            errors.append(recheck_error)
        self.kick()
        if errors:
            raise errors[0]

    async def poll_backends(self) -> None:
        """Between GitHub polls: list every backend's instances (exited ones finish their
        runners), and GitHub's runner lists of targets with runners still booting (they
        come online there; a boot timeout must not pass unseen)."""
        errors: list[GitHubError | ProviderError] = []
        backend_error = await self._list_backends()
        if backend_error is not None:
            errors.append(backend_error)
        now = self.clock.now()
        # A runner that takes a job is reported by its job's webhook; one still booting after
        # a while may be online without a job (or never come up): GitHub's list tells.
        booting = {
            r.target
            for r in self.store.runners(states=[RunnerState.BOOTING])
            if now - r.state_since >= self._booting_check_after(r.pool)
        }
        errors += await self.actions.refresh_runner_lists(booting)
        self.kick()
        if errors:
            raise errors[0]

    def _booting_check_after(self, pool_name: str) -> float:
        """Look a booting runner up in GitHub after a minute, or a third of its pool's boot
        timeout when that is shorter (it must be seen online well before it times out)."""
        pool = self.pools.get(pool_name)
        limit = pool.spec.boot_timeout / 3 if pool is not None else BOOTING_CHECK_AFTER
        return min(BOOTING_CHECK_AFTER, limit)

    async def _list_backends(self) -> ProviderError | None:
        """The first error, after trying every pool (one failing does not stop the others)."""
        now = self.clock.now()
        first: ProviderError | None = None
        for pool in self.pools.values():
            try:
                instances = await self.actions.list_instances(pool)
            except ProviderError as error:
                log.warning("poll: pool %s: %s", pool.name, error)
                first = first or error
                continue
            for runner, instance in apply_instances(self.store, pool.name, instances, now):
                self._instance_failed(runner, instance)
            self.spend.count(pool.name, instances, self.clock.now())
            await drain(self.actions, pool, instances)
            await sweep(self.actions, pool, instances)
        return first

    def _instance_failed(self, runner: Runner, instance: Instance) -> None:
        """A runner's instance died (killed mid-job, or crashed while starting): say so with
        the backend's account of it (exit code and last log lines), count it, reap it; if it
        was busy, record its job as lost (:mod:`~runnerscale.controller.reruns`)."""
        log.warning(
            "runner %s (pool %s) died while %s: %s",
            runner.name,
            runner.pool,
            runner.state.value,
            instance.detail,
        )
        self.actions.events.error(runner.pool, "instance_died")
        self.errors["instance_died"] += 1
        if runner.state is RunnerState.BUSY:
            why = f"its instance exited with code {instance.exit_code}"
            record_loss(self.store, runner, why, self.clock.now())
        elif runner.state in (RunnerState.BOOTING, RunnerState.IDLE):
            # It may have taken a job whose webhooks were all lost: a job GitHub fails for
            # its lost runner, and that nobody re-runs unless a poll sees it in progress
            # first. Poll soon, reading every repository a poll without webhooks would.
            self._missed_events_suspected = True
            self._next_github_poll = min(self._next_github_poll, self.clock.now())
        pool = self.pools.get(runner.pool)
        if pool is not None and runner.state is RunnerState.BOOTING:
            # It never came online: the pool's runners may all crash at start (a broken
            # image, a bad command). Back off as for a failed creation.
            first_line = instance.detail.strip().splitlines()[0] if instance.detail.strip() else ""
            pool.failed(
                self.clock.now(),
                f"runner {runner.name} exited with code {instance.exit_code} before it came "
                f"online ({first_line})",
            )

    async def _recheck_unseen(
        self, seen: set[int], failed: list[Target], unread: set[str]
    ) -> GitHubError | None:
        """Jobs the store holds as active that the poll did not show: ask for each; the first
        failed request is returned, after trying the others.

        Without webhooks a poll reads every repository with active jobs, so a job it did not
        show has moved on; but one that only a target whose listing failed could have shown,
        or one of a repository whose read failed (``unread``), is not unseen: skipped. While
        webhooks arrive, polls leave such repositories to them, and a job is asked for only
        when it looks stuck (see :meth:`_recheck_due`), whether or not its target's listing
        or its repository's read failed (under a storm of errors, some call of a poll nearly
        always fails: a stuck job must still be asked for)."""
        now = self.clock.now()
        trusting = self.webhooks_flow()
        # Enterprise targets list no jobs (GitHub has no API for it): their jobs are never
        # "unseen" by a poll, so they are not re-checked either (a 404 would mark them done).
        polled = [
            target
            for target in self.targets.values()
            if (trusting or target not in failed) and target.kind != "enterprise"
        ]
        idle_pools = {r.pool for r in self.store.runners(states=[RunnerState.IDLE])}
        active = self.store.jobs([JobState.QUEUED, JobState.IN_PROGRESS])
        self._rechecks = {
            job.id: self._rechecks[job.id] for job in active if job.id in self._rechecks
        }
        first: GitHubError | None = None
        for job in active:
            if job.id in seen or now - job.observed_at < self.settings.queued_recheck:
                continue
            if not any(t.covers(job.repo) for t in polled):
                continue
            if not trusting and job.repo.lower() in unread:
                continue
            if trusting and not self._recheck_due(job, now, idle_pools):
                continue
            if self._reread_held(job):
                continue  # asked at a later poll
            try:
                await self._reread(job)
            except GitHubError as error:
                log.warning("poll: re-reading job %s of %s: %s", job.id, job.repo, error)
                first = first or error
        return first

    def _recheck_due(self, job: Job, now: float, idle_pools: set[str]) -> bool:
        """While webhooks arrive: whether a job not heard of for a while is worth a request.

        Not a job in progress on a live runner of ours (that runner's end tells), nor a queued
        one whose pool has no idle runner (the queue explains the wait). Any other (queued
        while a runner of its pool idles, matching no pool, or running where we cannot watch)
        is, with a wait that doubles after each check (up to :data:`RECHECK_BACKOFF_CAP`),
        except a job running on a runner of ours that has ended: its end is near, so it is
        asked for every ``queued_recheck``. An unchanged job is a free 304 besides."""
        steady = False
        if job.state is JobState.IN_PROGRESS and job.runner_name:
            runner = self.store.get_runner(job.runner_name)
            if runner is not None and runner.state in REGISTERED:
                return False
            # A job still running on a runner of ours that has ended is about to end too
            # (GitHub fails it once its runner has been silent a while): asked for at a
            # steady pace, so that a loss is re-run promptly.
            steady = runner is not None
        if job.state is JobState.QUEUED and job.pool is not None and job.pool not in idle_pools:
            return False  # its pool is busy: the wait is explained
        next_at, wait = self._rechecks.get(job.id, (0.0, self.settings.queued_recheck))
        if now < next_at:
            return False
        self._rechecks[job.id] = (
            now + wait,
            wait if steady else min(wait * 2, RECHECK_BACKOFF_CAP),
        )
        return True

    # ------------------------------------------------------------------ reconciling

    async def reconcile_once(self) -> None:
        """One whole reconcile as one step (what tests and the simulation drive): decide and
        write the decision, let every pool's worker converge on it and wait for them all. When
        that removed a runner (reaped a finished one, say), decide once more: under a binding
        cap, the slot it freed is used in this very step (in the daemon, the worker kicks the
        reconcile loop instead). Lost jobs that have ended are settled first (re-run or not)."""
        await self.reruns.settle()
        while True:
            self.decide_once(*await self.confirm_stale_demand())
            freed_before = self._freed
            await asyncio.gather(*(worker.converge() for worker in self.workers.values()))
            self._refresh_status(self._decision())
            if self._freed == freed_before:
                return

    async def reconcile_step(self) -> None:
        """The reconcile loop's step in the daemon: decide and write the decision; each pool's
        worker task acts on its part (never awaited here, so no pool waits for another). Then
        lost jobs that have ended are settled (re-run or not: a rare call to GitHub)."""
        self.decide_once(*await self.confirm_stale_demand())
        await self.reruns.settle()
        self._refresh_status(self._decision())

    def _read_demand(self) -> Demand:
        """The routed jobs (shared: this controller never changes them) and the counts."""
        return Demand(
            # Only read (routed, shown): the rows as kept, not copies.
            self.store.jobs(list(ROUTED_JOB_STATES), shared=True),
            self.store.count_jobs(list(ACTIVE_JOB_STATES)),
        )

    def decide_once(
        self, demand: Demand | None = None, decided: Decision | None = None
    ) -> Decision:
        """Decide (the pure scaler, on what the store holds now) and write the decision: the
        pool chosen for each job, a ``pending`` runner for each creation (on the target the
        scaler chose), and each pool's removals handed to its worker. Nothing here chooses
        anything the scaler did not; nothing here waits for GitHub or a backend. ``demand``:
        the jobs as just read (:meth:`confirm_stale_demand`), else read here; ``decided``:
        the decision already made on them and the store as it still is."""
        if demand is None:
            demand = self._read_demand()
        # A stale queued job whose re-read failed is no demand until GitHub confirms it.
        jobs = [job for job in demand.jobs if job.id not in self._unconfirmed]
        decision = decided if decided is not None else self._decide(jobs)
        self.last_decision = decision
        self._jobs = jobs
        self._job_counts = _counted_without(demand, self._unconfirmed)
        self._record_matching(jobs, decision)
        planned: list[Planned] = []
        for pool_decision in decision.pools.values():
            pool = self.pools[pool_decision.pool]
            if pool_decision.create or pool_decision.remove or pool_decision.held_back:
                log.info("pool %s: %s", pool.name, pool_decision.reason)
            groups = pool_decision.create_labels or (frozenset(),) * len(pool_decision.create_on)
            for key, extra in zip(pool_decision.create_on, groups, strict=True):
                planned.append((pool, self.targets[key], pool.runner_labels(extra)))
        self.actions.plan_runners(planned)  # every creation in one write
        for pool_decision in decision.pools.values():
            self.workers[pool_decision.pool].publish(pool_decision)
        if self.reconciled_at is None:
            self.reconciled_at = self.clock.now()
        return decision

    def _decide(self, jobs: list[Job]) -> Decision:
        """The pure scaler on ``jobs`` and the runners the store holds now."""
        now = self.clock.now()
        return decide(
            # The min_idle in force now: a warm window's count, or the base.
            [pool.spec_at(now) for pool in self.pools.values()],
            jobs,
            # Only read (the scaler is pure): the rows as kept, not copies.
            self.store.runners(states=list(LIVE_RUNNER_STATES), shared=True),
            now,
            targets=list(self.targets.values()),
            backoff={pool.name: pool.backoff_until for pool in self.pools.values()},
            spent={name: self.spend.today(name, now) for name in self.pools},
        )

    async def confirm_stale_demand(self) -> tuple[Demand | None, Decision | None]:
        """Before a runner is created or kept for a job queued longer than ``queued_recheck``
        since GitHub last said so, ask GitHub again (a conditional request: free when
        unchanged). A job that finished meanwhile (a lost webhook, a poll that failed) would
        otherwise boot a runner that idles until its timeout.

        Only where it matters, so a long queue costs nothing: per pool, the oldest stale jobs
        up to the runners the scaler would create plus the idle ones it keeps. A job whose
        re-read fails counts as no demand until a later re-read or poll confirms it, unless its
        state is unknown rather than stale, and it then stays demand as it was known: the last
        poll could not read its repository either, or GitHub's rate limit holds the re-read.
        The step never waits for a rate limit: a re-read that would wait for a paused or spent
        budget (:meth:`~runnerscale.protocols.GitHubAPI.call_wait`; up to an hour) is not
        made, and one GitHub refuses with a rate limit (``retry_after``) is not held against
        the job. Both are asked again at a later reconcile.

        Returns the jobs it read, and the decision it made on them (None: it needed none),
        when it re-read no job: the store is as it read it (nothing was awaited), so the
        decision needs neither read nor decide again. Else ``(None, None)``."""
        now = self.clock.now()
        stale_after = self.settings.queued_recheck
        self._unconfirmed.clear()
        demand = self._read_demand()
        jobs = demand.jobs
        if not any(
            job.state is JobState.QUEUED and now - job.observed_at >= stale_after for job in jobs
        ):
            return demand, None  # nothing stale: no need to know what the decision would serve
        decision = self._decide(jobs)
        reread = False
        idle = Counter(
            {pool: n for (pool, _), n in self.store.count_runners([RunnerState.IDLE]).items()}
        )
        for pool in decision.pools.values():
            room = pool.create + idle[pool.pool]
            if not room or self.pools[pool.pool].scale_set is not None:
                continue  # (a scale-set pool's demand is its assigned count, not its jobs)
            stale = sorted(
                (
                    job
                    for job in jobs
                    if job.state is JobState.QUEUED
                    and decision.job_pools.get(job.id) == pool.pool
                    and now - job.observed_at >= stale_after
                ),
                key=lambda job: (job.created_at, job.id),
            )
            for job in stale[:room]:
                if self._reread_held(job):
                    continue  # unknown, not stale: stays demand
                reread = True
                try:
                    await self._reread(job)
                except GitHubError as error:
                    log.warning("job %s of %s: re-reading it failed: %s", job.id, job.repo, error)
                    if error.retry_after is None and job.repo.lower() not in self._unread_repos:
                        self._unconfirmed.add(job.id)
        return (None, None) if reread else (demand, decision)

    def _reread_held(self, job: Job) -> bool:
        """Whether re-reading ``job`` now would wait for a paused or spent rate limit (up to
        an hour): the loop asking does not wait, and asks again at its next cycle."""
        return self.github.call_wait("get-job", Target("repo", job.repo)) > 0

    async def _reread(self, job: Job) -> None:
        """Ask GitHub for one job and take its answer (gone: it needs nothing any more)."""
        current = await self.github.get_job(job.repo, job.id)
        if current is None:
            # Deleted (for example with its repository).
            current = ObservedJob(
                id=job.id,
                repo=job.repo,
                labels=job.labels,
                state=JobState.COMPLETED,
                created_at=job.created_at,
                conclusion="cancelled",
            )
        self.observe(current)

    def _decision(self) -> Decision:
        assert self.last_decision is not None
        return self.last_decision

    def _slot_freed(self) -> None:
        self._freed += 1
        self.kick()

    def _worker_failed(self, error: BaseException) -> None:
        """An unexpected error in a worker's task (already logged with its traceback)."""
        self.count_failure("worker")

    def _record_matching(self, jobs: list[Job], decision: Decision) -> None:
        """Write the pool the scaler chose for each job (part of writing the decision: the
        poll's re-checks and the queue-wait metric read it); report unmatched jobs once."""
        changed: dict[int, str | None] = {}
        for job in jobs:
            pool = decision.job_pools.get(job.id)
            if job.id in decision.job_pools and job.pool != pool:
                changed[job.id] = pool
        self.store.set_job_pools(changed)  # one transaction, however many changed
        for job_id in decision.unmatched:
            if job_id not in self._reported_unmatched:
                self._reported_unmatched.add(job_id)
                job = next(j for j in jobs if j.id == job_id)
                # The repository and labels are GitHub's input: escaped and capped.
                log.warning(
                    "job %s of %s (runs-on %s) matches no pool: not provisioning for it (%s)",
                    job.id,
                    untrusted(job.repo),
                    untrusted(", ".join(job.labels)),
                    untrusted(self.unmatched_reason(job.labels)),
                )

    def unmatched_reason(self, labels: tuple[str, ...]) -> str:
        # The pools as decided on: those over several hosts with their live nodes now.
        now = self.clock.now()
        return explain_unmatched([pool.spec_at(now) for pool in self.pools.values()], labels)

    def _draining(self, pool: PoolRuntime) -> list[DrainingRunner]:
        """The pool's live runners whose instance drains, by name."""
        found = (self.store.get_runner(name) for name in sorted(pool.draining))
        return [
            DrainingRunner(r.name, r.state.value, pool.draining[r.name])
            for r in found
            if r is not None and r.pool == pool.name and r.state.live
        ]

    def _refresh_status(self, decision: Decision) -> None:
        """The status after a decision. Its runner counts come counted from the store (not
        every live runner read only to be counted); the draining ones are read by name."""
        jobs = self._jobs
        now = self.clock.now()
        counts = self.store.count_runners(LIVE_RUNNER_STATES)
        pools = []
        for pool in self.pools.values():
            by_state = Counter(
                {state: count for (name, state), count in counts.items() if name == pool.name}
            )
            pool_decision = decision.pools.get(pool.name)
            pools.append(
                PoolStatus(
                    name=pool.name,
                    max_runners=pool.spec.max_runners,
                    min_idle=pool.spec_at(now).min_idle,
                    desired=pool_decision.desired if pool_decision else 0,
                    booting=by_state[RunnerState.PENDING]
                    + by_state[RunnerState.CREATING]
                    + by_state[RunnerState.BOOTING],
                    idle=by_state[RunnerState.IDLE],
                    busy=by_state[RunnerState.BUSY],
                    queued=pool_decision.queued if pool_decision else 0,
                    healthy=pool.healthy,
                    last_error=pool.last_error,
                    capped_by=pool.capped_by,
                    # (a pool waiting for its host's labels keeps none, window or not)
                    warm=pool.min_idle_at(now) if pool.spec.ready else None,
                    reason=pool_decision.reason if pool_decision else "",
                    nodes=node_statuses(pool.placement()),
                    draining=self._draining(pool),
                    held_back=pool_decision.held_back if pool_decision else 0,
                    held_back_by=pool_decision.held_back_by if pool_decision else "",
                    waiting=self.workers[pool.name].waiting(),
                    spend_today=self.spend.today(pool.name, now),
                    cost_total=self.spend.total(pool.name),
                    budget_per_day=pool.spec.budget_per_day,
                    scale_set=scale_set_status(pool.scale_set),
                    drain=drain_status(pool, by_state),
                )
            )
        shown = set(decision.unmatched[:UNMATCHED_SHOWN])
        by_id = {job.id: job for job in jobs if job.id in shown} if shown else {}
        unmatched = [
            UnmatchedJob(
                id=job.id,
                repo=job.repo,
                labels=tuple(job.labels),
                reason=self.unmatched_reason(tuple(job.labels)),
            )
            for job in (by_id[job_id] for job_id in decision.unmatched[:UNMATCHED_SHOWN])
        ]
        self.status = Status(
            pools=pools,
            unmatched_jobs=len(decision.unmatched),
            unmatched=unmatched,
            queued=_oldest_queued(jobs, decision),
            queue_waits=list(self._waits),
            jobs=dict(self._job_counts),
            cleaned=dict(self.janitor.cleaned),
            lost_jobs=self.reruns.shown(),
            updated_at=now,
        )
        self.actions.events.refreshed()

    # ------------------------------------------------------------------ manual scaling

    async def scale_up(self, pool_name: str, count: int) -> list[str]:
        """Start ``count`` runners now, whatever the demand, up to the cap; on a pool over
        several hosts, in the node groups with free slots, as the scaler counts them
        (:func:`~runnerscale.scaler.manual_runners`). :class:`ScaleUpRefusedError` when no node
        of such a pool is up, or when its budget for today is spent."""
        pool = self.pools[pool_name]
        if pool.drained is not None:
            raise ScaleUpRefusedError(
                f"pool {pool_name} is drained: it starts no runner; runnerscale pools resume "
                f"{pool_name} puts it back in service"
            )
        now = self.clock.now()
        spec = pool.spec_at(now)
        spent = self.spend.today(pool_name, now)
        if budget_reached(spec, spent):
            raise ScaleUpRefusedError(
                f"pool {pool_name}: ${spent:.2f} spent today, its budget of "
                f"${spec.budget_per_day:.2f} a day is reached: it launches nothing new until "
                f"{until_next_utc_day(now)}; raise budget.per_day and reload the "
                "configuration to launch more today"
            )
        if spec.groups is not None and not spec.live_groups():
            down = sorted(name for group in spec.groups for name in group.down)
            raise ScaleUpRefusedError(
                f"pool {pool_name}: no node is up"
                + (f" (down: {', '.join(down)})" if down else "")
                + ", so no runner can be started now; runnerscale status says why each node "
                "is down"
            )
        runners = self.store.runners(pool=pool_name, states=list(LIVE_RUNNER_STATES))
        groups = manual_runners(spec, runners, count)
        target = (
            self.targets[spec.target]
            if spec.target is not None
            else next(iter(self.targets.values()))
        )
        planned = [
            self.actions.plan_runner(pool, target, pool.runner_labels(extra)) for extra in groups
        ]
        # The pool's worker starts them (it alone starts ``pending`` runners of its pool).
        started = await self.workers[pool_name].start(runner.name for runner in planned)
        return [runner.name for runner in started if runner is not None]

    async def scale_down(
        self, pool_name: str | None = None, runner_name: str | None = None
    ) -> list[str]:
        """Remove idle runners now (all of a pool's, or one by name); busy ones are kept."""
        if runner_name is not None:
            runner = self.store.get_runner(runner_name)
            if runner is None or not runner.state.live:
                raise KeyError(runner_name)
            candidates = [runner]
        else:
            candidates = self.store.runners(
                pool=pool_name, states=[RunnerState.IDLE, RunnerState.BOOTING]
            )
        removed = []
        for runner in candidates:
            if runner.state in (RunnerState.BUSY, RunnerState.FINISHED, RunnerState.DELETING):
                continue
            if await self.actions.remove_runner(runner, "removed by an operator", "operator"):
                removed.append(runner.name)
        return removed

    # ------------------------------------------------------------------ out of service

    async def drain_pool(self, pool_name: str) -> DrainReport:
        """Take the pool out of service (:mod:`~runnerscale.controller.pooldrain`): it starts
        no runner, its runners without a job are removed now, busy ones finish their job; its
        backend is swept once it holds none. ``KeyError`` for an unknown pool."""
        report = await take_out(self.actions, self.pools[pool_name])
        self.kick()
        return report

    def resume_pool(self, pool_name: str) -> bool:
        """Put a drained pool back in service (False: it was not drained). ``KeyError`` for
        an unknown pool."""
        resumed = put_back(self.store, self.pools[pool_name])
        self.kick()
        return resumed
