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

- Finished runners (their one job is done) are reaped: ``reap`` names them all, oldest first.
  They still count against the cap in the cycle that reaps them (their removal may fail, and
  an instance may still be there); the next cycle, once they are gone, uses their slots.
- A pool backing off after failed creations (``backoff``: until when) creates nothing before
  that time: ``held_back`` says how many it would have, and ``reason`` says why. Removals and
  reaping go on.

``create`` and ``remove`` are never both non-empty for one pool: creating needs fewer free
runners than needed and room under the cap; removing needs more free runners than needed or a
pool over its cap.

Where new runners register (``create_on``)
-------------------------------------------
With one target, all of them there. With several, each queued job of the pool counts for the
first target (in config order) that covers its repository, each free runner of the pool counts
against its own target, and each new runner goes to the target with the most demand left (ties:
config order). The decision is the whole decision: the controller writes it and acts on it,
and chooses nothing itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from runnerscale.model import Job, JobState, PoolSpec, Runner, RunnerState, Target, match_pool

__all__ = ["Decision", "PoolDecision", "decide"]

#: Live runners that leave by themselves: they hold a slot under the cap but are no excess.
_LEAVING = frozenset({RunnerState.FINISHED, RunnerState.DELETING})
_ON_THE_WAY = frozenset({RunnerState.PENDING, RunnerState.CREATING, RunnerState.BOOTING})


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
    #: Runners the pool would create now but for its failure backoff.
    held_back: int = 0


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
) -> Decision:
    """Decide, for every pool, how many runners to create and where, which idle runners to
    remove and which finished ones to reap.

    ``targets``: where runners can register, in config order (without them, ``create_on`` is
    empty). ``backoff``: per pool, until when failed creations hold its creations back.
    Pure and deterministic: the same input gives the same output, whatever the order of
    ``jobs`` and ``runners``. Runners of pools not in ``pools`` are ignored.
    """
    names = [pool.name for pool in pools]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"pool names must be unique, repeated: {', '.join(duplicates)}")

    job_pools: dict[int, str | None] = {}
    queued: dict[str, list[Job]] = {name: [] for name in names}
    unmatched: set[int] = set()
    for job in sorted(jobs, key=lambda job: job.id):
        if job.state not in (JobState.QUEUED, JobState.WAITING):
            continue
        pool = match_pool(pools, job.labels)
        job_pools[job.id] = pool.name if pool is not None else None
        if job.state is not JobState.QUEUED:
            continue
        if pool is None:
            unmatched.add(job.id)
        else:
            queued[pool.name].append(job)

    by_pool: dict[str, list[Runner]] = {name: [] for name in names}
    for runner in runners:
        if runner.pool in by_pool:
            by_pool[runner.pool].append(runner)

    backoff = backoff or {}
    decisions = {}
    for pool in pools:
        decided = _decide_pool(pool, len(queued[pool.name]), by_pool[pool.name], now)
        decided = _hold_back(decided, backoff.get(pool.name, 0.0), now)
        create_on = _targets_for(targets, decided.create, queued[pool.name], by_pool[pool.name])
        reap = tuple(
            runner.name
            for runner in sorted(by_pool[pool.name], key=lambda r: (r.created_at, r.name))
            if runner.state is RunnerState.FINISHED
        )
        decisions[pool.name] = replace(decided, create_on=create_on, reap=reap)
    return Decision(pools=decisions, job_pools=job_pools, unmatched=tuple(sorted(unmatched)))


def _hold_back(decided: PoolDecision, backoff_until: float, now: float) -> PoolDecision:
    """No creation while the pool backs off after failed creations."""
    if not decided.create or now >= backoff_until:
        return decided
    return replace(
        decided,
        create=0,
        held_back=decided.create,
        reason=f"{decided.reason}; held back by the failure backoff for "
        f"{backoff_until - now:.0f}s more",
    )


def _targets_for(
    targets: Sequence[Target], count: int, queued: Sequence[Job], runners: Sequence[Runner]
) -> tuple[str, ...]:
    """Where the pool's new runners register: where its queued jobs are, most first."""
    if not targets or not count:
        return ()
    keys = [target.key for target in targets]
    if len(keys) == 1:
        return (keys[0],) * count
    demand: Counter[str] = Counter()
    for job in queued:
        target = next((t for t in targets if t.covers(job.repo)), None)
        if target is not None:
            demand[target.key] += 1
    for runner in runners:
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


def _decide_pool(pool: PoolSpec, queued: int, runners: list[Runner], now: float) -> PoolDecision:
    busy = sum(1 for runner in runners if runner.state is RunnerState.BUSY)
    # A runner GitHub shows busy before its job's move to in_progress was observed has taken
    # one of the queued jobs: that job needs no other runner.
    taken = sum(1 for r in runners if r.state is RunnerState.BUSY and r.job_id is None)
    queued = max(0, queued - taken)
    free = sum(1 for runner in runners if runner.state.free)
    live = sum(1 for runner in runners if runner.state.live)
    staying = sum(1 for runner in runners if runner.state.live and runner.state not in _LEAVING)
    on_the_way = sum(1 for runner in runners if runner.state in _ON_THE_WAY)
    # Idle longest first; the name makes equal times deterministic.
    idle = sorted(
        (runner for runner in runners if runner.state is RunnerState.IDLE),
        key=lambda runner: (_idle_since(runner), runner.name),
    )

    needed_free = queued + pool.min_idle
    room = pool.max_runners - live
    create = max(0, min(needed_free - free, room))

    # The timed-out runners are a prefix of ``idle`` (same timeout, sorted by idle time), so
    # both rules below remove a prefix of it and the larger count covers both.
    surplus = max(0, free - needed_free)
    timed_out = sum(1 for runner in idle if now - _idle_since(runner) >= pool.idle_timeout)
    by_timeout = min(surplus, timed_out)
    over_cap = max(0, staying - pool.max_runners)
    by_cap = min(over_cap, len(idle))
    remove = tuple(runner.name for runner in idle[: max(by_timeout, by_cap)])

    counts = f"{queued} queued, {busy} busy, {on_the_way} on the way, {len(idle)} idle"
    if create:
        action = f"create {create} (cap {pool.max_runners})"
        if create < needed_free - free:
            action += f", {needed_free - free - create} more wanted but the cap is reached"
    elif by_cap > by_timeout:
        action = f"remove {len(remove)} idle to get down to the lowered cap of {pool.max_runners}"
    elif remove:
        action = f"remove {len(remove)} idle for {pool.idle_timeout:g}s or more"
    elif over_cap:
        action = f"over the cap of {pool.max_runners} but no idle runner to remove, wait"
    elif needed_free > free:
        action = f"at the cap of {pool.max_runners}, {needed_free - free} wanted, wait"
    elif surplus:
        action = f"{surplus} more than needed, idle ones go after {pool.idle_timeout:g}s idle"
    elif pool.min_idle:
        action = f"enough, keeping min_idle {pool.min_idle}"
    else:
        action = "nothing to do"

    return PoolDecision(
        pool=pool.name,
        queued=queued,
        busy=busy,
        free=free,
        live=live,
        desired=min(pool.max_runners, busy + queued + pool.min_idle),
        create=create,
        remove=remove,
        reason=f"{counts}: {action}",
    )
