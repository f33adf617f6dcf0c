"""In-memory stand-ins for the controller's outer boundaries: GitHub and a backend.

They implement :class:`~runnerscale.protocols.GitHubAPI` and
:class:`~runnerscale.protocols.Provider` with plain dictionaries, so a test can set
up any situation (a runner online, a job started elsewhere, an instance that died) and read
back exactly what the controller asked for. Both write every call to a shared :class:`Journal`,
together with the store writes of :class:`RecordingStore`, so a test can check the order of
state writes and side effects ("state first").

Faults are set per operation with ``fail(operation, error, times=..., after=...)``: the call
raises ``error`` (``times`` calls in a row, or until ``heal``), and with ``after=True`` it does
its work first and then raises (a crash after the side effect).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runnerscale.model import (
    GitHubRunner,
    Instance,
    InstanceSpec,
    JobState,
    Runner,
    RunnerState,
    Target,
    normalize_labels,
)
from runnerscale.protocols import (
    Clock,
    DeleteOutcome,
    GitHubError,
    JitConfig,
    NodeState,
    ObservedJob,
    Placement,
    PolledJobs,
    ProviderError,
    WaitedCall,
)
from runnerscale.store import SqlStore

__all__ = [
    "CrashError",
    "FakeFleet",
    "FakeGitHub",
    "FakeNode",
    "FakeProvider",
    "Journal",
    "RecordingStore",
]

#: One entry per call: (who, operation, subject), e.g. ("github", "delete_runner", "rs-x-1").
Entry = tuple[str, str, str]


class Journal(list[Entry]):
    """Every call the controller made through a boundary, in order."""

    def ops(self, who: str | None = None, subject: str | None = None) -> list[str]:
        """The operations, optionally only of one fake (``who``) or about one runner."""
        return [
            op
            for entry_who, op, entry_subject in self
            if (who is None or entry_who == who) and (subject is None or entry_subject == subject)
        ]


class CrashError(Exception):
    """Stands for the daemon dying (``kill -9``) in the middle of a call."""


@dataclass
class _Fault:
    error: BaseException
    times: int | None  # None: until healed
    after: bool


class _Faults:
    def __init__(self) -> None:
        self._faults: dict[str, _Fault] = {}

    def fail(
        self, operation: str, error: BaseException, *, times: int | None = None, after: bool = False
    ) -> None:
        self._faults[operation] = _Fault(error, times, after)

    def heal(self, operation: str) -> None:
        self._faults.pop(operation, None)

    def check(self, operation: str, *, after: bool) -> None:
        fault = self._faults.get(operation)
        if fault is None or fault.after is not after:
            return
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[operation]
        raise fault.error


# ---------------------------------------------------------------------------------- GitHub


@dataclass
class Registration:
    """A self-hosted runner as the fake GitHub holds it."""

    id: int
    name: str
    target: str  # Target.key
    labels: tuple[str, ...]
    online: bool = False
    busy: bool = False


@dataclass
class FakeGitHub:
    """GitHub's runner registrations and workflow jobs, in memory.

    ``delete_outcomes`` forces the answer of ``delete_runner`` for a runner name (``BUSY`` keeps
    the registration, as GitHub's 422 does); otherwise an existing registration is ``DELETED``
    and a missing one ``GONE``.
    """

    journal: Journal = field(default_factory=Journal)
    registrations: dict[int, Registration] = field(default_factory=dict)
    #: Workflow jobs by id, as the API would return them.
    jobs: dict[int, ObservedJob] = field(default_factory=dict)
    #: Job ids ``active_jobs`` leaves out (a listing that misses them), though ``get_job``
    #: still finds them.
    unlisted: set[int] = field(default_factory=set)
    delete_outcomes: dict[str, DeleteOutcome] = field(default_factory=dict)
    #: The JIT config issued for each runner name (a secret GitHub hands out once).
    issued: dict[str, str] = field(default_factory=dict)
    #: Keys of targets every call about raises GitHubError (an org that lost the App, an
    #: enterprise the client does not support).
    unreachable: set[str] = field(default_factory=set)
    #: Repositories (lower case ``owner/name``) whose read fails in a poll: the poll goes on
    #: without their jobs and says they were not read (a failed poll when that is all of it).
    unreadable: set[str] = field(default_factory=set)
    #: Every job re-run, in order, with the id of the new attempt GitHub queued for it.
    reruns: list[tuple[int, int]] = field(default_factory=list)
    #: The annotation messages of a job's check run, by job id (none when not set).
    annotations: dict[int, list[str]] = field(default_factory=dict)
    faults: _Faults = field(default_factory=_Faults)
    #: The registration budget, as the production client keeps it: per target key, when
    #: the budget spent by our own count resets (registrations wait until then, on
    #: ``clock``; set with :meth:`spend_registrations`).
    registration_resets: dict[str, float] = field(default_factory=dict)
    clock: Clock | None = None
    #: GitHub's ``core`` budget paused until then (epoch seconds on ``clock``), as the
    #: production client keeps it: reads and deletes wait until then (set with
    #: :meth:`pause_core`).
    core_paused_until: float | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _job_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(900_001))
    #: Every name ever registered, by id (deleted ones too), for the journal.
    _names: dict[int, str] = field(default_factory=dict)

    def fail(
        self,
        operation: str,
        error: BaseException | None = None,
        *,
        times: int | None = None,
        after: bool = False,
    ) -> None:
        self.faults.fail(
            operation,
            error or GitHubError(f"{operation}: 502 bad gateway"),
            times=times,
            after=after,
        )

    def heal(self, operation: str) -> None:
        self.faults.heal(operation)

    # -- the GitHubAPI protocol

    def registration_wait(self, target: Target) -> float:
        reset = self.registration_resets.get(target.key)
        if reset is None or self.clock is None:
            return 0.0
        return max(0.0, reset - self.clock.now())

    async def registration_ready(self, target: Target) -> None:
        await self._waited(lambda: self.registration_wait(target))

    def call_wait(self, operation: WaitedCall, target: Target) -> float:
        return self._core_wait()

    def _core_wait(self) -> float:
        if self.core_paused_until is None or self.clock is None:
            return 0.0
        return max(0.0, self.core_paused_until - self.clock.now())

    async def _core_ready(self) -> None:
        """As the client's core calls: wait out the pause (:meth:`call_wait`)."""
        await self._waited(self._core_wait)

    async def _waited(self, wait: Callable[[], float]) -> None:
        while (seconds := wait()) > 0:
            assert self.clock is not None
            await self.clock.sleep(seconds)

    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig:
        await self.registration_ready(target)  # as the client's call waits for its budget
        self.journal.append(("github", "generate_jitconfig", name))
        self._reach(target, "generate_jitconfig")
        if self.find(name) is not None:
            raise GitHubError(f"a runner named {name} already exists (409)")
        registration = self._register(
            Registration(next(self._ids), name, target.key, tuple(labels))
        )
        self.faults.check("generate_jitconfig", after=True)
        encoded = base64.b64encode(f'{{"name": "{name}", "secret": "s3cret"}}'.encode()).decode()
        self.issued[name] = encoded
        return JitConfig(runner_id=registration.id, encoded=encoded)

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome:
        await self._core_ready()
        registration = self.registrations.get(runner_id)
        subject = self._names.get(runner_id, str(runner_id))
        self.journal.append(("github", "delete_runner", subject))
        self._reach(target, "delete_runner")
        if registration is None or registration.target != target.key:
            return DeleteOutcome.GONE
        forced = self.delete_outcomes.get(registration.name)
        if forced is DeleteOutcome.BUSY:
            return DeleteOutcome.BUSY
        del self.registrations[runner_id]
        return forced or DeleteOutcome.DELETED

    async def list_runners(self, target: Target) -> list[GitHubRunner]:
        await self._core_ready()
        self.journal.append(("github", "list_runners", target.key))
        self._reach(target, "list_runners")
        return [
            GitHubRunner(r.id, r.name, online=r.online, busy=r.busy, labels=r.labels)
            for r in self.registrations.values()
            if r.target == target.key
        ]

    async def active_jobs(self, target: Target) -> PolledJobs:
        await self._core_ready()
        self.journal.append(("github", "active_jobs", target.key))
        self._reach(target, "active_jobs")
        jobs = [
            job
            for job in self.jobs.values()
            if target.covers(job.repo)
            and job.state in (JobState.QUEUED, JobState.IN_PROGRESS)
            and job.id not in self.unlisted
            and job.repo.lower() not in self.unreadable
        ]
        unread = frozenset(repo for repo in self.unreadable if target.covers(repo))
        # A repo target's one repository unread: the poll read nothing (as the Poller says).
        nothing = target.kind == "repo" and unread
        error = GitHubError(f"poll of {target.name}: 502 bad gateway") if nothing else None
        return PolledJobs(jobs, unread, error)

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        await self._core_ready()
        self.journal.append(("github", "get_job", str(job_id)))
        self.faults.check("get_job", after=False)
        job = self.jobs.get(job_id)
        return job if job is not None and job.repo == repo else None

    async def rerun_job(self, repo: str, job_id: int) -> None:
        """As GitHub: a completed job gets a new attempt, queued under a new id."""
        self.journal.append(("github", "rerun_job", str(job_id)))
        self.faults.check("rerun_job", after=False)
        job = self.jobs.get(job_id)
        if job is None or job.repo != repo:
            raise GitHubError(f"rerun job {job_id}: 404 not found", status=404)
        if job.state is not JobState.COMPLETED:
            raise GitHubError(f"rerun job {job_id}: 403 still running", status=403)
        attempt = replace(
            job,
            id=next(self._job_ids),
            state=JobState.QUEUED,
            started_at=None,
            completed_at=None,
            runner_name=None,
            conclusion=None,
        )
        self.jobs[attempt.id] = attempt
        self.reruns.append((job_id, attempt.id))

    async def job_annotations(self, repo: str, job_id: int) -> list[str]:
        self.journal.append(("github", "job_annotations", str(job_id)))
        self.faults.check("job_annotations", after=False)
        job = self.jobs.get(job_id)
        if job is None or job.repo != repo:
            return []
        return list(self.annotations.get(job_id, []))

    def _reach(self, target: Target, operation: str) -> None:
        if target.key in self.unreachable:
            raise GitHubError(f"{operation} at {target.name}: 503 service unavailable")
        self.faults.check(operation, after=False)

    # -- test controls

    def spend_registrations(self, target: Target, clock: Clock, reset: float) -> None:
        """Registrations at ``target`` wait until ``reset`` (the client's count says its
        registration budget is spent until its window resets then)."""
        self.clock = clock
        self.registration_resets[target.key] = reset

    def pause_core(self, clock: Clock, until: float) -> None:
        """GitHub's ``core`` budget is paused until ``until`` (a secondary limit, or
        ``remaining: 0`` until the window resets): the client's core calls wait until then."""
        self.clock = clock
        self.core_paused_until = until

    def find(self, name: str) -> Registration | None:
        return next((r for r in self.registrations.values() if r.name == name), None)

    def names(self, target: Target | None = None) -> set[str]:
        return {
            r.name for r in self.registrations.values() if target is None or r.target == target.key
        }

    def set_runner(self, name: str, *, online: bool = True, busy: bool = False) -> None:
        registration = self.find(name)
        assert registration is not None, f"{name} is not registered"
        registration.online = online
        registration.busy = busy

    def deregister(self, name: str) -> None:
        """The runner leaves GitHub's list by itself (a JIT runner after its job)."""
        registration = self.find(name)
        assert registration is not None, f"{name} is not registered"
        del self.registrations[registration.id]

    def add_registration(
        self, target: Target, name: str, *, online: bool = True, busy: bool = False
    ) -> Registration:
        """A registration the controller did not make (another tool, or a lost crash)."""
        return self._register(Registration(next(self._ids), name, target.key, (), online, busy))

    def _register(self, registration: Registration) -> Registration:
        self.registrations[registration.id] = registration
        self._names[registration.id] = registration.name
        return registration

    def put_job(self, job: ObservedJob) -> ObservedJob:
        self.jobs[job.id] = job
        return job

    def update_job(self, job_id: int, **changes: Any) -> ObservedJob:
        self.jobs[job_id] = replace(self.jobs[job_id], **changes)
        return self.jobs[job_id]


# ---------------------------------------------------------------------------------- backend


@dataclass
class FakeProvider:
    """A backend holding instances in memory; deleting a missing instance is a no-op."""

    pool: str
    journal: Journal = field(default_factory=Journal)
    instances: dict[str, Instance] = field(default_factory=dict)
    #: Every spec ``create`` was called with (secrets included: tests check them).
    specs: list[InstanceSpec] = field(default_factory=list)
    faults: _Faults = field(default_factory=_Faults)
    closed: bool = False
    #: Awaited by ``create`` before the instance exists: a slow backend (an EC2 instance, an
    #: SSH host) when it sleeps on the test's virtual clock.
    create_wait: Callable[[], Awaitable[None]] | None = None
    #: Awaited by ``delete`` before the instance is gone.
    delete_wait: Callable[[], Awaitable[None]] | None = None
    #: Awaited by ``list`` and ``get`` before they answer.
    read_wait: Callable[[], Awaitable[None]] | None = None
    #: What each new instance costs an hour (``Instance.price_per_hour``; None: no price).
    price: float | None = None
    #: When each new instance was made (``Instance.created_at``, as EC2's launch time):
    #: the test's clock; None: not told.
    made_at: Callable[[], float] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail(
        self,
        operation: str,
        error: BaseException | None = None,
        *,
        times: int | None = None,
        after: bool = False,
    ) -> None:
        self.faults.fail(
            operation,
            error or ProviderError(f"pool {self.pool}: {operation} failed"),
            times=times,
            after=after,
        )

    def heal(self, operation: str) -> None:
        self.faults.heal(operation)

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        self.journal.append(("provider", "create", spec.runner_name))
        self.specs.append(spec)
        self.faults.check("create", after=False)
        if self.create_wait is not None:
            await self.create_wait()
        instance = Instance(
            id=f"i-{next(self._ids)}",
            runner_name=spec.runner_name,
            pool=spec.pool,
            running=True,
            created_at=None if self.made_at is None else self.made_at(),
            price_per_hour=self.price,
        )
        self.instances[instance.id] = instance
        self.faults.check("create", after=True)
        return instance

    async def delete(self, instance_id: str) -> None:
        instance = self.instances.get(instance_id)
        self.journal.append(
            ("provider", "delete", instance.runner_name if instance else instance_id)
        )
        self.faults.check("delete", after=False)
        if self.delete_wait is not None:
            await self.delete_wait()
        self.instances.pop(instance_id, None)

    async def get(self, instance_id: str) -> Instance | None:
        if self.read_wait is not None:
            await self.read_wait()
        return self.instances.get(instance_id)

    async def list(self) -> list[Instance]:
        self.journal.append(("provider", "list", self.pool))
        self.faults.check("list", after=False)
        if self.read_wait is not None:
            await self.read_wait()
        return list(self.instances.values())

    async def close(self) -> None:
        self.closed = True

    # -- test controls

    def find(self, runner_name: str) -> Instance | None:
        return next((i for i in self.instances.values() if i.runner_name == runner_name), None)

    def names(self) -> set[str]:
        return {instance.runner_name for instance in self.instances.values()}

    def exit(self, runner_name: str, code: int = 0, detail: str = "") -> None:
        """The runner's process (container, VM) ended by itself."""
        instance = self.find(runner_name)
        assert instance is not None, f"no instance for {runner_name}"
        self.instances[instance.id] = replace(
            instance, running=False, exit_code=code, detail=detail
        )

    def drain(self, runner_name: str, reason: str = "spot interruption notice") -> None:
        """The instance must take no new job (its backend got a spot interruption notice)."""
        instance = self.find(runner_name)
        assert instance is not None, f"no instance for {runner_name}"
        self.instances[instance.id] = replace(instance, draining=reason)

    def lose(self, runner_name: str) -> None:
        """The instance vanished without the controller's doing (host gone, manual delete)."""
        instance = self.find(runner_name)
        assert instance is not None, f"no instance for {runner_name}"
        del self.instances[instance.id]

    def add_instance(
        self, runner_name: str, *, running: bool = True, leftover_since: float | None = None
    ) -> Instance:
        """An instance the controller did not ask for (or has forgotten); with
        ``leftover_since``, what a create interrupted at that time left (``incomplete``)."""
        instance = Instance(
            id=f"i-{next(self._ids)}",
            runner_name=runner_name,
            pool=self.pool,
            running=running and leftover_since is None,
            created_at=leftover_since,
            incomplete=leftover_since is not None,
            detail="" if leftover_since is None else "incomplete: a create was interrupted",
        )
        self.instances[instance.id] = instance
        return instance


@dataclass
class SweepingProvider(FakeProvider):
    """A backend that removes every instance of its pool in one call (``RemovesAll``, as the
    external backend's ``RemoveAllInstances``); ``fail("remove_all")`` makes it fail."""

    async def remove_all(self) -> None:
        self.journal.append(("provider", "remove_all", self.pool))
        self.faults.check("remove_all", after=False)
        self.instances.clear()


@dataclass
class OnlineAwareProvider(FakeProvider):
    """A backend that wants to hear when a runner comes online (``OnlineAware``, as the EC2
    backend does to delete the JIT config's parameter); ``online_wait`` is awaited before it
    answers (a slow backend), and ``fail("runner_online")`` makes it fail."""

    #: The instance ids it was told of, in order.
    told: list[str] = field(default_factory=list)
    online_wait: Callable[[], Awaitable[None]] | None = None

    async def runner_online(self, instance_id: str) -> None:
        instance = self.instances.get(instance_id)
        self.journal.append(
            ("provider", "runner_online", instance.runner_name if instance else instance_id)
        )
        if self.online_wait is not None:
            await self.online_wait()
        self.faults.check("runner_online", after=False)
        self.told.append(instance_id)


@dataclass
class FakeNode:
    """One host of :class:`FakeFleet`."""

    name: str
    slots: int
    extra_labels: frozenset[str] = frozenset()
    up: bool = True
    reason: str = ""
    since: float | None = None


@dataclass
class FakeFleet(FakeProvider):
    """A placing backend (:class:`~runnerscale.protocols.PlacingProvider`) over the fake one:
    its instances are spread over ``nodes`` as the contract says (an up node whose extra
    labels are all the runner's, the widest such set first; then the fewest runners per
    slot). A node taken ``down`` keeps its instances listed (the backend remembers them), and
    refuses to delete them until it is ``up`` again."""

    nodes: list[FakeNode] = field(default_factory=list)
    #: Instance id -> the name of the node it is on.
    where: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> FakeNode:
        return next(node for node in self.nodes if node.name == name)

    def on(self, name: str) -> set[str]:
        """The runner names of the instances on a node."""
        return {
            self.instances[id_].runner_name
            for id_, node in self.where.items()
            if node == name and id_ in self.instances
        }

    def down(self, name: str, reason: str = "no answer to keepalives", since: float = 0.0) -> None:
        node = self.node(name)
        node.up, node.reason, node.since = False, reason, since

    def back(self, name: str, since: float = 0.0) -> None:
        node = self.node(name)
        node.up, node.reason, node.since = True, "", since

    # -- the PlacingProvider protocol

    def placement(self) -> Placement:
        return Placement(
            nodes=tuple(
                NodeState(
                    node.name,
                    node.up,
                    node.slots,
                    node.extra_labels,
                    node.reason,
                    node.since,
                    len(self.on(node.name)),
                )
                for node in self.nodes
            ),
            unreachable=frozenset(
                name for node in self.nodes if not node.up for name in self.on(node.name)
            ),
        )

    async def create(self, spec: InstanceSpec) -> Instance:
        wanted = normalize_labels(spec.labels)
        candidates = [node for node in self.nodes if node.up and node.extra_labels <= wanted]
        if not candidates:
            raise ProviderError(f"no node that is up offers {', '.join(sorted(wanted))}")
        widest = max(len(node.extra_labels) for node in candidates)
        node = min(
            (node for node in candidates if len(node.extra_labels) == widest),
            key=lambda node: len(self.on(node.name)) / max(node.slots, 1),
        )
        instance = await super().create(spec)
        self.where[instance.id] = node.name
        return instance

    async def delete(self, instance_id: str) -> None:
        node = self.where.get(instance_id)
        if node is not None and not self.node(node).up:
            self.journal.append(("provider", "delete refused", instance_id))
            raise ProviderError(f"node {node} is down")
        await super().delete(instance_id)
        self.where.pop(instance_id, None)


# ---------------------------------------------------------------------------------- store


class RecordingStore(SqlStore):
    """The real SQL store, writing each runner state it stores to the journal as well."""

    def __init__(self, store: SqlStore, journal: Journal) -> None:
        super().__init__(store.engine)
        self.journal = journal

    def add_runner(self, runner: Runner) -> None:
        super().add_runner(runner)
        self.journal.append(("store", runner.state.value, runner.name))

    def add_runners(self, runners: Sequence[Runner]) -> None:
        super().add_runners(runners)
        self.journal.extend(("store", runner.state.value, runner.name) for runner in runners)

    def transition(
        self,
        name: str,
        expected: RunnerState | Collection[RunnerState],
        new: RunnerState,
        **changes: Any,
    ) -> bool:
        previous = self.get_runner(name)
        moved = super().transition(name, expected, new, **changes)
        if moved and (previous is None or previous.state is not new):
            self.journal.append(("store", new.value, name))
        return moved
