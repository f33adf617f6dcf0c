"""Domain types of the autoscaler, and label matching. Pure: no I/O, no clock, no SDK.

Everything else speaks in these terms: the store persists them, the scaler decides on them, the
controller moves them through their lifecycles, GitHub and the backends are translated into them
at the edges.

Runner lifecycle (``RunnerState``)::

    pending -> creating -> booting -> idle -> busy -> finished -> deleting -> gone
                  |           |         |                            ^
                  +-> failed  +---------+--(timeout / scale-down)----+

Each state is written to the store *before* the side effect that leaves it (a JIT config is
requested only for a ``pending`` runner, an instance is created only for a ``creating`` one, an
instance is removed only for a ``deleting`` one), so a crash between the write and the effect is
repaired on start. Job states only move forward: ``waiting -> queued -> in_progress ->
completed``; duplicate and out-of-order observations are harmless.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

#: Runners a pool creates at once by default (its ``create_concurrency``): GitHub asks for
#: modest concurrency, and the GitHub client caps its requests in flight anyway.
CREATE_CONCURRENCY = 8
#: The most a pool may create at once (the GitHub client's requests in flight are capped below
#: that; a higher figure would only queue there).
MAX_CREATE_CONCURRENCY = 64


class RunnerState(StrEnum):
    PENDING = "pending"  # decided; nothing asked of GitHub or the backend yet
    CREATING = "creating"  # JIT config obtained (runner registered), instance being created
    BOOTING = "booting"  # instance exists; waiting for the runner to come online
    IDLE = "idle"  # online in GitHub, no job
    BUSY = "busy"  # running a job
    FINISHED = "finished"  # its one job is done (ephemeral); instance to be reaped
    DELETING = "deleting"  # being removed from GitHub and the backend
    GONE = "gone"  # nothing left anywhere
    FAILED = "failed"  # creation failed; retried with backoff, then given up

    @property
    def live(self) -> bool:
        """Counts against the pool's cap: it exists or is about to."""
        return self in _LIVE

    @property
    def free(self) -> bool:
        """Able to take a job now or soon (on the way or idle)."""
        return self in _FREE


_LIVE = frozenset(
    {
        RunnerState.PENDING,
        RunnerState.CREATING,
        RunnerState.BOOTING,
        RunnerState.IDLE,
        RunnerState.BUSY,
        RunnerState.FINISHED,
        RunnerState.DELETING,
    }
)
_FREE = frozenset(
    {RunnerState.PENDING, RunnerState.CREATING, RunnerState.BOOTING, RunnerState.IDLE}
)


class JobState(StrEnum):
    WAITING = "waiting"  # waits on an environment approval: needs no runner yet
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"

    @property
    def rank(self) -> int:
        return _JOB_RANK[self]

    def can_become(self, other: JobState) -> bool:
        """Jobs only move forward (a duplicate or stale observation never moves one back)."""
        return other.rank > self.rank


_JOB_RANK = {
    JobState.WAITING: 0,
    JobState.QUEUED: 1,
    JobState.IN_PROGRESS: 2,
    JobState.COMPLETED: 3,
}

#: Job states that still need or hold a runner (a completed job is history).
ACTIVE_JOB_STATES = (JobState.WAITING, JobState.QUEUED, JobState.IN_PROGRESS)
#: Runner states that count (``RunnerState.live``: ``gone`` and ``failed`` runners are history).
LIVE_RUNNER_STATES = tuple(state for state in RunnerState if state.live)


def normalize_labels(labels: Iterable[str]) -> frozenset[str]:
    """Labels compare case-insensitively, as GitHub routes them."""
    return frozenset(label.strip().lower() for label in labels if label.strip())


def labels_beyond(labels: Iterable[str], pool_labels: Iterable[str]) -> frozenset[str]:
    """The labels of a node (or of a runner) of a pool over several hosts beyond the pool's
    own, normalised: what sets its node group apart. The scaler, the controller and a placing
    backend all count with this one function, so a node that repeats a pool label (``labels:
    [docker]`` on a node of a pool labelled ``docker``) is a plain node to each of them."""
    return normalize_labels(labels) - normalize_labels(pool_labels)


@dataclass(frozen=True)
class Target:
    """Where runners register: a repository (``owner/name``), an organisation or an enterprise."""

    kind: str  # "repo", "org" or "enterprise"
    name: str
    runner_group: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}".lower()

    def covers(self, repo: str) -> bool:
        """Whether a job of ``repo`` (``owner/name``) can be served by runners of this target."""
        if self.kind == "repo":
            return repo.lower() == self.name.lower()
        if self.kind == "org":
            return repo.lower().partition("/")[0] == self.name.lower()
        return True  # an enterprise covers its organisations


