"""The controller's side effects: creating and removing runners, state first.

Creating a runner is three steps, each recorded before it is taken, so a crash between any two
is repaired on start (see :func:`Actions.recover`):

1. ``pending`` (:meth:`Actions.plan_runner`, called when the decision is written): the
   runner's name is in the store; nothing exists elsewhere.
2. ``creating`` (:meth:`Actions.start_runner`, in the pool's worker): GitHub registered it (a
   JIT config was issued); the backend is asked for an instance.
3. ``booting``: the instance exists; GitHub will show the runner online when it connects.

Removing is the reverse and starts with ``deleting``: first the runner is deleted in GitHub
(a 422 means it took a job meanwhile, and it is kept), then its instance is removed. Deleting
what is already gone counts as success everywhere, so a removal can be retried until it is done.

Each step is a compare-and-set from the state the step expects (``observe.move``), so a step
that finds the runner moved meanwhile (the janitor gave up on a slow creation, an operator
removed it, another removal finished it) changes nothing, and undoes only what it alone made.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from runnerscale.controller.bounded import Overdue, Timeouts, within
from runnerscale.controller.observe import amend, apply_runner_list, move
from runnerscale.controller.online import OnlineNotices
from runnerscale.controller.registrar import Registrar, RestRegistrar
from runnerscale.controller.scaleset import ScaleSetState
from runnerscale.model import (
    CREATE_CONCURRENCY,
    Instance,
    InstanceSpec,
    JobState,
    LabelGroup,
    PoolDrain,
    PoolSpec,
    Runner,
    RunnerState,
    Target,
    labels_beyond,
    narrowest,
)
from runnerscale.protocols import (
    Clock,
    DeleteOutcome,
    GitHubAPI,
    GitHubError,
    Placement,
    PlacingProvider,
    Provider,
    ProviderError,
    RunnerNameTaken,
    Store,
    WaitedCall,
)
from runnerscale.warm import InForce, MinIdleSchedule, ScheduleCache

log = logging.getLogger("runnerscale.controller")
T = TypeVar("T")

#: Where a runner can be when its instance's creation returns, other than ``creating``, and
#: still be wanted: it came online (and maybe ran its job) before the backend answered.
_AT_WORK = frozenset({RunnerState.IDLE, RunnerState.BUSY, RunnerState.FINISHED})

#: Random bytes in a runner's name (16 hex digits). GitHub takes names of at most 64
#: characters and a ``runner_prefix`` has at most 40, so 16 fit. At 100,000 runners a day
#: with a week of their rows kept, a new name meets a kept one 100,000 * 700,000 / 2^64 times
#: a day: once in about 700,000 years (32 bits: about 16 times a day).
SUFFIX_BYTES = 8
#: Writes of a decision's new runners tried before a taken name is given up on: each retry
#: draws new names for the taken ones alone (one retry is all a random suffix ever needs).
NAME_ATTEMPTS = 5


def random_suffix() -> str:
    """The unique part of a runner's name: :data:`SUFFIX_BYTES` random bytes, in hex."""
    return secrets.token_hex(SUFFIX_BYTES)


#: Backoff after a failed creation: base * 2^(failures-1), capped.
BACKOFF_BASE = 5.0
BACKOFF_CAP = 300.0


