"""Pure scaling decisions: how many runners each pool should start and where, which idle ones
to retire, which finished ones to reap.

Why this module is pure
-----------------------
Deciding and acting are separated, as in actions-runner-controller (ARC): ``decide`` takes the
pool config, the observed jobs, the known runners and the time, and returns a ``Decision``. It
talks to nothing: no GitHub, no backend, no store, no clock other than the ``now`` it is given
(an import-linter contract keeps I/O modules out). The controller observes, calls ``decide``,
and acts on the result through its protocols. That split is what makes the rules testable as
plain functions (table cases and property tests), makes a decision reproducible from a logged
snapshot, and lets the same rules drive production on the wall clock and the simulator on a
virtual one. Acting may fail half-way; that is fine, because the next cycle decides again from
what it then observes.

Demand is recomputed every cycle
--------------------------------
Demand is recomputed from observed state every cycle, never kept as a running +1/-1 count.
Webhooks get lost, duplicated and reordered, creations fail, runners die while booting; a
counter that is incremented on "queued" and decremented on "in_progress" drifts with every one
of those and never heals. Counting what is there right now (queued jobs, runners by state)
heals by construction: a wrong decision lasts at most one cycle.

Counting rules (per pool)
-------------------------
- Only ``queued`` jobs create demand. ``waiting`` jobs (environment approval) need no runner
  yet; ``in_progress`` and ``completed`` ones need none. Each queued job is routed as GitHub
  routes it, with ``model.match_pool``: the pool whose labels contain all of the job's labels,
  the most specific one (fewest extra labels) first, then the declared order. A job no pool
  serves is reported in ``Decision.unmatched`` and never provisioned for.
- ``free`` runners are the ones that can take a job now or soon: pending, creating, booting or
  idle (``RunnerState.free``). ``live`` runners count against ``max_runners``
  (``RunnerState.live``: also busy, finished and deleting ones).
- A busy runner whose job is not known yet (GitHub's runner list showed it busy before the
  job's ``in_progress`` arrived) has taken one of the pool's queued jobs: that one is not
  counted as queued.
- ``needed_free = queued + min_idle``;
  ``create = max(0, min(needed_free - free, max_runners - live))``. Nothing is ever created
  above the cap.
- Scale-down follows ARC's rule: only runners that are registered and idle are touched, never
  a pending, creating, booting or busy one. With ``surplus = free - needed_free > 0``, the idle
  runners idle for at least ``idle_timeout`` (since ``idle_since``, else ``state_since``) are
  candidates, and the ``min(surplus, candidates)`` idle longest are removed (ties by name). The
  controller deletes each from GitHub first (a 422 "busy" means it just took a job: it stays)
  and only then removes its instance; partial progress is fine, the next cycle finishes.
- When the pool holds more runners than ``max_runners`` (the cap was lowered, or runners were
  adopted on start), idle runners are removed regardless of the timeout to get down to the cap,
  oldest idle first. Runners already on their way out (finished, deleting) still count against
  the cap for creation, but not as an excess to remove: they leave by themselves, and counting
  them would retire one more idle runner every cycle until their deletion completes.

- Runners named in ``PoolSpec.draining`` are on instances that must take no new job (a spot
  interruption notice): they count against the cap, but not as free, so a queued job gets
  another runner; they are never scaled down here (the controller removes them once they are
  not busy, with the reason ``interrupted``). The reason counts them (``1 draining``).

- A drained pool (``PoolSpec.drained``: an operator took it out of service with
  ``runnerscale pools drain``) creates nothing: no runner for its queued jobs (they stay
  queued, routed to it, and counted), none for ``min_idle``, whatever the budget or backoff.
  Every idle runner of it is removed now, whatever its idle time, oldest idle first; busy
  ones finish their job (never stopped), then are reaped like any finished runner. Its
  ``desired`` is its busy runners. The controller removes its booting runners and, once it
  holds no live runner, sweeps its backend (``runnerscale.controller.pooldrain``).

- Finished runners (their one job is done) are reaped: ``reap`` names them all, oldest first.
  They still count against the cap in the cycle that reaps them (their removal may fail, and
  an instance may still be there); the next cycle, once they are gone, uses their slots.
- A pool with a budget (``PoolSpec.budget_per_day``) whose spend today (``spent``: US
  dollars since 00:00 UTC) has reached it creates nothing until the next 00:00 UTC. A pool
  backing off after failed creations (``backoff``: until when) creates nothing before that
  time. Either way ``held_back`` says how many it would have created, ``held_back_by`` which
  of the two holds them (the budget first: it lasts longer), and ``reason`` says why and
  until when. Removals and reaping go on; running runners are never stopped for either.

``create`` and ``remove`` are never both non-empty for one pool: creating needs fewer free
runners than needed and room under the cap; removing needs more free runners than needed or a
pool over its cap. (A pool over several hosts may have both a runner no job can take and a job
that needs a new one: its removals wait for a cycle without creations.)

Scale-set pools (``PoolSpec.assigned_jobs``)
---------------------------------------------
A pool fed by a runner scale set knows its demand exactly: GitHub counts the jobs it has
assigned to the scale set, waiting or running (``statistics.totalAssignedJobs``). Its queued
count is ``max(0, assigned - busy)`` (busy runners run some of them), so ``desired =
min(max_runners, assigned + min_idle)``; the cap, the budget and the failure backoff apply as
to any pool. Queued jobs its labels match (a webhook or the poll saw them) are routed as usual
but not counted again. Its runners register at its scale set's target (``PoolSpec.target``).

Where new runners register (``create_on``)
-------------------------------------------
With one target, all of them there. With several, each queued job of the pool counts for the
first target (in config order) that covers its repository, each free runner of the pool counts
against its own target, and each new runner goes to the target with the most demand left (ties:
config order). The decision is the whole decision: the controller writes it and acts on it,
and chooses nothing itself.

Pools over several hosts (``PoolSpec.groups``)
----------------------------------------------
A backend over a fleet of nodes (a ``PlacingProvider``: the SSH backend) tells its nodes'
health, slots and labels; the controller hands them over as the pool's node *groups*: the
extra labels a set of nodes offers beyond the pool's, and the total slots of its nodes that
are up (a group with no slot on an up node is not live). ``groups=None`` is an ordinary pool,
decided by the rules above, unchanged. For a pool with groups:

- A job is served when its labels are within the pool's labels plus those of some live
  group (``PoolSpec.serves``); ``match_pool`` ranks such a pool by the narrowest covering
  group's labels. A job only a down node (or no node) could take is unmatched: reported,
  never provisioned for, and ``explain_unmatched`` says so ("pool 'vps': no live node offers
  deploy (down: 10.0.0.12:2222)").
- A runner belongs to the group whose extra labels equal its labels (``Runner.labels``, the
  ones it registered with) minus the pool's; a runner without labels of its own has the
  pool's, so it is of the group without extra labels. Runners named in
  ``PoolSpec.unreachable`` are on nodes that are down: they count against ``max_runners``
  (they exist, and their node may come back) but neither as free nor against a live group's
  slots (a node that is down holds no slot: its runners are not counted twice), and they are
  never scaled down (their node cannot be asked to remove them).
- Queued jobs are matched one by one, the most constrained first (fewest covering groups,
  then by id): to a free runner that covers it (on a live node; the narrowest group first),
  else to a new runner in a covering group with a free slot (the narrowest first, so the
  slots of deploy nodes are kept for deploy jobs while other nodes can take a plain job),
  never above ``max_runners - live`` in all. A busy runner whose job is not known yet has
  taken the first queued job it covers. Jobs that live groups cover but that find no room
  wait; ``reason`` says how many, and what they need.
- ``min_idle``: free runners no queued job takes count towards it; each one missing is
  created in the group with the most free slots (on a tie the narrowest).
- Scale-down is as above, on the runners of live nodes: the idle ones no queued job takes
  are the candidates for the timeout (``surplus`` = those free runners beyond ``min_idle``).
- ``create_labels`` names the group (its extra labels) of each new runner; the controller
  registers it with the pool's labels plus those, and the backend places it on a node of
  that group.
- Runners an operator asks for by hand (``runnerscale scale up``, :func:`manual_runners`)
  are counted the same way, whatever the demand: each in the group with the most free slots
  (on a tie the narrowest), up to the cap and the free slots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Final, Literal

from runnerscale.model import (
    Job,
    JobState,
    LabelGroup,
    PoolSpec,
    Runner,
    RunnerState,
    Target,
    labels_beyond,
    match_pool,
    narrowest,
    normalize_labels,
    until_next_utc_day,
)

__all__ = [
    "ROUTED_JOB_STATES",
    "Decision",
    "HeldBackBy",
    "PoolDecision",
    "budget_reached",
    "decide",
    "manual_runners",
]

#: Live runners that leave by themselves: they hold a slot under the cap but are no excess.
_LEAVING = frozenset({RunnerState.FINISHED, RunnerState.DELETING})
_STATE = attrgetter("state")
_ID = attrgetter("id")
_ON_THE_WAY = frozenset({RunnerState.PENDING, RunnerState.CREATING, RunnerState.BOOTING})
#: Job states routed to a pool: queued jobs are its demand, waiting ones only routed. The
#: decision looks at no other job (the controller reads only these rows for it).
ROUTED_JOB_STATES: Final = (JobState.QUEUED, JobState.WAITING)
_ROUTED = frozenset(ROUTED_JOB_STATES)


#: What holds a pool's creations back (``PoolDecision.held_back_by``).
HeldBackBy = Literal["budget", "failure_backoff"]


@dataclass(frozen=True)
class PoolDecision:
    """What one pool should do now, with the counts it was decided from."""

    pool: str
    #: Queued jobs this pool serves.
    queued: int
    busy: int
    #: Runners on the way or idle (``RunnerState.free``).
    free: int
    #: Runners counting against the cap (``RunnerState.live``).
    live: int
    #: What should exist: ``min(max_runners, busy + queued + min_idle)``.
    desired: int
    #: New runners to start now.
    create: int
    #: Names of idle runners to scale down now, idle longest first.
    remove: tuple[str, ...]
    #: One human sentence for the daemon's log: why.
    reason: str
    #: The target (``Target.key``) of each new runner, one per ``create``, when ``decide`` was
    #: given the targets.
    create_on: tuple[str, ...] = ()
    #: Names of finished runners to reap now, oldest first.
    reap: tuple[str, ...] = ()
    #: Runners the pool would create now but for its budget or its failure backoff.
    held_back: int = 0
    #: What holds them back: ``budget`` or ``failure_backoff`` ("" when nothing is).
    held_back_by: HeldBackBy | Literal[""] = ""
    #: For a pool over several hosts: the node group (its extra labels) of each new runner,
    #: one per ``create``; empty for an ordinary pool.
    create_labels: tuple[frozenset[str], ...] = ()
    #: Live runners on nodes that are down (counted in ``live``, not in ``free``).
    unreachable: int = 0
    #: Live runners whose instance drains (counted in ``live``, not in ``free``).
    draining: int = 0


@dataclass(frozen=True)
class Decision:
    """The decision for every pool of one cycle."""

    #: Every pool, in config order.
    pools: dict[str, PoolDecision]
    #: Job id -> chosen pool (None: no pool serves it), for queued and waiting jobs.
    job_pools: dict[int, str | None]
    #: Queued job ids no pool serves, ascending.
    unmatched: tuple[int, ...]


def decide(
    pools: Sequence[PoolSpec],
    jobs: Sequence[Job],
    runners: Sequence[Runner],
    now: float,
    *,
    targets: Sequence[Target] = (),
    backoff: Mapping[str, float] | None = None,
    spent: Mapping[str, float] | None = None,
) -> Decision:
    """Decide, for every pool, how many runners to create and where, which idle runners to
    remove and which finished ones to reap.

    ``targets``: where runners can register, in config order (without them, ``create_on`` is
    empty). ``backoff``: per pool, until when failed creations hold its creations back.
    ``spent``: per pool, US dollars spent today (UTC), against its ``budget_per_day``.
    Pure and deterministic: the same input gives the same output, whatever the order of
    ``jobs`` and ``runners``. Runners of pools not in ``pools`` are ignored.
    """
    names = [pool.name for pool in pools]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"pool names must be unique, repeated: {', '.join(duplicates)}")

    job_pools, queued, unmatched = _route(pools, jobs)

    by_pool: dict[str, list[Runner]] = {name: [] for name in names}
    for runner in runners:
        if runner.pool in by_pool:
            by_pool[runner.pool].append(runner)

    backoff = backoff or {}
    spent = spent or {}
    decisions = {}
    for pool in pools:
        # A scale-set pool's demand is its assigned count: the jobs its labels match (seen by
        # webhook or poll, or reported by its listener) are not counted a second time.
        pool_jobs = queued[pool.name] if pool.assigned_jobs is None else []
        decided = _decide_pool(pool, pool_jobs, by_pool[pool.name], now)
        if pool.drained:
            decided = _drained(decided, by_pool[pool.name])
        decided = _within_budget(decided, pool, spent.get(pool.name, 0.0), now)
        decided = _hold_back(decided, backoff.get(pool.name, 0.0), now)
        create_on = _targets_for(
            _pool_targets(pool, targets), decided.create, pool_jobs, pool, by_pool[pool.name]
        )
        decisions[pool.name] = replace(decided, create_on=create_on, reap=_reap(by_pool[pool.name]))
    return Decision(pools=decisions, job_pools=job_pools, unmatched=unmatched)


def _route(
    pools: Sequence[PoolSpec], jobs: Iterable[Job]
) -> tuple[dict[int, str | None], dict[str, list[Job]], tuple[int, ...]]:
    """Route every queued or waiting job as GitHub does (``match_pool``): the pool chosen
    for each (``Decision.job_pools``), each pool's queued jobs (by id) and the queued ones
    no pool serves (ascending).

    Each label set is matched once per call: at fleet scale thousands of jobs share a
    handful of label sets, and matching every job made the decision grow with the queue
    times the pools. What is left per job is a dictionary look-up."""
    matched: dict[tuple[str, ...], PoolSpec | None] = {}
    job_pools: dict[int, str | None] = {}
    queued: dict[str, list[Job]] = {pool.name: [] for pool in pools}
    unmatched: set[int] = set()
    for job in sorted((job for job in jobs if job.state in _ROUTED), key=_ID):
        labels = tuple(job.labels)
        if labels in matched:
            pool = matched[labels]
        else:
            pool = matched[labels] = match_pool(pools, labels)
        job_pools[job.id] = pool.name if pool is not None else None
        if job.state is not JobState.QUEUED:
            continue
        if pool is None:
            unmatched.add(job.id)
        else:
            queued[pool.name].append(job)
    return job_pools, queued, tuple(sorted(unmatched))


def _reap(runners: Iterable[Runner]) -> tuple[str, ...]:
    """The finished runners, oldest first (only they are sorted: the pool may hold
    thousands of live ones)."""
    finished = (runner for runner in runners if runner.state is RunnerState.FINISHED)
    return tuple(runner.name for runner in sorted(finished, key=lambda r: (r.created_at, r.name)))


def _drained(decided: PoolDecision, runners: Sequence[Runner]) -> PoolDecision:
    """A drained pool: nothing created, every idle runner removed (oldest idle first), its
    queued jobs left waiting; the reason says so (after the counts ``_decide_pool`` wrote)."""
    idle = tuple(runner.name for runner in _idle_longest_first(runners))
    done: list[str] = []
    if decided.queued:
        done.append(f"{decided.queued} queued wait")
    if idle:
        done.append(f"remove {len(idle)} idle")
    if decided.busy == 1:
        done.append("1 busy finishes its job")
    elif decided.busy:
        done.append(f"{decided.busy} busy finish their jobs")
    counts = decided.reason.split(": ", 1)[0]
    return replace(
        decided,
        desired=decided.busy,
        create=0,
        create_labels=(),
        remove=idle,
        reason=f"{counts}: drained ({', '.join(done) or 'nothing left'}); "
        f"runnerscale pools resume {decided.pool} puts it back in service",
    )


def budget_reached(pool: PoolSpec, spent: float) -> bool:
    """Whether the pool's spend today (``spent``, US dollars) has reached its budget: it then
    launches nothing new until 00:00 UTC (neither for demand nor by hand)."""
    return pool.budget_per_day is not None and spent >= pool.budget_per_day


def _within_budget(decided: PoolDecision, pool: PoolSpec, spent: float, now: float) -> PoolDecision:
    """No creation once the pool's spend today has reached its budget, until 00:00 UTC."""
    budget = pool.budget_per_day
    if not decided.create or budget is None or not budget_reached(pool, spent):
        return decided
    return _held(
        decided,
        "budget",
        f"held back by the budget: ${spent:.2f} spent today of ${budget:.2f} a day, until "
        f"{until_next_utc_day(now)}",
    )