def narrowest(labels: frozenset[str]) -> tuple[int, list[str]]:
    """Sort key of label sets: fewest labels first, then by their sorted names."""
    return len(labels), sorted(labels)


@dataclass(frozen=True)
class LabelGroup:
    """The nodes of a pool over several hosts that offer the same labels beyond the pool's.

    Why groups, not nodes: the scaler decides how many runners to start with which labels; the
    backend picks the node of the group (by its spread or pack policy), as the
    :class:`~runnerscale.protocols.PlacingProvider` contract says. A runner registered with the
    pool's labels plus a group's ``extra_labels`` lands on a node of that group, so counting
    the room per group is counting it where the runners go."""

    #: The nodes' own labels beyond the pool's, lower-case (empty: plain nodes).
    extra_labels: frozenset[str]
    #: Runners its up nodes may hold together (0: none of them is up: it takes no job).
    slots: int
    #: Its nodes that are down now (named where a job waits for them).
    down: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Whether it can take a runner: some node of it is up and has slots."""
        return self.slots > 0


#: Seconds in a UTC day: a pool's budget is per day from 00:00 UTC (POSIX time has no leap
#: seconds, so every day has as many).
DAY = 86400.0


def utc_day(now: float) -> int:
    """The UTC day ``now`` (seconds since the epoch) falls in: days since 1970-01-01."""
    return math.floor(now / DAY)


def next_utc_midnight(now: float) -> float:
    """The next 00:00 UTC after ``now``: when a new day's budget begins."""
    return (utc_day(now) + 1) * DAY


def until_next_utc_day(now: float) -> str:
    """When the next UTC day begins, as a sentence says it: ``00:00 UTC (in 3h 05m)``."""
    left = int(next_utc_midnight(now) - now)
    return f"00:00 UTC (in {left // 3600}h {left % 3600 // 60:02d}m)"


@dataclass(frozen=True)
class PoolSpec:
    """What the scaler needs of a pool (the config carries the backend template)."""

    name: str
    labels: frozenset[str]
    max_runners: int
    min_idle: int = 0
    idle_timeout: float = 60.0
    boot_timeout: float = 300.0
    #: Position in the config: breaks ties between equally specific pools.
    order: int = 0
    #: What the pool may spend a UTC day, in US dollars (``budget.per_day``; None: no cap):
    #: once its instances cost that much today, it creates nothing until 00:00 UTC.
    budget_per_day: float | None = None
    #: False while the pool's labels are not known (``auto`` with its Docker engine away):
    #: it serves no job until they are.
    ready: bool = True
    #: A pool whose backend places runners on several hosts: its node groups now, from the
    #: provider's health (``runnerscale.protocols.Placement``). None: an ordinary pool, whose
    #: labels are all it offers and whose only room is ``max_runners``.
    groups: tuple[LabelGroup, ...] | None = None
    #: Names of runners on nodes that are down: they count against ``max_runners`` (they
    #: exist) but can take no job and hold no slot of a live group.
    unreachable: frozenset[str] = frozenset()
    #: Names of runners whose instance drains (``Instance.draining``: a spot interruption
    #: notice, say): they count against ``max_runners`` and hold their slot, but take no new
    #: job, so they are not free; the controller removes them once they are not busy.
    draining: frozenset[str] = frozenset()
    #: Where all of the pool's runners register (a ``Target.key``): a scale-set pool's
    #: scale set's target. None: wherever its queued jobs are (``create_on``).
    target: str | None = None
    #: A scale-set pool's demand: the jobs GitHub has assigned to its scale set, waiting or
    #: running (``statistics.totalAssignedJobs`` of the listener's last answer). None: a
    #: webhook pool, whose demand is the queued jobs its labels match.
    assigned_jobs: int | None = None
    #: Taken out of service by an operator (``runnerscale pools drain``): it creates no
    #: runner (no demand, no ``min_idle``), every idle runner goes at once whatever its idle
    #: time, busy ones finish their job. Its queued jobs wait (still routed to it).
    drained: bool = False

    def live_groups(self) -> list[LabelGroup]:
        """Its node groups that can take a runner, narrowest first (fewest extra labels, then
        by name). Empty for an ordinary pool."""
        return sorted(
            (group for group in self.groups or () if group.live),
            key=lambda group: narrowest(group.extra_labels),
        )

    def covering(self, job_labels: Iterable[str]) -> list[LabelGroup]:
        """The live groups whose nodes offer every label of the job (with the pool's),
        narrowest first. Empty for an ordinary pool."""
        return self._covering(normalize_labels(job_labels))

    def _covering(self, wanted: frozenset[str]) -> list[LabelGroup]:
        beyond = wanted - self.labels
        return [group for group in self.live_groups() if beyond <= group.extra_labels]

    def serves(self, job_labels: Iterable[str]) -> bool:
        """A pool serves a job when its labels contain every label of the job's runs-on; a
        pool over several hosts, when its labels and those of one of its live node groups
        do."""
        return self._serves(normalize_labels(job_labels))

    def _serves(self, wanted: frozenset[str]) -> bool:
        if not self.ready:
            return False
        if self.groups is None:
            return wanted <= self.labels
        return bool(self._covering(wanted))

    def extra_labels(self, job_labels: Iterable[str]) -> int:
        """How many labels beyond the job's the pool's runners for it have (the narrowest
        covering group's, for a pool over several hosts): fewer is more specific."""
        return self._extra_labels(normalize_labels(job_labels))

    def _extra_labels(self, wanted: frozenset[str]) -> int:
        covering = self._covering(wanted)
        offered = self.labels | covering[0].extra_labels if covering else self.labels
        return len(offered - wanted)

    def offered(self) -> frozenset[str]:
        """Every label some runner of the pool can have (its nodes' too, up or down)."""
        if self.groups is None:
            return self.labels
        return self.labels.union(*(group.extra_labels for group in self.groups))


