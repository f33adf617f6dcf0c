"""Pools an operator takes out of service (``runnerscale pools drain POOL``) and puts back
(``runnerscale pools resume POOL``).

What draining a pool does, and why in this order
------------------------------------------------
1. The pool is marked drained, in memory (:attr:`PoolRuntime.drained`) and in the store (key
   ``pool-drained:POOL``), before anything is removed: from then on every decision creates
   nothing for it (``PoolSpec.drained``: the scaler), whatever its queued jobs, ``min_idle``
   or a manual scale-up (refused, saying how to resume). A restart, a reload or the standby
   taking the lead reads the mark back, so the pool stays out of service.
2. Its runners without a job (pending, creating, booting, idle) are removed at once, through
   the ordinary safe removal (:meth:`Actions.remove_runner`): GitHub first, so none takes a
   job meanwhile; GitHub's 422 "busy" means it took one just now, and it stays to run it.
   An idle runner seen later (one listed idle after the drain) is removed by the scaler's
   decision, whatever its idle time.
3. Busy runners finish their job: a running job is never killed. Their runners are reaped
   once done, as always. Queued jobs routed to the pool stay queued; the status says why.
4. Once the pool holds no live runner, its backend is swept once (:func:`sweep`, at the poll
   loop's listing of the backend): a provider that can remove all it holds for the pool
   (:class:`~runnerscale.protocols.RemovesAll`, garm's ``RemoveAllInstances``) is asked to;
   any other has every instance its listing shows deleted. That leaves nothing behind that
   the runner bookkeeping lost track of. A :class:`ProviderError` is logged and the sweep
   tried again on a later poll, after the pool's failure backoff. Once done, it is recorded
   (``swept``) and not repeated until the pool is resumed and drained again.

Resuming clears the mark: the next decision scales the pool as its configuration says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runnerscale.controller.actions import Actions, PoolRuntime
from runnerscale.model import Instance, PoolDrain, RunnerState
from runnerscale.protocols import ProviderError, RemovesAll, Store

log = logging.getLogger("runnerscale.controller")

#: The runners a drain removes at once: those without a job.
WITHOUT_A_JOB = (RunnerState.PENDING, RunnerState.CREATING, RunnerState.BOOTING, RunnerState.IDLE)
_LIVE = [state for state in RunnerState if state.live]
#: Why its runners are removed (the log), and the metric's reason for it.
WHY = "its pool is drained by an operator"


def key(pool: str) -> str:
    """The store's key of a pool's drain."""
    return f"pool-drained:{pool}"


def load(store: Store, pool: str) -> PoolDrain | None:
    """The pool's drain as the store keeps it (None: in service)."""
    stored = store.get_value(key(pool))
    if not stored:
        return None
    try:
        fields = json.loads(stored)
        if not fields.get("drained"):
            return None
        return PoolDrain(since=float(fields["since"]), swept=bool(fields["swept"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        # Kept out of service: what an operator asked for is the safe reading.
        log.warning("pool %s: its stored drain is unreadable: keeping it drained", pool)
        return PoolDrain(since=0.0)


def save(store: Store, pool: str, drain: PoolDrain | None) -> None:
    """Write the pool's drain (None: in service again)."""
    value = (
        {"drained": False}
        if drain is None
        else {"drained": True, "since": drain.since, "swept": drain.swept}
    )
    store.set_value(key(pool), json.dumps(value))


@dataclass(frozen=True)
class DrainReport:
    """What a drain did now: the runners it removed, and those left (busy, or on their way
    out), by name."""

    pool: str
    removed: list[str]
    left: list[str]
    #: The pool was drained already (this call changed nothing but the removals).
    already: bool


async def take_out(actions: Actions, pool: PoolRuntime) -> DrainReport:
    """Drain the pool (steps 1 and 2 of the module docstring). Drained already: its runners
    without a job are removed again, nothing else changes (a sweep done stays done)."""
    already = pool.drained is not None
    if pool.drained is None:
        pool.drained = PoolDrain(since=actions.clock.now())
        save(actions.store, pool.name, pool.drained)
        log.warning(
            "pool %s: drained by an operator: it starts no runner, its busy runners finish "
            "their jobs, the others are removed",
            pool.name,
        )
    removed = []
    for runner in actions.store.runners(pool=pool.name, states=list(WITHOUT_A_JOB)):
        if await actions.remove_runner(runner, WHY, "operator"):
            removed.append(runner.name)
    left = [runner.name for runner in actions.store.runners(pool=pool.name, states=_LIVE)]
    return DrainReport(pool.name, removed, left, already)


def put_back(store: Store, pool: PoolRuntime) -> bool:
    """Resume the pool (in service from the next decision); False when it was not drained. A
    failure backoff its sweep caused ends with it."""
    drain, pool.drained = pool.drained, None
    if drain is None:
        return False
    save(store, pool.name, None)
    if drain.sweep_error is not None and pool.last_error == drain.sweep_error:
        pool.succeeded()
    log.warning("pool %s: resumed by an operator: it scales again", pool.name)
    return True


async def sweep(actions: Actions, pool: PoolRuntime, instances: Sequence[Instance]) -> None:
    """Step 4 of the module docstring, at a listing of the pool's backend (``instances``):
    sweep the backend once the drained pool holds no live runner, unless done already or the
    pool backs off after a failed sweep."""
    drain = pool.drained
    now = actions.clock.now()
    if drain is None or drain.swept or now < pool.backoff_until:
        return
    if actions.store.runners(pool=pool.name, states=_LIVE):
        return  # busy runners finish first; the others are on their way out
    provider = pool.provider
    try:
        if isinstance(provider, RemovesAll):
            await provider.remove_all()
        else:
            for instance in instances:
                await provider.delete(instance.id)
    except ProviderError as error:
        drain.sweep_error = f"sweeping its backend after the drain failed: {error}"
        log.warning("pool %s: %s; trying again later", pool.name, drain.sweep_error)
        pool.failed(now, drain.sweep_error)
        actions.events.error(pool.name, "delete")
        return
    if drain.sweep_error is not None and pool.last_error == drain.sweep_error:
        pool.succeeded()
    drain.swept, drain.sweep_error = True, None
    save(actions.store, pool.name, drain)
    how = "remove_all" if isinstance(provider, RemovesAll) else f"{len(instances)} listed deleted"
    log.info("pool %s: drained, its backend swept (%s)", pool.name, how)


@dataclass(frozen=True)
class DrainStatus:
    """A drained pool, as ``status`` shows it."""

    #: When it was drained (wall clock of the daemon).
    since: float
    #: Its busy runners, finishing their jobs.
    busy_left: int
    #: Its other live runners, on their way out (finished, being removed).
    leaving: int
    #: Its backend was swept (nothing is left of it).
    swept: bool
    #: In words: ``draining: 2 busy runners left``, ``drained``, ``drained, backend swept``.
    state: str


def drain_status(pool: PoolRuntime, live: Mapping[RunnerState, int]) -> DrainStatus | None:
    """The pool's drain for the status (``live``: how many live runners it has, by state);
    None: in service."""
    drain = pool.drained
    if drain is None:
        return None
    busy = live.get(RunnerState.BUSY, 0)
    leaving = sum(count for state, count in live.items() if state.live) - busy
    if busy or leaving:
        state = f"draining: {busy} busy runner{'' if busy == 1 else 's'} left"
        if leaving:
            state += f", {leaving} being removed"
    elif drain.swept:
        state = "drained, backend swept"
    else:
        state = "drained"
    return DrainStatus(drain.since, busy, leaving, drain.swept, state)
