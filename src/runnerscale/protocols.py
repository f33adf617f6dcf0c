"""The boundaries the controller talks through. It depends on these, never on an implementation.

``cli`` picks the implementations: githubkit against GitHub (or the simulator) for
:class:`GitHubAPI`, a backend module for :class:`Provider`, SQLAlchemy for :class:`Store`, the
wall clock or a virtual one for :class:`~runnerscale.clock.Clock`. Tests and the simulation
substitute any of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from runnerscale.clock import Clock
from runnerscale.model import (
    GitHubRunner,
    Instance,
    InstanceSpec,
    Job,
    JobLoss,
    JobState,
    Runner,
    RunnerState,
    Target,
)

__all__ = [
    "Clock",
    "DeleteOutcome",
    "Delivery",
    "GitHubAPI",
    "GitHubError",
    "JitConfig",
    "NodeState",
    "ObservedJob",
    "OnlineAware",
    "Placement",
    "PlacingProvider",
    "PolledJobs",
    "Provider",
    "ProviderError",
    "RemovesAll",
    "RunnerNameTaken",
    "Store",
    "Taken",
    "WaitedCall",
]

#: The calls :meth:`GitHubAPI.call_wait` can be asked about (the client's operation names):
#: those a loop makes that must not wait for a paused or spent rate limit.
WaitedCall = Literal["get-job", "list-runners", "delete-runner"]


class GitHubError(Exception):
    """A GitHub call failed in a way the caller should back off from (5xx, rate limit, network).

    The message never contains a credential or a JIT configuration.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: GitHub's HTTP status, when it answered (None: unreachable, timed out).
        self.status = status


class ProviderError(Exception):
    """A backend could not do what was asked (the message names the pool and the cause)."""


class RunnerNameTaken(ValueError):  # noqa: N818 - a refusal, as KeyError is
    """A new runner's name is held by the store already, or given twice in one write: the
    write inserted nothing. Its writer draws those runners' names again (``names``)."""

    def __init__(self, message: str, names: Iterable[str]) -> None:
        super().__init__(message)
        self.names = frozenset(names)


class DeleteOutcome(StrEnum):
    DELETED = "deleted"
    GONE = "gone"  # already absent: counts as success
    BUSY = "busy"  # GitHub refused (422): the runner took a job meanwhile


@dataclass(frozen=True)
class JitConfig:
    runner_id: int
    encoded: str  # secret

    def __repr__(self) -> str:
        return f"JitConfig(runner_id={self.runner_id})"


@dataclass(frozen=True)
class ObservedJob:
    """A job as one observation reports it (webhook delivery or API poll)."""

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