def match_pool(pools: Sequence[PoolSpec], job_labels: Iterable[str]) -> PoolSpec | None:
    """The pool that serves a job: the most specific match (fewest extra labels), then the
    first declared. None when no pool can serve it."""
    wanted = normalize_labels(job_labels)
    if not wanted:
        return None
    candidates = [pool for pool in pools if pool._serves(wanted)]
    if not candidates:
        return None
    return min(candidates, key=lambda pool: (pool._extra_labels(wanted), pool.order))


#: GitHub's runner architecture labels (lower-case). A runner has at most one.
ARCH_LABELS: frozenset[str] = frozenset({"x64", "arm64", "arm", "x86"})
#: Accelerator labels a host can offer (see ``runnerscale.hostlabels``).
ACCELERATOR_LABELS: frozenset[str] = frozenset({"gpu", "nvidia", "cuda", "rocm", "amd", "openvino"})
#: The label of a host without any accelerator.
CPU_ONLY = "cpu-only"
#: In a pool's configured labels: "the labels detected for this pool's host".
AUTO_LABEL = "auto"


def explain_unmatched(pools: Sequence[PoolSpec], job_labels: Iterable[str]) -> str:
    """A one-line reason why no pool serves a job with these labels.

    Pools waiting for their host's labels (not ``ready``) are left out, and named. Checked in
    order: the job names no labels; no pools are configured; it needs an
    architecture no pool has; it needs an accelerator no pool has; otherwise the closest pool
    (fewest missing labels, then declared order) and the labels it lacks. A pool over several
    hosts offers its nodes' labels too; when it lacks none but no node that is up has them
    all, that is the reason ("pool 'vps': no live node offers deploy (down: NODE)"). Labels
    compare case-insensitively; label lists are sorted so the text is deterministic.
    """
    wanted = normalize_labels(job_labels)
    if not wanted:
        return "the job names no labels"
    if not pools:
        return "no pools are configured"
    waiting = ", ".join(f"'{pool.name}'" for pool in pools if not pool.ready)
    ready = [pool for pool in pools if pool.ready]
    if not ready:
        return f"no pool takes jobs yet (waiting for their hosts' labels: {waiting})"
    reason = _explain(ready, wanted)
    return f"{reason}; not counting {waiting}, waiting for its host's labels" if waiting else reason


def _explain(pools: Sequence[PoolSpec], wanted: frozenset[str]) -> str:
    # A pool over several hosts offers its nodes' labels too (whether or not a node is up).
    pool_labels = [normalize_labels(pool.offered()) for pool in pools]
    offered = frozenset().union(*pool_labels)

    missing_arch = sorted((wanted & ARCH_LABELS) - offered)
    if missing_arch:
        needs = ", ".join(missing_arch)
        pool_archs = sorted(offered & ARCH_LABELS)
        if not pool_archs:
            return f"it needs {needs}, but no pool declares an architecture"
        if len(pool_archs) == 1 and all(labels & ARCH_LABELS for labels in pool_labels):
            return f"it needs {needs}, but every pool here runs on {pool_archs[0]}"
        return f"it needs {needs}, but the pools here run on {', '.join(pool_archs)}"

    missing_accel = sorted((wanted & ACCELERATOR_LABELS) - offered)
    if missing_accel:
        reason = f"it needs {', '.join(missing_accel)}, which no pool offers"
        cpu_only = sorted(
            pool.name for pool, labels in zip(pools, pool_labels, strict=True) if CPU_ONLY in labels
        )
        if len(cpu_only) == len(pools):
            return f"{reason} (pools here are cpu-only)"
        if cpu_only:
            names = ", ".join(f"'{name}'" for name in cpu_only)
            return f"{reason} (cpu-only pools: {names})"
        return reason

    index, closest = min(
        enumerate(pools),
        key=lambda item: (len(wanted - pool_labels[item[0]]), item[1].order, item[0]),
    )
    lacking = sorted(wanted - pool_labels[index])
    if lacking:
        return f"closest pool '{closest.name}' lacks: {', '.join(lacking)}"
    serving = next((pool for pool in (closest, *pools) if pool.serves(wanted)), None)
    if serving is not None:
        return f"pool '{serving.name}' serves it"
    return _no_live_node(closest, wanted)


