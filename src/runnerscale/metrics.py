"""Prometheus metrics, on a registry of the daemon's own (so tests can run several daemons).

Gauges are read from the controller's status when Prometheus scrapes (a custom collector), so
they are never stale and never need updating from the loops; counters and histograms are fed by
the controller's event hooks (:class:`~runnerscale.controller.actions.Events`), called where
the controller learns each fact, and by the HTTP server for webhook deliveries. Nothing here
decides anything, and the controller never touches a metric. ``docs/metrics.md`` documents
every family; a test holds the live ``/metrics`` to it.

Label values are pool names, loop and operation names, the short kinds the hooks declare,
the configured addresses of a pool's hosts (nodes of a backend over several), and GitHub
credential names (``token``, ``app``, an installation's number): never a token, a
URL with credentials, a JIT configuration, nor anything unbounded (no job, runner or
repository names). Every family a pool or a kind labels is created for each configured pool
and each kind at start, at zero: an alert on ``increase()`` then sees the first failure (a
series born at 1 shows no increase), and a dashboard shows 0 rather than nothing.

A backend counts events of its own (``BackendContext.record``: a launch and its outcome, say)
through :meth:`Metrics.backend_recorder`. Their words are the backend's, so they are held to
the shape of a fixed word (:data:`BACKEND_WORD`: lower case, digits and ``_``, no id, no
name) and to a few pairs per pool (:data:`BACKEND_PAIRS_CAP`): what breaks either is not
counted, and said once in the log. The pairs a backend declares (``Backend.events``) start at
zero like the kinds above.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerscale.controller.actions import (
    CleanupKind,
    ErrorKind,
    Events,
    LoopName,
    RemovalReason,
    ScaleOperation,
    WaitingFor,
)
from runnerscale.controller.loops import PoolStatus, Status
from runnerscale.github.budget import Budgets
from runnerscale.instancemeta import MetadataRoute
from runnerscale.instancemeta import Outcome as MetadataOutcome
from runnerscale.scaler import HeldBackBy

# The ``*_created`` samples prometheus_client adds to every counter and histogram would show
# up in Prometheus as series of their own (``runnerscale_errors_created``, ...), undocumented
# and of no use here: Prometheus notices counter resets by itself.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in prometheus_client)

#: Queue wait buckets: seconds from a job being queued to a runner starting it.
QUEUE_WAIT_BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
#: Runner startup buckets: seconds from the decision to create a runner to it being online.
STARTUP_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
#: Job run time buckets: seconds from a job starting to it ending (GitHub's times).
JOB_RUN_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600)
#: Loop tick buckets: seconds one cycle of a loop takes.
TICK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: What became of a webhook delivery (``runnerscale_webhook_deliveries_total{outcome}``).
WebhookOutcome = Literal[
    "accepted",  # a job of a target: handed to the controller
    "duplicate",  # the same X-GitHub-Delivery again
    "not_a_target",  # a repository outside every target
    "ignored_event",  # signed, but not a workflow_job (ping included)
    "bad_signature",  # missing or wrong X-Hub-Signature-256
    "too_large",  # over GitHub's 25 MB
    "invalid",  # holds what GitHub never sends (400)
    "failed",  # our own failure (500: see the log)
    "disabled",  # no github.webhook_secret: webhooks are refused
]
log = logging.getLogger("runnerscale.metrics")

#: What a backend's event and outcome words look like (``BackendContext.record``): a fixed
#: word of its own, never an instance id, a name or anything unbounded.
BACKEND_WORD = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: The (event, outcome) pairs one pool's backend may count: label values must stay few.
BACKEND_PAIRS_CAP = 64

#: The pool label of jobs no pool serves, in the job histograms.
UNMATCHED = "unmatched"
#: The runner states the runner-seconds counter splits a pool's time into.
RUNNER_TIME_STATES = ("booting", "idle", "busy")


def booting_created(pool: PoolStatus) -> int:
    """The pool's booting runners whose creation has begun: those waiting to be created
    (GitHub's registration budget, a creation slot: ``pending`` rows counted in ``booting``)
    are left out, as they have no instance yet, cost nothing and can take no job."""
    return max(0, pool.booting - sum(pool.waiting.values()))


def runner_time_counts(pool: PoolStatus) -> dict[str, int]:
    """The pool's runners by the state their time is counted in (:data:`RUNNER_TIME_STATES`):
    a runner costs from when its creation begins, not while it waits for it, so a wait of
    minutes for GitHub's registration budget adds nothing to the cost panels."""
    return {"booting": booting_created(pool), "idle": pool.idle, "busy": pool.busy}


def busy_ratio(pool: PoolStatus) -> float:
    """The share of the pool's runners (booting, idle or busy) that run a job; 0 with none.

    Runners waiting to be created are left out (:func:`booting_created`): counting them
    would pull the ratio down during a budget wait while every runner the pool has is busy."""
    runners = sum(runner_time_counts(pool).values())
    return pool.busy / runners if runners else 0.0


#: Pool gauges read from the status: (name, help, the figure of a pool's status).
_POOL_GAUGES: tuple[tuple[str, str, Callable[[PoolStatus], float]], ...] = (
    (
        "runnerscale_pool_desired_runners",
        "Runners the scaler wants in the pool",
        lambda pool: pool.desired,
    ),
    (
        "runnerscale_pool_booting_runners",
        "Runners decided on, being created or booting",
        lambda pool: pool.booting,
    ),
    ("runnerscale_pool_idle_runners", "Runners online without a job", lambda pool: pool.idle),
    ("runnerscale_pool_busy_runners", "Runners running a job", lambda pool: pool.busy),
    ("runnerscale_pool_queued_jobs", "Queued jobs the pool serves", lambda pool: pool.queued),
    (
        "runnerscale_pool_draining_runners",
        "Runners whose instance drains (a spot interruption notice): they take no new job",
        lambda pool: len(pool.draining),
    ),
    (
        "runnerscale_pool_max_runners",
        "The pool's cap (max_runners, or its host's capacity when lower)",
        lambda pool: pool.max_runners,
    ),
    (
        "runnerscale_pool_min_idle_runners",
        "Idle runners the pool keeps (min_idle)",
        lambda pool: pool.min_idle,
    ),
    (
        "runnerscale_pool_busy_ratio",
        "Busy runners over the pool's runners (booting, idle, busy; not those waiting to be "
        "created); 0 with none",
        busy_ratio,
    ),
    (
        "runnerscale_pool_drained",
        "1 while an operator holds the pool out of service (runnerscale pools drain)",
        lambda pool: 0.0 if pool.drain is None else 1.0,
    ),
    (
        "runnerscale_pool_healthy",
        "1 when the pool's backend works",
        lambda pool: 1.0 if pool.healthy else 0.0,
    ),
)


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], Status], budget: Callable[[], Budgets | None]) -> None:
        self._status = status
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        for name, doc, figure in _POOL_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["pool"])
            for pool in status.pools:
                family.add_metric([pool.name], figure(pool))
            yield family
        yield from _node_families(status)
        yield _waiting_family(status)
        yield from _spend_families(status)
        yield from _scale_set_families(status)
        yield GaugeMetricFamily(
            "runnerscale_unmatched_jobs",
            "Queued jobs no pool can serve",
            value=status.unmatched_jobs,
        )
        budget = self._budget()
        if budget is not None:
            yield from _budget_families(budget)


