"""Leader or standby: which daemon of a deployment runs the controller's loops.

Why: two daemons on one Postgres state keep a deployment serving when one dies, but two
controllers acting at once would each create runners for the same queued jobs and each janitor
would remove the other's runners as orphans. So one leads and the others stand by:

- **The leader** holds the state's leadership lock (:mod:`runnerscale.store.leadership`) and
  runs the loops (``Controller.start``: recover, then events, reconcile, the pool workers,
  poll, janitor). It checks every :data:`CHECK_INTERVAL` that it still holds the lock, and on
  losing it (its database connection broke) stops the loops at once; its runners keep running.
- **A standby** serves HTTP like the leader: it takes webhooks into the shared store (the
  controller folds an observation in at once while its loops do not run), answers health and
  status (saying who leads), and refuses to scale by hand. Every :data:`CHECK_INTERVAL` it
  tries for the lock. On winning it starts the loops, whose recovery adopts the runners the old
  leader left by the deployment's controller id, so nothing is created twice.
- **A revocable lock** (Postgres: the server can drop a live holder's session) may be won while
  the old leader has not yet noticed its loss (it notices at its next check, within
  :data:`CHECK_INTERVAL`, or :data:`CHECK_TIMEOUT` when the check hangs). Whoever wins such a
  lock therefore waits one check interval and :data:`HANDOVER_MARGIN` before it acts, so the
  old leader has stopped its loops first; a daemon starting alone waits the same, since it
  cannot tell a dead leader from one that has not noticed yet. A lock freed by its holder's
  death (``kill -9``) is won at the next check: the takeover takes at most
  ``2 * CHECK_INTERVAL + HANDOVER_MARGIN`` plus the recovery. A lock file (SQLite) is lost only
  with its holder: no wait.

Deciding is apart from doing here too: the leadership says who may lead; this loop only starts
and stops the controller accordingly, and logs each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from runnerscale.clock import Clock
from runnerscale.controller.loops import Controller
from runnerscale.store.leadership import Leader, Leadership

__all__ = ["CHECK_INTERVAL", "HANDOVER_MARGIN", "Role", "Succession"]

log = logging.getLogger("runnerscale")

#: Seconds between two checks of the lock (a standby trying for it, the leader verifying it).
CHECK_INTERVAL: Final = 2.0
#: Seconds a new leader of a revocable lock waits beyond one check interval before acting.
HANDOVER_MARGIN: Final = 1.0
#: A check that takes longer counts as failed (the lock is then believed lost): as long as the
#: lock session's TCP user timeout, so a leader cut off from the database stops its loops
#: before the server's keepalives free the lock for another (see store.leadership).
CHECK_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class Role:
    """What this daemon is in its deployment, for the status API."""

    #: The deployment's id, which its backends tag their runners with.
    controller_id: str
    #: This daemon's id (``host:pid:xxxx``).
    instance: str
    #: Whether this daemon leads (runs the loops); otherwise it stands by.
    leading: bool
    #: Who leads, as the state says (None: nobody right now, a takeover is under way).
    leader: Leader | None
    #: Whether this daemon has tried for the lead once (before that it is neither).
    decided: bool


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class Succession:
    """Runs ``controller`` while ``leadership`` says this daemon leads (see the module)."""

    def __init__(
        self,
        leadership: Leadership,
        controller: Controller,
        clock: Clock,
        *,
        controller_id: str,
        interval: float = CHECK_INTERVAL,
        on_lead: Callable[[], None] | None = None,
    ) -> None:
        self.leadership = leadership
        self.controller = controller
        self.clock = clock
        self.controller_id = controller_id
        self.interval = interval
        #: Run (in a thread) before the loops start on taking the lead: the daemon rereads its
        #: store's view of the active rows, which a standby's writes did not keep.
        self.on_lead = on_lead
        self.leading = False
        self.leader: Leader | None = None
        self._decided = False
        self._task: asyncio.Task[None] | None = None

    def role(self) -> Role:
        return Role(
            controller_id=self.controller_id,
            instance=self.leadership.instance,
            leading=self.leading,
            leader=self.leader,
            decided=self._decided,
        )

    async def start(self) -> None:
        """Try for the lead once (a sole daemon leads when this returns; a failing recovery
        is raised), then keep checking in a task of its own."""
        await self._step()
        self._task = asyncio.create_task(self._watch(), name="leadership")

    async def stop(self) -> None:
        """Stop the loops (when leading) and give the lead up, so a standby takes over at its
        next check."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.controller.stop()
        if self.leading:
            log.info("leadership: %s gives up the lead", self.leadership.instance)
        self.leading = False
        await asyncio.to_thread(self.leadership.close)

    async def _watch(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            try:
                await self._step()
            except Exception:  # a failing start is said and retried; the task must not die
                log.exception("leadership: taking or keeping the lead failed; trying again")

    async def _check(self) -> bool:
        """Whether this daemon holds the lock (taking it when free); a check that hangs
        counts as a loss."""
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that lands as the check completes (cpython gh-86296), and stop() then waited
            # forever for this task.
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await asyncio.to_thread(self.leadership.try_acquire)
        except TimeoutError:
            log.warning("leadership: checking the lock took over %gs", CHECK_TIMEOUT)
            return False

    async def _step(self) -> None:
        holds = await self._check()
        if holds and not self.leading:
            await self._lead()
        elif not holds and self.leading:
            log.warning(
                "leadership: %s lost the lead: stopping the loops (runners keep running)",
                self.leadership.instance,
            )
            self.leading = False
            await self.controller.stop()
        await self._learn_leader()
        self._decided = True

    async def _lead(self) -> None:
        """Start the loops, once an old leader must have noticed its loss (a revocable lock);
        on a failing start, give the lock back for another to try."""
        instance = self.leadership.instance
        if self.leadership.revocable:
            wait = self.interval + HANDOVER_MARGIN
            log.info(
                "leadership: %s took the lock; acting in %gs, once the old leader has noticed",
                instance,
                wait,
            )
            await self.clock.sleep(wait)
            if not await self._check():
                log.warning("leadership: %s lost the lock again before acting", instance)
                return
        log.info("leadership: %s leads: starting the loops", instance)
        try:
            if self.on_lead is not None:
                await asyncio.to_thread(self.on_lead)
            await self.controller.start()
        except BaseException:
            await self.controller.stop()
            await asyncio.to_thread(self.leadership.release)
            raise
        self.leading = True

    async def _learn_leader(self) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                leader = await asyncio.to_thread(self.leadership.leader)
        except TimeoutError:
            leader = None
        if not self.leading and leader != self.leader:
            if leader is None:
                log.warning("leadership: %s stands by; nobody leads", self.leadership.instance)
            else:
                log.info(
                    "leadership: %s stands by; %s leads since %s",
                    self.leadership.instance,
                    leader.id,
                    _when(leader.since),
                )
        self.leader = leader