def _hold_back(decided: PoolDecision, backoff_until: float, now: float) -> PoolDecision:
    """No creation while the pool backs off after failed creations."""
    if not decided.create or now >= backoff_until:
        return decided
    return _held(
        decided,
        "failure_backoff",
        f"held back by the failure backoff for {backoff_until - now:.0f}s more",
    )


def _held(decided: PoolDecision, by: HeldBackBy, why: str) -> PoolDecision:
    return replace(
        decided,
        create=0,
        create_labels=(),
        held_back=decided.create,
        held_back_by=by,
        reason=f"{decided.reason}; {why}",
    )


def _pool_targets(pool: PoolSpec, targets: Sequence[Target]) -> Sequence[Target]:
    """Where the pool may register runners: its own target when it has one (a scale-set
    pool's scale set lives there); a scale-set pool without one, the first; else all."""
    if pool.target is not None:
        return [target for target in targets if target.key == pool.target]
    return targets[:1] if pool.assigned_jobs is not None else targets


def _targets_for(
    targets: Sequence[Target],
    count: int,
    queued: Sequence[Job],
    pool: PoolSpec,
    runners: Sequence[Runner],
) -> tuple[str, ...]:
    """Where the pool's new runners register: where its queued jobs are, most first.
    ``runners``: the pool's (those whose instance drains take no job, so count nowhere)."""
    if not targets or not count:
        return ()
    keys = [target.key for target in targets]
    if len(keys) == 1:
        return (keys[0],) * count
    demand: Counter[str] = Counter()
    # Counted by repository: a queue holds few of them, each covered by one target.
    for repo, jobs in Counter(job.repo for job in queued).items():
        target = next((t for t in targets if t.covers(repo)), None)
        if target is not None:
            demand[target.key] += jobs
    for runner in _not_draining(pool, runners):
        if runner.state.free:
            demand[runner.target] -= 1
    chosen: list[str] = []
    for _ in range(count):
        key = max(keys, key=lambda k: (demand[k], -keys.index(k)))
        chosen.append(key)
        demand[key] -= 1
    return tuple(chosen)