def _node_families(status: Status) -> Iterator[Metric]:
    """The hosts of pools over several (a placing backend's nodes): whether each is up, and
    its slots. Node names are the configured addresses: as few as the pools' hosts."""
    up = GaugeMetricFamily(
        "runnerscale_node_up",
        "1 while a host of a pool over several answers, 0 while it is down",
        labels=["pool", "node"],
    )
    slots = GaugeMetricFamily(
        "runnerscale_node_slots",
        "Runners a host of a pool over several may hold",
        labels=["pool", "node"],
    )
    for pool in status.pools:
        for node in pool.nodes or ():
            up.add_metric([pool.name, node.name], 1.0 if node.up else 0.0)
            slots.add_metric([pool.name, node.name], node.slots)
    yield up
    yield slots


def _waiting_family(status: Status) -> Metric:
    """Each pool's ``pending`` runners whose creation has not begun, by what they wait for
    (every kind, 0 included, so a dashboard sees the series from the start)."""
    waiting = GaugeMetricFamily(
        "runnerscale_pool_waiting_runners",
        "Runners decided on whose creation has not begun: they wait for GitHub's runner "
        "registration budget, or for a free creation slot",
        labels=["pool", "reason"],
    )
    for pool in status.pools:
        for reason in get_args(WaitingFor):
            waiting.add_metric([pool.name, reason], pool.waiting.get(reason, 0))
    return waiting