def _no_live_node(pool: PoolSpec, wanted: frozenset[str]) -> str:
    """Why a pool over several hosts whose nodes have the job's labels does not take it: no
    node that is up has them all (and which nodes that are down would)."""
    beyond = sorted(wanted - pool.labels)
    down = sorted(
        name
        for group in pool.groups or ()
        if set(beyond) <= group.extra_labels
        for name in group.down
    )
    reason = (
        f"pool '{pool.name}': no live node offers {', '.join(beyond)}"
        if beyond
        else f"pool '{pool.name}': no node is up"
    )
    return f"{reason} (down: {', '.join(down)})" if down else reason


@dataclass
class Job:
    """A workflow job as runnerscale last observed it (from a webhook or the API)."""

    id: int
    repo: str
    labels: tuple[str, ...]
    state: JobState
    created_at: float
    run_id: int | None = None
    name: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_name: str | None = None
    conclusion: str | None = None
    #: When runnerscale last confirmed this state (a webhook or a poll).
    observed_at: float = 0.0
    #: The pool chosen for it (None: no pool serves it).
    pool: str | None = None


@dataclass(frozen=True)
class JobLoss:
    """A job whose runner died while running it, in runnerscale's own words.

    Why runnerscale keeps its own account: GitHub fails such a job ("The self-hosted runner
    lost communication with the server") only in the job's check-run annotations; neither the
    REST job nor the ``workflow_job`` webhook says so, only ``conclusion: failure``. The loss
    is settled once the job has ended: re-run (:data:`RERUN`), or why not."""

    job_id: int
    repo: str
    #: The pool of the runner that died (its ``rerun_lost_jobs`` decides).
    pool: str
    reason: str
    lost_at: float
    #: When it was settled (None: its job has not ended yet, or a re-run is to be retried).
    settled_at: float | None = None
    #: :data:`RERUN`, or why it was not re-run.
    outcome: str | None = None


#: The outcome of a lost job that runnerscale re-ran.
RERUN = "re-run"


@dataclass
class Runner:
    """A runner runnerscale created (or found and adopted), across GitHub and the backend."""

    name: str
    pool: str
    target: str  # Target.key
    state: RunnerState
    created_at: float
    state_since: float
    github_id: int | None = None
    instance_id: str | None = None
    job_id: int | None = None
    attempts: int = 0
    last_error: str | None = None
    #: When the runner last became idle (scale-down waits ``idle_timeout`` from here).
    idle_since: float | None = None
    #: The labels it was registered with at GitHub; empty means its pool's configured labels.
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a runner needs a name")


@dataclass(frozen=True)
class GitHubRunner:
    """A self-hosted runner as GitHub lists it."""

    id: int
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instance:
    """What a backend holds for one runner (a process, a container, a VM, ...).

    ``incomplete``: a leftover of a create that was interrupted part-way (the daemon was
    killed between two of its steps): it never ran and never will, so it is never adopted as
    a runner's instance, and it is removed once no live runner claims it and it is older than
    the create timeout (a create still in flight is never touched). Its ``created_at`` is when
    the backend made it, or later (never earlier: the grace is never cut short).

    ``price_per_hour``: what the instance costs while it exists, in US dollars (None: unknown
    or free); the controller integrates it into the pool's spend between listings.
    ``draining``: why the instance must take no new job (a spot interruption notice, say);
    None: it may. Its runner is removed once it is not busy, and is not counted as free."""

    id: str
    runner_name: str
    pool: str
    running: bool
    exit_code: int | None = None
    created_at: float | None = None
    detail: str = ""
    incomplete: bool = False
    price_per_hour: float | None = None
    draining: str | None = None


@dataclass(frozen=True)
class InstanceSpec:
    """What a backend needs to start one runner. ``jitconfig`` is a secret: never log it."""

    runner_name: str
    pool: str
    jitconfig: str = field(repr=False)
    labels: tuple[str, ...] = ()


@dataclass
class PoolDrain:
    """A pool an operator took out of service (``runnerscale pools drain``): since when, and
    whether its backend was swept once it held no live runner. Kept in the store (key
    ``pool-drained:POOL``), so a restart or a reload keeps the pool out of service."""

    since: float
    swept: bool = False
    #: Why the last sweep of its backend failed (memory only; None: none failed).
    sweep_error: str | None = None