@dataclass
class PoolRuntime:
    """A pool as the controller runs it: its limits, its backend, its failure backoff."""

    spec: PoolSpec
    provider: Provider
    #: Labels as written in the config (registered with GitHub as given).
    labels: tuple[str, ...]
    prefix: str
    #: Re-run a job once when its runner died mid-job (:mod:`runnerscale.controller.reruns`).
    rerun_lost_jobs: bool = False
    #: Runners its worker creates at once (:mod:`runnerscale.controller.workers`).
    create_concurrency: int = CREATE_CONCURRENCY
    #: ``min_idle`` over time, when the pool has warm windows (:mod:`runnerscale.warm`),
    #: held below the cap; ``spec.min_idle`` is then its base. None: ``spec.min_idle`` always.
    warm: MinIdleSchedule | None = None
    consecutive_failures: int = 0
    backoff_until: float = 0.0
    healthy: bool = True
    last_error: str | None = None
    #: Why the pool's cap (``spec.max_runners``) is below its configured max_runners.
    capped_by: str | None = None
    #: Runners whose instance drains (takes no new job), and why, as the backend's last
    #: listing said (:mod:`runnerscale.controller.draining`).
    draining: dict[str, str] = field(default_factory=dict)
    #: A scale-set pool's listener state (its scale set, its assigned jobs); None: a webhook
    #: pool.
    scale_set: ScaleSetState | None = None
    #: Out of service by an operator's hand (:mod:`runnerscale.controller.pooldrain`);
    #: None: in service.
    drained: PoolDrain | None = None
    _in_force: ScheduleCache | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def min_idle_at(self, now: float) -> InForce | None:
        """The warm window in force at ``now`` and its count, or the base and the window that
        opens next; None without warm windows."""
        if self.warm is None:
            return None
        if self._in_force is None or self._in_force.schedule is not self.warm:
            self._in_force = ScheduleCache(self.warm)  # new, or changed by a reload
        return self._in_force.at(now)

    def spec_at(self, now: float) -> PoolSpec:
        """The pool's limits with the ``min_idle`` in force at ``now``: what the scaler decides
        on. A pool waiting for its host's labels keeps no idle runner, window or not. A pool
        whose backend places runners on several hosts has its node groups and the runners on
        its nodes that are down, as the backend knows them now. The runners whose instance
        drains are named, as the backend's last listing said. A scale-set pool's demand is
        the count of jobs its scale set was last assigned. A pool an operator drained is
        said so (it creates nothing)."""
        spec = self.spec
        if self.scale_set is not None:
            spec = replace(spec, assigned_jobs=self.scale_set.assigned)
        if self.draining:
            spec = replace(spec, draining=frozenset(self.draining))
        if self.drained is not None:
            spec = replace(spec, drained=True)
        in_force = self.min_idle_at(now)
        if in_force is not None and spec.ready:
            spec = replace(spec, min_idle=in_force.count)
        placement = self.placement()
        if placement is not None:
            spec = replace(
                spec,
                groups=node_groups(placement, spec.labels),
                unreachable=placement.unreachable,
            )
        return spec

    def placement(self) -> Placement | None:
        """Where the backend can start runners now; None when it is not a placing one."""
        if isinstance(self.provider, PlacingProvider):
            return self.provider.placement()
        return None

    def runner_labels(self, extra: frozenset[str]) -> tuple[str, ...]:
        """The labels a new runner registers with: none of its own for an ordinary pool (it
        has the pool's); on a pool over several hosts, the pool's as configured and its node
        group's ``extra`` ones, sorted (the backend places it on a node of that group)."""
        if not isinstance(self.provider, PlacingProvider):
            return ()
        return (*self.labels, *sorted(labels_beyond(extra, self.labels)))

    @property
    def keeps_idle(self) -> bool:
        """Whether the pool ever keeps idle runners (now, or in a warm window)."""
        return bool(self.spec.min_idle or (self.warm is not None and self.warm.peak))

    def failed(self, now: float, error: str) -> None:
        """Back off; several runners failing in the same cycle count as one failure."""
        self.healthy = False
        self.last_error = error
        if now < self.backoff_until:
            return
        self.consecutive_failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self.consecutive_failures - 1))
        self.backoff_until = now + delay

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.backoff_until = 0.0
        self.healthy = True
        self.last_error = None