def _idle_since(runner: Runner) -> float:
    return runner.idle_since if runner.idle_since is not None else runner.state_since


def _idle_longest_first(runners: Iterable[Runner]) -> list[Runner]:
    """Idle runners, idle longest first; the name makes equal times deterministic."""
    return sorted(
        (runner for runner in runners if runner.state is RunnerState.IDLE),
        key=lambda runner: (_idle_since(runner), runner.name),
    )


def _by_state(runners: Iterable[Runner]) -> Counter[RunnerState]:
    """How many runners in each state (one pass, in C: ``map`` over an attribute getter)."""
    return Counter(map(_STATE, runners))


def _live(by_state: Mapping[RunnerState, int]) -> int:
    """Runners counting against the cap (``RunnerState.live``)."""
    return sum(count for state, count in by_state.items() if state.live)


def _free(by_state: Mapping[RunnerState, int]) -> int:
    """Runners that can take a job now or soon (``RunnerState.free``)."""
    return sum(count for state, count in by_state.items() if state.free)


def _staying(by_state: Mapping[RunnerState, int]) -> int:
    """Live runners that do not leave by themselves (what an excess over the cap counts)."""
    return sum(count for state, count in by_state.items() if state.live and state not in _LEAVING)


@dataclass(frozen=True)
class _Removal:
    """Idle runners to scale down, and the counts the reason names."""

    names: tuple[str, ...]
    by_timeout: int
    by_cap: int
    over_cap: int


