"""Whether the daemon works, told from what its loops and pools report.

Why: a daemon that answers HTTP is not necessarily working. A loop can hang on a call that
never returns or die on a bug, and then no runner is ever created or removed again while the
process looks alive; a pool can fail every creation for as long as its backoff allows. A
supervisor (systemd's watchdog script, a Kubernetes liveness probe, a load balancer) needs to
be told, with the reason, so ``/healthz`` answers 503 then. Readiness is separate: ``/readyz``
says whether the daemon has decided once since it started (before that it has not looked at
its pools, so it should not be sent traffic it would drop in a restart).

Each loop keeps a :class:`Heartbeat`: when its current cycle began and when it means to wake
next. :func:`assess` is the pure verdict on them (and on the pools' failure backoff) at one
instant, so tests check it on virtual time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runnerscale.controller.actions import BACKOFF_BASE, BACKOFF_CAP, PoolRuntime

#: A cycle running longer than this, or a loop this late to wake, counts as stuck. Ten
#: minutes: well above any cycle's work (each call has its own timeout of at most a few
#: minutes) and above the longest failure backoff of a loop (``LOOP_BACKOFF_CAP``).
STALL_AFTER = 600.0


@dataclass
class Heartbeat:
    """One loop's pulse. ``waits_for_work``: a loop whose cycle is a wait for work (the
    webhook events loop): only its death counts, not how long a cycle lasts."""

    waits_for_work: bool = False
    #: When the current cycle began (None: between cycles).
    busy_since: float | None = None
    #: When the loop means to run its next cycle (None: not known yet).
    wakes_at: float | None = None
    #: Whether the loop's task still runs (set from the task when health is asked).
    alive: bool = True

    def began(self, now: float) -> None:
        self.busy_since = now
        self.wakes_at = None

    def ended(self, wakes_at: float | None) -> None:
        self.busy_since = None
        self.wakes_at = wakes_at


def assess(
    now: float, heartbeats: Mapping[str, Heartbeat], pools: Iterable[PoolRuntime]
) -> list[str]:
    """Why the daemon is not healthy at ``now`` (empty: it is): a loop that stopped, is stuck
    in a cycle, or is overdue; a pool whose creations failed so often in a row that its
    backoff reached its cap."""
    reasons: list[str] = []
    for name, beat in heartbeats.items():
        if not beat.alive:
            reasons.append(f"the {name} loop has stopped (see the log for its error)")
        elif beat.waits_for_work:
            continue
        elif beat.busy_since is not None and now - beat.busy_since > STALL_AFTER:
            reasons.append(
                f"the {name} loop has been in one cycle for {now - beat.busy_since:.0f} s"
            )
        elif beat.wakes_at is not None and now - beat.wakes_at > STALL_AFTER:
            reasons.append(f"the {name} loop is {now - beat.wakes_at:.0f} s late")
    for pool in pools:
        failures = pool.consecutive_failures
        if failures and BACKOFF_BASE * 2 ** (failures - 1) >= BACKOFF_CAP:
            reasons.append(
                f"pool {pool.name}: {failures} failures in a row to start a runner; it now "
                f"tries every {BACKOFF_CAP:.0f} s (the status API and the log say why)"
            )
    return reasons