def node_groups(placement: Placement, pool_labels: frozenset[str]) -> tuple[LabelGroup, ...]:
    """A placing backend's nodes as the scaler counts them: one group per set of labels the
    nodes offer beyond the pool's, with the slots of its nodes that are up and the names of
    those that are down; narrowest first."""
    slots: dict[frozenset[str], int] = {}
    down: dict[frozenset[str], list[str]] = {}
    for node in placement.nodes:
        extra = labels_beyond(node.extra_labels, pool_labels)
        slots[extra] = slots.get(extra, 0) + (node.slots if node.up else 0)
        down.setdefault(extra, [])
        if not node.up:
            down[extra].append(node.name)
    return tuple(
        LabelGroup(extra, slots[extra], tuple(down[extra]))
        for extra in sorted(slots, key=narrowest)
    )


#: What ``Events.scaled`` reports: a runner's creation or removal completed.
ScaleOperation = Literal["create", "delete"]
#: What failed, as ``Events.error`` reports it.
ErrorKind = Literal["create", "delete", "instance_died", "rerun"]
#: What the janitor cleaned up, as ``Events.cleaned`` reports it.
CleanupKind = Literal[
    "boot_timeout",
    "create_timeout",
    "github_orphan",
    "instance_lost",
    "instance_orphan",
    "interrupted_create",
]
#: What a ``pending`` runner's worker holds it back for before its creation begins: GitHub's
#: runner registration budget (spent by our own count, or paused), or a free one of its
#: pool's ``create_concurrency`` slots (:mod:`runnerscale.controller.workers`).
WaitingFor = Literal["registration_budget", "create_slot"]
#: The controller's loops that count their failed cycles (``Controller.errors``, as
#: ``Events.failed`` reports them): ``worker`` is a pool worker's task, ``scaleset`` a
#: scale-set pool's listener (run only with scale-set pools).
LoopName = Literal["events", "reconcile", "poll", "janitor", "worker", "scaleset"]
#: Why a runner is taken out of service, as ``Events.removing`` reports it.
RemovalReason = Literal[
    "job_done", "idle", "boot_timeout", "create_timeout", "operator", "interrupted"
]


def pool_by_runner_name(pools: Iterable[PoolRuntime], runner_name: str) -> PoolRuntime | None:
    """The pool whose ``runner_prefix`` begins ``runner_name`` (prefixes are unique across
    pools): which pool a runner GitHub names is of, whether or not the store holds it."""
    return next((pool for pool in pools if runner_name.startswith(pool.prefix)), None)


@dataclass
class Events:
    """Hooks for metrics, called where the controller learns each fact; ``runnerscale.metrics``
    implements them, so the controller never touches a metric. Pools, loops and the short
    kinds above only: never a runner's or a job's name (label values must stay few)."""

    scaled: Callable[[str, ScaleOperation], None] = lambda pool, operation: None
    error: Callable[[str, ErrorKind], None] = lambda pool, kind: None
    cleaned: Callable[[str, CleanupKind], None] = lambda pool, kind: None
    #: A job whose runner died mid-job was re-run.
    rerun: Callable[[str], None] = lambda pool: None
    #: A runner's removal began (a retry of one already begun is not reported again).
    removing: Callable[[str, RemovalReason], None] = lambda pool, reason: None
    #: A runner connected to GitHub for the first time: seconds since it was decided on.
    online: Callable[[str, float], None] = lambda pool, seconds: None
    #: A job the pool serves ended: seconds it ran (GitHub's ``completed_at - started_at``).
    job_ran: Callable[[str, float], None] = lambda pool, seconds: None
    #: One cycle of a loop (``reconcile``, ``poll``, ``janitor``) took this many seconds.
    tick: Callable[[str, float], None] = lambda loop, seconds: None
    #: The controller's status was recomputed (its runner counts hold from now on).
    refreshed: Callable[[], None] = lambda: None
    #: A GitHub poll left this many repositories unread (a read of theirs failed, or was
    #: not tried after the first ones all failed): their jobs are unknown until read again.
    unread: Callable[[int], None] = lambda repositories: None
    #: A cycle of a loop failed (an error escaped its step, or a pool worker's task failed
    #: unexpectedly: ``worker``), also counted in ``Controller.errors[loop]``.
    failed: Callable[[str], None] = lambda loop: None