def _removal(
    pool: PoolSpec,
    idle: Sequence[Runner],
    *,
    eligible: int,
    surplus: int,
    staying: int,
    now: float,
) -> _Removal:
    """Which of ``idle`` (in removal order) go: up to ``surplus`` of the first ``eligible``
    ones idle for ``idle_timeout``, or as many as the pool is over its cap.

    The timed-out runners are a prefix of the first ``eligible`` (same timeout, sorted by idle
    time), so both rules remove a prefix of ``idle`` and the larger count covers both."""
    timed_out = sum(
        1 for runner in idle[:eligible] if now - _idle_since(runner) >= pool.idle_timeout
    )
    by_timeout = min(surplus, timed_out)
    over_cap = max(0, staying - pool.max_runners)
    by_cap = min(over_cap, len(idle))
    names = tuple(runner.name for runner in idle[: max(by_timeout, by_cap)])
    return _Removal(names, by_timeout, by_cap, over_cap)


def _counts(queued: int, by_state: Mapping[RunnerState, int]) -> tuple[int, int, int, str]:
    """Busy, on the way and idle runners (of ``by_state``: how many in each state), and the
    reason's sentence of them and the queue."""
    busy = by_state.get(RunnerState.BUSY, 0)
    on_the_way = sum(by_state.get(state, 0) for state in _ON_THE_WAY)
    idle = by_state.get(RunnerState.IDLE, 0)
    return (
        busy,
        on_the_way,
        idle,
        f"{queued} queued, {busy} busy, {on_the_way} on the way, {idle} idle",
    )