def _spend_families(status: Status) -> Iterator[Metric]:
    """What each pool's instances cost (from the prices its backend lists), its budget, and
    the runners held back (by the budget or the failure backoff) while jobs wait."""
    cost = CounterMetricFamily(
        "runnerscale_pool_cost_dollars",
        "US dollars the pool's instances cost, from the prices its backend lists",
        labels=["pool"],
    )
    today = GaugeMetricFamily(
        "runnerscale_pool_spend_today_dollars",
        "US dollars the pool's instances cost today (since 00:00 UTC)",
        labels=["pool"],
    )
    budget = GaugeMetricFamily(
        "runnerscale_pool_budget_per_day_dollars",
        "The pool's budget.per_day: it launches nothing new once today's spend reaches it",
        labels=["pool"],
    )
    held = GaugeMetricFamily(
        "runnerscale_pool_held_back_runners",
        "Runners the pool would create now for its queued jobs (or min_idle), held back",
        labels=["pool", "reason"],
    )
    for pool in status.pools:
        cost.add_metric([pool.name], pool.cost_total)
        today.add_metric([pool.name], pool.spend_today)
        if pool.budget_per_day is not None:
            budget.add_metric([pool.name], pool.budget_per_day)
        for reason in get_args(HeldBackBy):
            held.add_metric(
                [pool.name, reason], pool.held_back if pool.held_back_by == reason else 0
            )
    yield from (cost, today, budget, held)


def _by_operation(name: str, doc: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["operation"])
    for operation, count in sorted(counts.items()):
        family.add_metric([operation], count)
    return family


def _scale_set_families(status: Status) -> Iterator[Metric]:
    """Each scale-set pool's demand: the jobs GitHub assigned to its scale set."""
    assigned = GaugeMetricFamily(
        "runnerscale_scale_set_assigned_jobs",
        "Jobs assigned to the scale-set pool's scale set, waiting or running (its demand)",
        labels=["pool"],
    )
    for pool in status.pools:
        if pool.scale_set is not None:
            assigned.add_metric([pool.name], pool.scale_set.assigned_jobs)
    yield assigned


def _budget_families(budget: Budgets) -> Iterator[Metric]:
    """GitHub's rate-limit buckets per credential and resource, and our own call counts."""
    per_bucket = {
        "limit": "Requests allowed in GitHub's rate-limit window, per credential",
        "remaining": "Requests left in GitHub's current rate-limit window, per credential",
        "used": "Requests used in GitHub's current rate-limit window, per credential",
    }
    for field, doc in per_bucket.items():
        family = GaugeMetricFamily(
            f"runnerscale_github_rate_limit_{field}", doc, labels=["credential", "resource"]
        )
        for credential, one in sorted(budget.by_credential.items()):
            for resource, bucket in sorted(one.resources.items()):
                family.add_metric([credential, resource], getattr(bucket, field))
        yield family
    yield _by_operation(
        "runnerscale_github_api_calls", "GitHub API calls made, by operation", budget.calls
    )
    yield _by_operation(
        "runnerscale_github_actions_service_calls",
        "Calls to GitHub's Actions service (runner scale sets), by operation; not REST calls",
        budget.actions_service_calls,
    )
    charged = CounterMetricFamily(
        "runnerscale_github_charged_calls",
        "GitHub API calls charged to each rate-limit resource (304s are free)",
        labels=["credential", "resource"],
    )
    for credential, one in sorted(budget.by_credential.items()):
        for resource, count in one.charged_by_resource().items():
            charged.add_metric([credential, resource], count)
    yield charged
    yield CounterMetricFamily(
        "runnerscale_github_not_modified",
        "Conditional GitHub requests answered 304 (not counted by GitHub)",
        value=budget.not_modified,
    )
    yield GaugeMetricFamily(
        "runnerscale_github_poll_interval_seconds",
        "The current poll interval (stretched when the rate-limit budget runs low)",
        value=budget.interval,
    )
    paused = GaugeMetricFamily(
        "runnerscale_github_paused_seconds",
        "Seconds left of a pause GitHub asked for (retry-after, secondary limit); 0: none",
        labels=["credential", "resource"],
    )
    for credential, one in sorted(budget.by_credential.items()):
        for resource in sorted(set(one.resources) | set(one.pauses)):
            paused.add_metric([credential, resource], one.pause_remaining(resource))
    yield paused