@dataclass(frozen=True)
class PolledJobs:
    """What one poll of a target found (:meth:`GitHubAPI.active_jobs`).

    A poll reads a target's repositories one by one, and one of them may fail (a 5xx, a
    timeout, a repository deleted meanwhile or no longer visible to the credential) while the
    others answer. Its jobs are then unknown, not gone: whoever reads the result must keep
    what it knew of the ``unread`` repositories' jobs as it was."""

    #: The queued and in-progress jobs of the repositories read.
    jobs: list[ObservedJob] = field(default_factory=list)
    #: Repositories (lower case ``owner/name``) some read of which failed in this poll.
    unread: frozenset[str] = frozenset()
    #: Set (the first failure) when the poll read none of the repositories it tried: the
    #: poll counts as failed (the poll loop backs off), though its result stays usable.
    error: GitHubError | None = None


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery to take: its ``X-GitHub-Delivery`` GUID (None: it has none, and is
    never a duplicate) and the job observation it carries (None: nothing to record, a
    repository outside the targets or an observation the controller already holds)."""

    id: str | None
    job: ObservedJob | None = None


@dataclass(frozen=True)
class Taken:
    """What :meth:`Store.take_deliveries` made of one delivery: whether it was new (False: a
    duplicate, nothing recorded), and its job as stored before and after (None: no job)."""

    new: bool
    before: Job | None = None
    after: Job | None = None


@dataclass(frozen=True)
class PollHints:
    """What the controller knows that lets a poll of an organisation read less
    (:mod:`runnerscale.github.schedule`)."""

    #: Repositories (``owner/name``, any case) the controller holds active jobs of.
    active_repos: frozenset[str] = frozenset()
    #: Whether webhook deliveries arrive (polling is then a safety net).
    webhooks: bool = False
    #: The newest creation time of a job heard of, per repository (lower case ``owner/name``).
    newest_jobs: Mapping[str, float] = field(default_factory=dict)
    #: Repositories where the controller expects a job it has not heard of yet (a re-run it
    #: asked for, whose webhook may be lost): every poll reads them in full.
    expected_repos: frozenset[str] = frozenset()
    #: The newest creation time of a job heard of, per run heard of: (lower case
    #: ``owner/name``, run id). Webhooks are lost one by one, so a run some of whose jobs were
    #: heard may hold one that was not: while webhooks arrive, a poll reads each such run's
    #: jobs once (:meth:`runnerscale.github.schedule.RepoSchedule.runs_to_confirm`).
    heard_runs: Mapping[tuple[str, int], float] = field(default_factory=dict)


class GitHubAPI(Protocol):
    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig: ...

    def registration_wait(self, target: Target) -> float:
        """Seconds a runner's registration at ``target`` (:meth:`generate_jitconfig`) sent
        now would wait before it goes out: GitHub's registration budget spent by our own
        count, or a pause GitHub asked for. 0.0: it would go at once (a client that keeps no
        budget always answers so)."""
        ...

    async def registration_ready(self, target: Target) -> None:
        """Return once a registration at ``target`` would go out at once (waits out what
        :meth:`registration_wait` says). The controller waits here before it begins a
        runner's creation, so a spent budget holds no creation slot and no create timeout
        runs meanwhile."""
        ...

    def call_wait(self, operation: WaitedCall, target: Target) -> float:
        """Seconds a call of ``operation`` about ``target`` (for a job: its repository as a
        ``repo`` target) sent now would wait before it goes out: a pause GitHub asked for on
        its resource, or that budget spent by our own count. 0.0: it would go at once (a
        client that keeps no budget always answers so). A loop with other duties asks it
        first and skips a call that would wait (the client's call waits up to an hour)."""
        ...

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome: ...

    async def list_runners(self, target: Target) -> list[GitHubRunner]: ...

    async def active_jobs(self, target: Target) -> PolledJobs:
        """Queued and in-progress jobs of the target's repositories (conditional requests),
        and the repositories whose read failed. Raises :class:`GitHubError` when the poll
        cannot go on at all (its repository list failed, a rate limit, bad credentials)."""
        ...

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None: ...

    async def rerun_job(self, repo: str, job_id: int) -> None:
        """Re-run a completed job: GitHub queues a new attempt of it, under a new job id.
        Raises GitHubError when GitHub refuses (403 while its workflow run still runs)."""
        ...

    async def job_annotations(self, repo: str, job_id: int) -> list[str]:
        """The messages of the annotations on a job's check run (a job's id is its check
        run's), the first 100: the only place GitHub says why it failed a job other than by
        its steps ("The self-hosted runner: NAME lost communication with the server...").
        Empty when the job is not known."""
        ...


class PollPacer(Protocol):
    """Paces GitHub polls by the API budget (the production client does; the simulation does
    not pace)."""

    def polling(self) -> AbstractContextManager[None]:
        """Calls made inside belong to a poll: only they make up what polling costs."""
        ...

    def poll_interval(self, base: float) -> float:
        """The wait before the next poll: ``base``, stretched when polling's cost would not
        last until the budget resets."""
        ...


class Provider(Protocol):
    """A backend: garm's small contract. Deleting something already gone is success."""

    async def create(self, spec: InstanceSpec) -> Instance: ...

    async def delete(self, instance_id: str) -> None: ...

    async def get(self, instance_id: str) -> Instance | None: ...

    async def list(self) -> list[Instance]:
        """Every instance this controller owns on the backend (found by its tags/labels)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class OnlineAware(Provider, Protocol):
    """A provider that wants to hear when a runner of its pool first connects to GitHub
    (optional: the EC2 backend deletes the instance's JIT config parameter then, rather than
    when its safety-net sweep comes round).

    The controller calls :meth:`runner_online` at most once per runner, in a task of its own
    (the loop never waits for it), once the runner's instance id is known. It is a courtesy:
    raising :class:`ProviderError` is logged and nothing else happens, so whatever the hook
    cleans up must also be cleaned up without it."""

    async def runner_online(self, instance_id: str) -> None:
        """The runner on ``instance_id`` is online (idle or busy) in GitHub."""
        ...


@runtime_checkable
class RemovesAll(Provider, Protocol):
    """A provider that can remove every instance of its pool in one call (optional: garm's
    ``RemoveAllInstances``, which the external backend runs).

    ``runnerscale pools drain POOL`` calls it once the drained pool holds no busy runner, to
    sweep whatever the backend still holds for the pool; a provider without it has each
    instance its :meth:`Provider.list` shows deleted instead. Like ``delete``, it succeeds
    when nothing is left, and raises :class:`ProviderError` when it cannot."""

    async def remove_all(self) -> None:
        """Remove every instance of this pool (of this controller) the backend holds."""
        ...


@dataclass(frozen=True)
class NodeState:
    """One host of a placing backend, as its provider knows it now."""

    name: str  # the node's address as configured ("10.0.0.12:2222")
    up: bool
    slots: int  # runners it may hold (0 while not known, e.g. never reached)
    extra_labels: frozenset[str]  # its own labels beyond the pool's, lower-case
    reason: str = ""  # why it is down ("" when up)
    since: float | None = None  # when it last changed between up and down (wall clock)
    runners: int = 0  # instances of this pool the provider knows on it


@dataclass(frozen=True)
class Placement:
    """Where a placing backend can start runners now."""

    nodes: tuple[NodeState, ...]
    #: Runner names whose instances are on nodes that are down now: they hold no slot of a
    #: live node and cannot take a job, but they are not gone (the node may come back).
    unreachable: frozenset[str] = frozenset()


@runtime_checkable
class PlacingProvider(Provider, Protocol):
    """A provider over several hosts with per-host capacity and labels (the SSH backend).

    Its ``create(spec)`` places the runner on an up node whose ``extra_labels`` are all in
    ``spec.labels``, preferring the largest such set; the scaler has already counted the room
    (:mod:`runnerscale.scaler`)."""

    def placement(self) -> Placement:
        """Cheap and non-blocking: from the provider's own health state."""
        ...


class Store(Protocol):
    """Persistent state. Writes are durable when the call returns (the crash-safety rule of the
    lifecycle relies on it). Synchronous: every call is a short transaction."""

    # -- jobs
    def observe_job(self, job: ObservedJob, now: float) -> Job:
        """Record an observation; states only move forward. Returns the stored job."""
        ...

    def get_job(self, job_id: int) -> Job | None: ...

    def jobs(
        self,
        states: Sequence[JobState] | None = None,
        *,
        completed_since: float | None = None,
        shared: bool = False,
    ) -> list[Job]:
        """Jobs in any of ``states`` (all when None), oldest first (by creation, then id); with
        ``completed_since``, only those completed at or after it (an index serves it: the
        store keeps a week). Copies, the caller's to change; ``shared``: the rows as kept,
        for a caller that only reads them (as :meth:`runners`: a kept row is replaced when
        its job changes, never changed in place, so a shared row stays as it was read)."""
        ...

    def count_jobs(self, states: Sequence[JobState]) -> dict[JobState, int]:
        """How many jobs are in each of ``states`` (a state with none is left out), in the
        order given; counted where they are kept, for what needs only counts (the status
        counts the in-progress jobs, at fleet scale nearly all active ones), not every row."""
        ...

    def set_job_pool(self, job_id: int, pool: str | None) -> None: ...

    def set_job_pools(self, pools: Mapping[int, str | None]) -> None:
        """Remember the pool chosen for each job, in one transaction (jobs gone meanwhile,
        pruned, are skipped)."""
        ...

    def prune_jobs(self, completed_before: float) -> int:
        """Delete jobs completed before the given time, and their losses."""
        ...

    # -- jobs whose runner died mid-job
    def record_job_loss(self, loss: JobLoss) -> bool:
        """Record a job's loss; only the first account of a job's loss is kept. True when
        this call recorded it."""
        ...

    def job_losses(self, *, settled: bool | None = None) -> list[JobLoss]:
        """Recorded losses, oldest first: only the unsettled ones (``settled=False``), only
        the settled ones (True), or all (None)."""
        ...

    def settle_job_loss(self, job_id: int, outcome: str, now: float) -> bool:
        """Compare-and-set: settle a loss with ``outcome`` at ``now``, only while it is not
        settled. True when this call settled it; a caller about to re-run the job settles it
        first, and asks GitHub only when it won (so no two callers re-run one loss)."""
        ...

    def reopen_job_loss(self, job_id: int, settled_at: float) -> bool:
        """Compare-and-set: undo the settlement made at ``settled_at`` (a re-run GitHub
        refused), so that a later pass tries again. False when it is settled otherwise."""
        ...

    # -- runners
    def add_runner(self, runner: Runner) -> None:
        """Insert a new runner (its name is unique; a duplicate raises RunnerNameTaken)."""
        ...

    def add_runners(self, runners: Sequence[Runner]) -> None:
        """Insert new runners all together or none (a duplicate raises RunnerNameTaken): a
        decision's creations in one write, not one commit each."""
        ...

    def get_runner(self, name: str) -> Runner | None: ...

    def runners(
        self,
        *,
        pool: str | None = None,
        states: Sequence[RunnerState] | None = None,
        shared: bool = False,
    ) -> list[Runner]:
        """Runners of ``pool`` (any when None) in ``states`` (any when None), oldest first:
        copies, the caller's to change. ``shared``: the rows as the store keeps them, for a
        caller that only reads them (the decision: 10,000 live runners copied out on every
        reconcile were a fifth of a fleet-scale simulation's time). A kept row is replaced
        when its runner changes, never changed in place, so a shared row stays as it was
        read; a caller that changes the rows it holds (``observe.move``) must not share."""
        ...

    def transition(
        self,
        name: str,
        expected: RunnerState | Collection[RunnerState],
        new: RunnerState,
        **changes: Any,
    ) -> bool:
        """Compare-and-set: move runner ``name`` to ``new`` and write ``changes`` (other
        :class:`~runnerscale.model.Runner` fields by name; never ``name`` or ``state``), only
        if its stored state is ``expected`` (one state, or any of several).

        Returns True when the row moved, False when it is in another state: another writer
        moved it first (the janitor timed it out, an operator removed it, a job took it), and
        the caller must not act on what it believed. Nothing else of the row is written, so a
        slow writer can never put back fields or a state it read before someone else's write.
        ``new`` may equal the expected state, to change fields only while the state holds.
        Raises KeyError for an unknown name, TypeError for a field that is not a runner's.
        """
        ...

    def prune_runners(self, gone_before: float) -> int: ...

    def count_runners(self, states: Sequence[RunnerState]) -> dict[tuple[str, RunnerState], int]:
        """How many runners in ``states`` each pool has, by (pool, state); counted where they
        are kept (``GROUP BY``), for what needs only counts (the status), not every row."""
        ...

    # -- webhook deliveries (duplicates are harmless)
    def remember_delivery(self, delivery_id: str, now: float) -> bool:
        """True the first time a delivery id is seen."""
        ...

    def take_deliveries(self, batch: Sequence[Delivery], now: float) -> list[Taken]:
        """Remember each delivery's id and record the job of each new one, all in ONE
        transaction: a delivery acknowledged after this returned survives a crash with its
        job, and a crash before it leaves neither (a redelivery is then not a duplicate).
        A GUID repeated within the batch is a duplicate from its second time on."""
        ...

    # -- small key/value facts (ETags, cursors)
    def get_value(self, key: str) -> str | None: ...

    def set_value(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...