def _action(
    pool: PoolSpec,
    create: int,
    short: int,
    removal: _Removal,
    surplus: int,
    *,
    placed: str = "",
) -> str:
    """The reason's account of what the pool does. ``short``: runners wanted but kept out by
    the cap; ``placed``: where the new runners go, for a pool over several hosts."""
    if create:
        action = f"create {create} (cap {pool.max_runners}{placed})"
        if short:
            action += f", {short} more wanted but the cap is reached"
        return action
    if removal.by_cap > removal.by_timeout:
        return (
            f"remove {len(removal.names)} idle to get down to the lowered cap of {pool.max_runners}"
        )
    if removal.names:
        return f"remove {len(removal.names)} idle for {pool.idle_timeout:g}s or more"
    if removal.over_cap:
        return f"over the cap of {pool.max_runners} but no idle runner to remove, wait"
    if short:
        return f"at the cap of {pool.max_runners}, {short} wanted, wait"
    if surplus:
        return f"{surplus} more than needed, idle ones go after {pool.idle_timeout:g}s idle"
    if pool.min_idle:
        return f"enough, keeping min_idle {pool.min_idle}"
    return "nothing to do"


def _decide_pool(
    pool: PoolSpec, jobs: Sequence[Job], runners: list[Runner], now: float
) -> PoolDecision:
    if pool.groups is not None:
        return _decide_placed(pool, jobs, runners, now)
    tally = _Tally.of(pool, runners)
    if pool.assigned_jobs is not None:
        # A scale-set pool: GitHub says how many jobs it holds for the pool, waiting or
        # running; the busy runners run some of them, the rest wait for a runner.
        queued = max(0, pool.assigned_jobs - tally.every[RunnerState.BUSY])
    else:
        # A runner GitHub shows busy before its job's move to in_progress was observed has
        # taken one of the queued jobs: that job needs no other runner.
        queued = max(0, len(jobs) - tally.taken)
    free = _free(tally.available)
    live = _live(tally.every)
    busy, _, _, counts = _counts(queued, tally.every)
    if pool.assigned_jobs is not None:
        counts = f"{pool.assigned_jobs} assigned to the scale set, {counts}"
    draining = _live(tally.draining)
    if draining:
        counts += f", {draining} draining"

    needed_free = queued + pool.min_idle
    room = pool.max_runners - live
    create = max(0, min(needed_free - free, room))

    surplus = max(0, free - needed_free)
    staying = _staying(tally.every)
    # Idle runners are sorted only when some may go (a surplus, or more than the cap): a
    # pool that ramps up or is fully busy removes none.
    idle = (
        _idle_longest_first(_not_draining(pool, runners))
        if surplus or staying > pool.max_runners
        else []
    )
    removal = _removal(pool, idle, eligible=len(idle), surplus=surplus, staying=staying, now=now)
    short = max(0, needed_free - free - create)
    return PoolDecision(
        pool=pool.name,
        queued=queued,
        busy=busy,
        free=free,
        live=live,
        desired=min(pool.max_runners, busy + queued + pool.min_idle),
        create=create,
        remove=removal.names,
        reason=f"{counts}: {_action(pool, create, short, removal, surplus)}",
        draining=draining,
    )