class Metrics:
    def __init__(
        self,
        status: Callable[[], Status],
        budget: Callable[[], Budgets | None],
        pools: Iterable[str] = (),
        backend_events: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        *,
        scale_sets: bool = False,
    ) -> None:
        """``pools``: the configured pools, whose series start at zero. ``backend_events``:
        per pool, the events its backend declares and their outcomes (started at zero too).
        ``scale_sets``: some pool is a scale-set pool, so its listener's loop (``scaleset``)
        runs and that loop's failures start at zero too (without one it never runs)."""
        self._status = status
        self.registry = CollectorRegistry()
        counter = self._counter
        self.scale_operations = counter(
            "runnerscale_scale_operations",
            "Runners created or removed (counted when done)",
            "pool",
            "operation",
        )
        self.removals = counter(
            "runnerscale_runner_removals",
            "Runners taken out of service, by reason (counted when their removal begins)",
            "pool",
            "reason",
        )
        self.errors = counter("runnerscale_errors", "Failed operations by kind", "pool", "kind")
        self.cleanups = counter(
            "runnerscale_cleanups", "Things the janitor cleaned up, by kind", "pool", "kind"
        )
        self.reruns = counter(
            "runnerscale_jobs_rerun", "Jobs re-run because their runner died mid-job", "pool"
        )
        self.runner_seconds = counter(
            "runnerscale_runner_seconds",
            "Seconds the pool's runners spent booting (from their creation's start, not while "
            "they wait for it), idle or busy (cost = these x price)",
            "pool",
            "state",
        )
        self.poll_repository_errors = counter(
            "runnerscale_poll_repository_errors",
            "Repositories a GitHub poll left unread (a read failed): their jobs are unknown "
            "until a poll reads them",
        )
        self.loop_errors = counter(
            "runnerscale_loop_errors",
            "Failed cycles of the controller's loops (an error escaped the cycle; the loop "
            "goes on after its backoff)",
            "loop",
        )
        self.webhook_deliveries = counter(
            "runnerscale_webhook_deliveries",
            "Webhook deliveries received, by what became of them",
            "outcome",
        )
        self.instance_requests = counter(
            "runnerscale_instance_requests",
            "Requests of instances to the metadata and callback endpoints, by route and outcome",
            "route",
            "outcome",
        )
        self.backend_events = counter(
            "runnerscale_backend_events",
            "A backend's own events by outcome (launch attempts, capacity errors, ...)",
            "pool",
            "event",
            "outcome",
        )
        #: Per pool, the (event, outcome) pairs its backend counted (held to the cap).
        self._backend_pairs: dict[str, set[tuple[str, str]]] = {}
        #: Pools whose backend was told off in the log already (said once each).
        self._backend_refused: set[str] = set()
        histogram = self._histogram
        self.queue_wait = histogram(
            "runnerscale_job_queue_wait_seconds",
            "Seconds from a job being queued to a runner starting it",
            "pool",
            QUEUE_WAIT_BUCKETS,
        )
        self.job_run = histogram(
            "runnerscale_job_run_seconds",
            "Seconds a job ran, from starting to ending",
            "pool",
            JOB_RUN_BUCKETS,
        )
        self.startup = histogram(
            "runnerscale_runner_startup_seconds",
            "Seconds from deciding to create a runner to it being online in GitHub",
            "pool",
            STARTUP_BUCKETS,
        )
        self.tick = histogram(
            "runnerscale_loop_tick_seconds",
            "Seconds one cycle of a controller loop takes",
            "loop",
            TICK_BUCKETS,
        )
        #: The status the runner-seconds were last counted up to.
        self._counted: Status | None = None
        self.registry.register(_StatusCollector(status, budget))
        self._start_at_zero(list(pools), scale_sets=scale_sets)
        for pool, events in (backend_events or {}).items():
            for event, outcomes in events.items():
                for outcome in outcomes:
                    self._backend_pair(pool, event, outcome)

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, label: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, [label], buckets=buckets, registry=self.registry)

    def _start_at_zero(self, pools: list[str], *, scale_sets: bool) -> None:
        """Create the series of every configured pool and every kind, at zero."""
        for outcome in get_args(WebhookOutcome):
            self.webhook_deliveries.labels(outcome)
        for loop in get_args(LoopName):
            if scale_sets or loop != "scaleset":
                self.loop_errors.labels(loop)
        for route in get_args(MetadataRoute):
            # Every route can answer these two; an alert on refused tokens sees the first one.
            for answer in ("ok", "unauthorized"):
                self.instance_requests.labels(route, answer)
        for pool in pools:
            for operation in get_args(ScaleOperation):
                self.scale_operations.labels(pool, operation)
            for reason in get_args(RemovalReason):
                self.removals.labels(pool, reason)
            for kind in get_args(ErrorKind):
                self.errors.labels(pool, kind)
            for cleanup in get_args(CleanupKind):
                self.cleanups.labels(pool, cleanup)
            for state in RUNNER_TIME_STATES:
                self.runner_seconds.labels(pool, state)
            self.reruns.labels(pool)
            for histogram in (self.queue_wait, self.job_run, self.startup):
                histogram.labels(pool)

    def events(self) -> Events:
        return Events(
            scaled=lambda pool, operation: self.scale_operations.labels(pool, operation).inc(),
            error=lambda pool, kind: self.errors.labels(pool, kind).inc(),
            cleaned=lambda pool, kind: self.cleanups.labels(pool, kind).inc(),
            rerun=lambda pool: self.reruns.labels(pool).inc(),
            removing=lambda pool, reason: self.removals.labels(pool, reason).inc(),
            online=lambda pool, seconds: self.startup.labels(pool).observe(seconds),
            job_ran=lambda pool, seconds: self.job_run.labels(pool or UNMATCHED).observe(seconds),
            tick=lambda loop, seconds: self.tick.labels(loop).observe(seconds),
            refreshed=self.count_runner_time,
            unread=self.poll_repository_errors.inc,
            failed=lambda loop: self.loop_errors.labels(loop).inc(),
        )

    def backend_recorder(self, pool: str) -> Callable[[str, str], None]:
        """What the daemon hands ``pool``'s backend as ``BackendContext.record``: counts one
        event by outcome in ``runnerscale_backend_events_total``."""

        def record(event: str, outcome: str) -> None:
            if self._backend_pair(pool, event, outcome):
                self.backend_events.labels(pool, event, outcome).inc()

        return record

    def _backend_pair(self, pool: str, event: str, outcome: str) -> bool:
        """Whether a backend's event and outcome may label a series (created at zero when
        new); False, said once per pool, when they are no fixed words or too many."""
        pairs = self._backend_pairs.setdefault(pool, set())
        if (event, outcome) in pairs:
            return True
        words = all(BACKEND_WORD.fullmatch(word) for word in (event, outcome))
        if words and len(pairs) < BACKEND_PAIRS_CAP:
            pairs.add((event, outcome))
            self.backend_events.labels(pool, event, outcome)
            return True
        if pool not in self._backend_refused:
            self._backend_refused.add(pool)
            # The words themselves are not logged: they may be anything (an id, a name).
            log.warning(
                "pool %s: its backend counted an event %s: not counted (said once)",
                pool,
                f"beyond the {BACKEND_PAIRS_CAP} kinds a pool may have"
                if words
                else "whose event or outcome is no short fixed word ([a-z][a-z0-9_]*)",
            )
        return False

    def job_started(self, pool: str, wait_seconds: float) -> None:
        self.queue_wait.labels(pool or UNMATCHED).observe(wait_seconds)

    def webhook_delivered(self, outcome: WebhookOutcome) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def instance_request(self, route: MetadataRoute, outcome: MetadataOutcome) -> None:
        """An instance's request to the metadata or callback endpoints (both fixed words)."""
        self.instance_requests.labels(route, outcome).inc()

    def count_runner_time(self) -> None:
        """The controller's status was recomputed: count the time since the last one at the
        runner counts of the last one (they held until now). The status is recomputed at every
        reconcile (every few seconds, and on every event), so each runner's time is counted to
        within one reconcile interval."""
        status = self._status()
        last, self._counted = self._counted, status
        if last is None:
            return
        elapsed = max(0.0, status.updated_at - last.updated_at)
        for pool in last.pools:
            for state, runners in runner_time_counts(pool).items():
                if runners:
                    self.runner_seconds.labels(pool.name, state).inc(runners * elapsed)

    def render(self) -> bytes:
        return generate_latest(self.registry)