#: One creation a decision asks for: the pool, the target, the labels to register with.
Planned = tuple[PoolRuntime, Target, Sequence[str]]


@dataclass
class Actions:
    store: Store
    github: GitHubAPI
    clock: Clock
    targets: dict[str, Target]
    pools: dict[str, PoolRuntime]
    events: Events = field(default_factory=Events)
    #: The unique part of runner names (the simulation passes a seeded one).
    suffix: Callable[[], str] = field(default=random_suffix)
    #: Tells the backends that want to know which runners came online (:mod:`.online`).
    online: OnlineNotices = field(default_factory=OnlineNotices)
    #: Per pool, where its runners are registered when not over GitHub's REST API (a
    #: scale-set pool's scale set).
    registrars: dict[str, Registrar] = field(default_factory=dict)
    #: Runners whose removal a call of this process is carrying out now, and when it began
    #: (the controller's clock). The janitor leaves those to their call for up to its
    #: ``delete_timeout``: a slow backend's delete would otherwise be finished by the retry,
    #: and the first call, an operator's, would report its runner as kept; past it, a call
    #: that hangs must not keep the runner for ever, and the janitor retries.
    removing: dict[str, float] = field(default_factory=dict)
    #: ``pending`` runners their pool's worker holds back before it begins their creation,
    #: and what for: they are not being created yet, so the janitor's create timeout leaves
    #: them alone (a row no worker holds is not here, and times out). A removal takes its
    #: runner out at once (the worker's wait then ends with nothing done).
    waiting: dict[str, WaitingFor] = field(default_factory=dict)
    #: How long a creation's and a removal's calls may take (the janitor's timeouts, shared
    #: with it): a call past its limit is abandoned (:mod:`runnerscale.controller.bounded`).
    timeouts: Timeouts = field(default_factory=Timeouts)

    def registrar(self, pool: str) -> Registrar:
        """Where the pool's runners are registered and unregistered."""
        return self.registrars.get(pool) or RestRegistrar(self.github)

    def registration_wait(self, runner: Runner) -> float:
        """Seconds the runner's registration, begun now, would wait for GitHub's budget
        (0.0: none, or its target is not configured: :meth:`start_runner` fails it)."""
        target = self.targets.get(runner.target)
        return 0.0 if target is None else self.registrar(runner.pool).registration_wait(target)

    async def registration_ready(self, runner: Runner) -> None:
        """Return once the runner's registration would be sent at once."""
        target = self.targets.get(runner.target)
        if target is not None:
            await self.registrar(runner.pool).registration_ready(target)

    def unregister_wait(self, runner: Runner) -> float:
        """Seconds deleting the runner's registration, begun now, would wait for a rate limit
        (0.0: none, or it has no registration or target to delete at)."""
        target = self.targets.get(runner.target)
        if runner.github_id is None or target is None:
            return 0.0
        return self.registrar(runner.pool).unregister_wait(target)

    def new_name(self, pool: PoolRuntime) -> str:
        return f"{pool.prefix}{self.suffix()}"

    def plan_runner(self, pool: PoolRuntime, target: Target, labels: Sequence[str] = ()) -> Runner:
        """Write a new ``pending`` runner: the decision to create it, before anything is asked
        of GitHub or the backend (:meth:`start_runner` acts on it). ``labels``: those it is to
        register with (:meth:`PoolRuntime.runner_labels`; none: the pool's)."""
        (runner,) = self._write_named(
            [(pool, target, labels)], lambda new: self.store.add_runner(new[0])
        )
        return runner

    def plan_runners(self, planned: Sequence[Planned]) -> list[Runner]:
        """:meth:`plan_runner` for each of a decision's creations, written in one transaction:
        a ramp of a thousand is one commit, and the decision that asks for it is not held up
        by a thousand."""
        return self._write_named(planned, self.store.add_runners)

    def _write_named(
        self, planned: Sequence[Planned], write: Callable[[list[Runner]], None]
    ) -> list[Runner]:
        """Write the planned runners with ``write``; a name the store holds already (or one
        drawn twice) fails the whole write, so those runners alone are named again and the
        write retried, up to :data:`NAME_ATTEMPTS` writes: a repeated suffix costs a retry,
        never the decision."""
        runners = [self._pending(pool, target, labels) for pool, target, labels in planned]
        for _ in range(NAME_ATTEMPTS - 1):
            try:
                write(runners)
            except RunnerNameTaken as taken:
                log.warning("%s: naming %d runner(s) again", taken, len(taken.names))
                runners = [
                    replace(runner, name=self.new_name(pool))
                    if runner.name in taken.names
                    else runner
                    for (pool, _, _), runner in zip(planned, runners, strict=True)
                ]
            else:
                return runners
        write(runners)  # the last attempt: a name still taken fails the decision's write
        return runners

    def _pending(self, pool: PoolRuntime, target: Target, labels: Sequence[str]) -> Runner:
        now = self.clock.now()
        return Runner(
            name=self.new_name(pool),
            pool=pool.name,
            target=target.key,
            state=RunnerState.PENDING,
            created_at=now,
            state_since=now,
            labels=tuple(labels),
        )

    async def start_runner(self, pool: PoolRuntime, runner: Runner) -> Runner | None:
        """Take a ``pending`` runner to ``booting``: register it with GitHub, start its
        instance, each call abandoned past ``timeouts.create`` and the grace (then it failed
        too). None when it failed (backoff set), or when another writer gave up on it
        meanwhile (the janitor's ``create_timeout``, an operator): then what this call made
        and nobody else knows of (the registration, the instance) is undone here, and the
        runner stays as the other writer left it."""
        target = self.targets.get(runner.target)
        if target is None:
            self._creation_failed(pool, runner, f"its target {runner.target} is not configured")
            return None
        # Its own labels (a node group's beyond the pool's), else the pool's.
        labels = runner.labels or pool.labels
        limit = self.timeouts.create_limit
        try:
            jit = await within(
                self.clock, limit, self.registrar(pool.name).register(target, runner.name, labels)
            )
        except GitHubError as error:
            self._creation_failed(pool, runner, f"GitHub refused the JIT config: {error}")
            return None
        except Overdue as error:
            # A registration GitHub made meanwhile is recorded nowhere, and not live in the
            # store: the janitor's GitHub orphan sweep deletes it.
            self._creation_failed(pool, runner, f"GitHub did not issue its JIT config: {error}")
            return None
        if not move(
            self.store,
            runner,
            RunnerState.CREATING,
            self.clock.now(),
            "registered with GitHub",
            github_id=jit.runner_id,
            attempts=runner.attempts + 1,
        ):
            # Its remover saw no registration (none was recorded): undo it here.
            await self._delete_registration(runner, target, jit.runner_id)
            return None
        spec = InstanceSpec(
            runner_name=runner.name, pool=pool.name, jitconfig=jit.encoded, labels=labels
        )
        try:
            instance = await within(self.clock, limit, pool.provider.create(spec))
        except (ProviderError, Overdue) as error:
            # What an abandoned create made anyway (an instance of no live runner, listed now
            # or later) is removed by the janitor's instance orphan sweep.
            if self._creation_failed(pool, runner, f"backend could not start it: {error}"):
                await self._unregister(runner)
            # else its remover (the janitor's create timeout, an operator) unregistered it
            return None
        if not move(
            self.store,
            runner,
            RunnerState.BOOTING,
            self.clock.now(),
            "instance started",
            instance_id=instance.id,
        ):
            return await self._moved_while_created(pool, runner, instance.id)
        # The pool counts as working again once a runner comes online (not merely started:
        # runners that crash at start must keep backing off).
        self.events.scaled(pool.name, "create")
        return runner

    async def _moved_while_created(
        self, pool: PoolRuntime, runner: Runner, instance_id: str
    ) -> Runner | None:
        """The backend created the instance, but the runner left ``creating`` meanwhile.

        Either it is at work already (it came online and took a job, or even finished it,
        before a slow create returned): it is kept, and its instance recorded. Or it was
        given up on (a create outlasting the create timeout, an operator's removal): it stays
        as its remover left it (``deleting``, ``gone``), and the instance, which its remover
        could not know of, is removed here."""
        current = self.store.get_runner(runner.name)
        if current is not None and current.state in _AT_WORK:
            if amend(self.store, current, "instance started", instance_id=instance_id):
                self.events.scaled(pool.name, "create")
                self.online.notify(pool.provider, pool.name, current.name, instance_id)
                return current
            return None  # moved once more: the janitor's inventory sweeps take it from here
        await self._discard_instance(pool, runner, instance_id)
        return None

    def _creation_failed(self, pool: PoolRuntime, runner: Runner, error: str) -> bool:
        """Count a failed creation (the pool backs off) and mark its runner ``failed``; False
        when another writer had moved the runner first (it undoes what it knows of)."""
        log.warning("pool %s: creating %s failed: %s", pool.name, runner.name, error)
        pool.failed(self.clock.now(), error)
        moved = move(
            self.store, runner, RunnerState.FAILED, self.clock.now(), error, last_error=error
        )
        self.events.error(pool.name, "create")
        return moved

    async def _delete_registration(self, runner: Runner, target: Target, runner_id: int) -> None:
        try:
            await self.registrar(runner.pool).unregister(target, runner_id)
        except GitHubError as error:
            # Not live in the store: the janitor's GitHub orphan sweep deletes it later.
            log.warning("runner %s: undoing its registration failed: %s", runner.name, error)
            self.events.error(runner.pool, "delete")

    async def _discard_instance(self, pool: PoolRuntime, runner: Runner, instance_id: str) -> None:
        log.info(
            "runner %s (%s): instance %s started after it was given up on: removing it",
            runner.name,
            pool.name,
            instance_id,
        )
        try:
            await self.delete_instance(pool, instance_id)
        except ProviderError as error:
            # Its runner is not live once gone: the janitor's instance orphan sweep removes it.
            log.warning("runner %s: removing its instance failed: %s", runner.name, error)
            self.events.error(runner.pool, "delete")

    async def _unregister(self, runner: Runner) -> DeleteOutcome | None:
        """Delete the runner's GitHub registration; None when GitHub could not be asked."""
        if runner.github_id is None:
            return DeleteOutcome.GONE
        target = self.targets.get(runner.target)
        if target is None:
            return DeleteOutcome.GONE
        try:
            return await self.registrar(runner.pool).unregister(target, runner.github_id)
        except GitHubError as error:
            log.warning("runner %s: deleting it in GitHub failed: %s", runner.name, error)
            self.events.error(runner.pool, "delete")
            return None

    async def remove_runner(
        self,
        runner: Runner,
        why: str,
        reason: RemovalReason | None,
        *,
        claimed: Callable[[], None] | None = None,
        wait_for_github: bool = True,
    ) -> bool:
        """Take a runner out of service, from the state it was read in. False when it is
        kept: GitHub says it is busy, or another writer moved it first (it took a job, another
        removal got there first), or the removal is left unfinished for the janitor to retry.
        ``why`` is for the log, ``reason`` for the metrics (None: a retry of a removal begun
        before, already reported). ``claimed`` is called once the runner is ``deleting`` on
        this call's behalf (what the caller counts: a timeout, an orphan). Without
        ``wait_for_github`` (the janitor, whose sweep has other duties), a delete that would
        wait for a paused or spent rate limit is not sent: the removal is left unfinished, as
        when the delete fails."""
        self.removing[runner.name] = self.clock.now()
        try:
            return await self._remove(runner, why, reason, claimed, wait_for_github)
        finally:
            self.removing.pop(runner.name, None)

    async def _remove(
        self,
        runner: Runner,
        why: str,
        reason: RemovalReason | None,
        claimed: Callable[[], None] | None,
        wait_for_github: bool,
    ) -> bool:
        previous = runner.state
        if not move(self.store, runner, RunnerState.DELETING, self.clock.now(), why):
            return False
        # No longer waiting to be created (its worker's task finds it gone when it wakes).
        self.waiting.pop(runner.name, None)
        if reason is not None and previous is not RunnerState.DELETING:
            self.events.removing(runner.pool, reason)
        if claimed is not None:
            claimed()
        if previous in (RunnerState.FINISHED, RunnerState.DELETING) and self._job_completed(runner):
            # GitHub removes a just-in-time runner itself once its job is done: no call. Nor
            # on a retry: a removal begun before the job's end was heard of (its instance
            # exited first) whose delete failed needs none once it is, so it does not wait
            # for GitHub (a spent rate limit holds deletes until the window resets, up to an
            # hour). If GitHub has not removed it yet, the janitor's orphan sweep deletes the
            # leftover registration.
            return await self.remove_instance(runner)
        if not wait_for_github and (held := self.unregister_wait(runner)) > 0:
            log.debug("runner %s: its delete would wait %.0fs for a rate limit", runner.name, held)
            return False  # retried by the janitor while the runner stays ``deleting``
        outcome = await self._unregister(runner)
        if outcome is None:
            return False  # retried by the janitor while the runner stays ``deleting``
        if outcome is DeleteOutcome.BUSY:
            if previous is RunnerState.FINISHED or (
                previous is RunnerState.DELETING and not await self._instance_runs(runner)
            ):
                # Its instance is gone but GitHub still holds the job (until GitHub notices
                # the runner is lost): stay ``deleting``, retried by the janitor.
                return False
            move(self.store, runner, RunnerState.BUSY, self.clock.now(), "GitHub: still busy")
            return False
        return await self.remove_instance(runner)

    def _job_completed(self, runner: Runner) -> bool:
        if runner.job_id is None:
            return False
        job = self.store.get_job(runner.job_id)
        return job is not None and job.state is JobState.COMPLETED

    async def _instance_runs(self, runner: Runner) -> bool:
        """Whether the runner's instance still runs (when the backend cannot say: yes)."""
        pool = self.pools.get(runner.pool)
        if runner.instance_id is None or pool is None:
            return False
        try:
            instance = await self.get_instance(pool, runner.instance_id)
        except ProviderError as error:
            log.warning("runner %s: cannot tell whether its instance runs: %s", runner.name, error)
            return True
        return instance is not None and instance.running

    async def remove_instance(self, runner: Runner) -> bool:
        pool = self.pools.get(runner.pool)
        if runner.instance_id is not None and pool is not None:
            try:
                await self.delete_instance(pool, runner.instance_id)
            except ProviderError as error:
                log.warning("runner %s: removing its instance failed: %s", runner.name, error)
                self.events.error(runner.pool, "delete")
                return False
        if not move(self.store, runner, RunnerState.GONE, self.clock.now(), "removed"):
            return False  # another removal finished it first (and counted it)
        self.events.scaled(runner.pool, "delete")
        return True

    def rate_limited(self, operation: WaitedCall, key: str) -> bool:
        """Whether a call of ``operation`` about the target ``key``, sent now, would wait for
        a paused or spent rate limit (up to an hour): a loop with other duties does not make
        it, and tries again at its next cycle."""
        target = self.targets.get(key)
        return target is not None and self.github.call_wait(operation, target) > 0

    async def delete_instance(self, pool: PoolRuntime, instance_id: str) -> None:
        """The backend's ``delete``, abandoned past ``timeouts.delete`` and the grace: one
        that hangs then fails (:class:`ProviderError`), so that it holds neither its caller
        (a worker's removal, the janitor's sweep) nor its runner, which stays ``deleting``
        for the janitor to retry; an orphan's delete is tried again by the next sweep."""
        limit = self.timeouts.delete_limit
        await self._backend(
            pool, f"deleting {instance_id}", limit, pool.provider.delete(instance_id)
        )

    async def list_instances(self, pool: PoolRuntime) -> list[Instance]:
        """The backend's ``list``, abandoned past ``timeouts.delete`` and the grace
        (:attr:`Timeouts.list_limit`): one that hangs then fails (:class:`ProviderError`, as
        a backend that cannot list), so that it holds neither the janitor's sweep nor the
        poll."""
        limit = self.timeouts.list_limit
        return await self._backend(pool, "listing its instances", limit, pool.provider.list())

    async def get_instance(self, pool: PoolRuntime, instance_id: str) -> Instance | None:
        """The backend's ``get``, bounded as :meth:`list_instances` is."""
        limit = self.timeouts.list_limit
        return await self._backend(
            pool, f"reading {instance_id}", limit, pool.provider.get(instance_id)
        )

    async def _backend(self, pool: PoolRuntime, what: str, limit: float, call: Awaitable[T]) -> T:
        """A backend call bounded by ``limit``; past it, a :class:`ProviderError` naming the
        pool and what was asked."""
        try:
            return await within(self.clock, limit, call)
        except Overdue as error:
            raise ProviderError(f"pool {pool.name}: {what}: {error}") from None

    async def refresh_runner_lists(self, keys: Iterable[str]) -> list[GitHubError]:
        """Read GitHub's runner lists of these targets and apply them; runners seen online for
        the first time mark their pool as working. Every target is tried but one whose list
        a rate limit holds (:meth:`rate_limited`: not read, no error); the errors are
        returned."""
        errors: list[GitHubError] = []
        now = self.clock.now()
        for key in sorted(set(keys)):
            target = self.targets.get(key)
            if target is None or self.rate_limited("list-runners", key):
                continue
            try:
                listed = await self.github.list_runners(target)
            except GitHubError as error:
                log.warning("runners of %s: %s", target.name, error)
                errors.append(error)
                continue
            for runner in apply_runner_list(self.store, key, listed, now):
                self.connected(runner)
        return errors

    def connected(self, runner: Runner) -> None:
        """A runner of ours connected to GitHub for the first time (it was being created or
        booting): how long that took since it was decided on, and its pool works; its
        backend hears of it if it wants to (once its instance is known: a runner online before
        its create returned is told of when the create returns)."""
        self.events.online(runner.pool, max(0.0, self.clock.now() - runner.created_at))
        self.came_online(runner.name)
        pool = self.pools.get(runner.pool)
        if pool is not None:
            self.online.notify(pool.provider, pool.name, runner.name, runner.instance_id)

    def came_online(self, runner_name: str) -> None:
        """A runner of ours connected to GitHub: its pool works (ends its failure backoff)."""
        runner = self.store.get_runner(runner_name)
        pool = self.pools.get(runner.pool) if runner is not None else None
        if pool is None:
            return
        if not pool.healthy:
            log.info("pool %s: runner %s came online: the pool works again", pool.name, runner_name)
        pool.succeeded()

    async def recover(self) -> None:
        """Repair what a crash left between a state write and its side effect."""
        for runner in self.store.runners(states=[RunnerState.PENDING, RunnerState.CREATING]):
            pool = self.pools.get(runner.pool)
            instance = None
            if pool is not None:
                instance = next(
                    (i for i in await self.list_instances(pool) if i.runner_name == runner.name),
                    None,
                )
            if (
                runner.state is RunnerState.CREATING
                and instance is not None
                and not instance.incomplete
            ):
                move(
                    self.store,
                    runner,
                    RunnerState.BOOTING,
                    self.clock.now(),
                    "adopted",
                    instance_id=instance.id,
                )
                continue
            # Its JIT config is lost with the crash: undo the registration, if any. What its
            # create left half-made (``incomplete``) runs no runner: the janitor removes it.
            await self.remove_runner(runner, "interrupted while being created", "interrupted")