@dataclass(frozen=True)
class _Tally:
    """An ordinary pool's runners counted by state, each counter made in one pass: a pool
    of thousands of runners is counted, not walked once per figure."""

    #: Every runner of the pool, by state.
    every: Counter[RunnerState]
    #: Those whose instance does not drain (they may take a job), by state.
    available: Counter[RunnerState]
    #: Those whose instance drains, by state.
    draining: Counter[RunnerState]
    #: Busy runners whose job is not known yet (each has taken a queued job).
    taken: int

    @classmethod
    def of(cls, pool: PoolSpec, runners: Sequence[Runner]) -> _Tally:
        every = _by_state(runners)
        draining: Counter[RunnerState] = Counter()
        if pool.draining:
            draining = _by_state(r for r in runners if r.name in pool.draining)
        taken = (
            sum(1 for r in runners if r.job_id is None and r.state is RunnerState.BUSY)
            if every[RunnerState.BUSY]
            else 0
        )
        return cls(every, every - draining if draining else every, draining, taken)


def _not_draining(pool: PoolSpec, runners: Iterable[Runner]) -> list[Runner]:
    """The runners that may take a job: not those whose instance drains."""
    return [runner for runner in runners if runner.name not in pool.draining]


def _draining(pool: PoolSpec, runners: Iterable[Runner]) -> int:
    """Live runners whose instance drains."""
    return sum(1 for r in runners if r.name in pool.draining and r.state.live)


class _Filling:
    """A pool over several hosts being filled: the free slots of its live node groups, its
    free runners on live nodes, and the new runners placed so far (module docstring)."""

    def __init__(self, pool: PoolSpec, runners: Sequence[Runner]) -> None:
        self.pool = pool
        self.groups = pool.live_groups()
        self.reachable = [runner for runner in runners if runner.name not in pool.unreachable]
        self.room = {group.extra_labels: group.slots for group in self.groups}
        for runner in self.reachable:
            if runner.state.live and self.group_of(runner) in self.room:
                self.room[self.group_of(runner)] -= 1
        self.cap_room = max(0, pool.max_runners - sum(1 for r in runners if r.state.live))
        #: Free runners on live nodes (not draining), narrowest group first.
        self.free = sorted(
            (runner for runner in _not_draining(pool, self.reachable) if runner.state.free),
            key=lambda runner: (narrowest(self.group_of(runner)), runner.name),
        )
        #: Free runners a queued job will take.
        self.matched: set[str] = set()
        #: The group (its extra labels) of each new runner.
        self.creates: list[frozenset[str]] = []
        #: Runners wanted but kept out by the cap.
        self.short = 0
        #: Per job that waits for a free slot: its labels beyond the pool's.
        self.no_slot: list[frozenset[str]] = []

    def group_of(self, runner: Runner) -> frozenset[str]:
        """The runner's group: its labels beyond the pool's (none of its own: the pool's)."""
        return labels_beyond(runner.labels, self.pool.labels)

    def covers(self, runner: Runner, job: Job) -> bool:
        return normalize_labels(job.labels) <= self.pool.labels | self.group_of(runner)

    def serve(self, jobs: Sequence[Job], runners: Sequence[Runner]) -> list[Job]:
        """Match each queued job to a free runner or new room; returns the jobs that still
        need a runner (a busy runner whose job is not known yet has taken one it covers)."""
        covering = {job.id: self.pool.covering(job.labels) for job in jobs}
        # Most constrained first: a job only deploy nodes can take picks before one any can.
        waiting = sorted(jobs, key=lambda job: (len(covering[job.id]), job.id))
        for runner in sorted(runners, key=lambda r: r.name):
            if runner.state is RunnerState.BUSY and runner.job_id is None:
                taken = next((job for job in waiting if self.covers(runner, job)), None)
                if taken is not None:
                    waiting.remove(taken)
        for job in waiting:
            free = next(
                (r for r in self.free if r.name not in self.matched and self.covers(r, job)), None
            )
            if free is not None:
                self.matched.add(free.name)
                continue
            group = next((g for g in covering[job.id] if self.room[g.extra_labels] > 0), None)
            if group is None:
                self.no_slot.append(labels_beyond(job.labels, self.pool.labels))
            else:
                self._create(group)
        return waiting

    @property
    def spare(self) -> int:
        """Free runners on live nodes that no queued job takes."""
        return len(self.free) - len(self.matched)

    def keep_idle(self) -> None:
        """New runners up to ``min_idle`` spare ones."""
        self.add(max(0, self.pool.min_idle - self.spare))

    def add(self, count: int) -> None:
        """``count`` new runners whatever the demand, each in the group with the most free
        slots (on a tie the narrowest: ``max`` keeps the first); fewer when the slots run
        out (or the cap: :attr:`short`)."""
        for _ in range(count):
            roomy = [group for group in self.groups if self.room[group.extra_labels] > 0]
            if not roomy:
                return
            self._create(max(roomy, key=lambda group: self.room[group.extra_labels]))

    def _create(self, group: LabelGroup) -> None:
        if len(self.creates) >= self.cap_room:
            self.short += 1
            return
        self.room[group.extra_labels] -= 1
        self.creates.append(group.extra_labels)


def manual_runners(
    pool: PoolSpec, runners: Sequence[Runner], count: int
) -> tuple[frozenset[str], ...]:
    """Where ``count`` runners asked for by hand go, whatever the demand: the group (its
    extra labels) of each, counted as a decision counts the room (module docstring). An
    ordinary pool's have none of their own, up to its cap; on a pool over several hosts, up
    to the cap and its live groups' free slots (none when no node is up). ``runners``: the
    pool's."""
    if pool.groups is None:
        live = sum(1 for runner in runners if runner.state.live)
        return (frozenset(),) * max(0, min(count, pool.max_runners - live))
    filling = _Filling(pool, runners)
    filling.add(count)
    return tuple(filling.creates)


def _decide_placed(
    pool: PoolSpec, jobs: Sequence[Job], runners: list[Runner], now: float
) -> PoolDecision:
    """A pool over several hosts: room counted per node group (see the module docstring)."""
    filling = _Filling(pool, runners)
    waiting = filling.serve(jobs, runners)
    filling.keep_idle()
    available, matched = _not_draining(pool, filling.reachable), filling.matched
    unmatched_idle = _idle_longest_first(r for r in available if r.name not in matched)
    matched_idle = _idle_longest_first(r for r in available if r.name in matched)
    surplus = max(0, filling.spare - pool.min_idle)
    removal = _removal(
        pool,
        # While it creates, an idle runner no job takes waits a cycle (never both at once).
        [] if filling.creates else unmatched_idle + matched_idle,
        eligible=len(unmatched_idle),
        surplus=surplus,
        staying=_staying(_by_state(runners)),
        now=now,
    )
    away = sum(1 for r in runners if r.name in pool.unreachable and r.state.live)
    busy, _, _, counts = _counts(len(waiting), _by_state(filling.reachable))
    if away:
        counts += f", {away} on down nodes"
    draining = _draining(pool, filling.reachable)
    if draining:
        counts += f", {draining} draining"
    creates = filling.creates
    action = _action(pool, len(creates), filling.short, removal, surplus, placed=_placed(creates))
    if filling.no_slot:
        action += f"; {_slot_wait(filling.no_slot)}"
    if not filling.groups:
        down = sorted(name for group in pool.groups or () for name in group.down)
        action += "; no node is up" + (f" (down: {', '.join(down)})" if down else "")
    return PoolDecision(
        pool=pool.name,
        queued=len(waiting),
        busy=busy,
        free=len(filling.free),
        live=sum(1 for runner in runners if runner.state.live),
        desired=min(pool.max_runners, busy + len(waiting) + pool.min_idle),
        create=len(creates),
        remove=removal.names,
        reason=f"{counts}: {action}",
        create_labels=tuple(creates),
        unreachable=away,
        draining=draining,
    )


def _by_labels(label_sets: Iterable[frozenset[str]]) -> list[tuple[frozenset[str], int]]:
    """How many of each non-empty label set, narrowest first."""
    counted = Counter(labels for labels in label_sets if labels)
    return sorted(counted.items(), key=lambda item: narrowest(item[0]))


def _placed(creates: Sequence[frozenset[str]]) -> str:
    """Where the new runners go, beyond plain nodes: ``; 1 with deploy``."""
    return "".join(
        f"; {count} with {', '.join(sorted(labels))}" for labels, count in _by_labels(creates)
    )


def _slot_wait(needs: Sequence[frozenset[str]]) -> str:
    """Jobs that live nodes serve but have no free slot for, and what they need."""
    detail = "; ".join(
        f"{count} need{'s' if count == 1 else ''} {', '.join(sorted(labels))}"
        for labels, count in _by_labels(needs)
    )
    said = f"{len(needs)} wait{'s' if len(needs) == 1 else ''} for a free node slot"
    return f"{said} ({detail})" if detail else said
