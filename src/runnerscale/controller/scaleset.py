"""A scale-set pool's listener: GitHub's long poll as the pool's demand source.

A pool with ``demand: scale_set`` owns a runner scale set at its target (``scale_set.target``,
default the first). Its listener, a task of its own, finds or creates the scale set, opens the
scale set's one message session (as the deployment's controller id), and then long-polls for
messages. Every answer carries ``statistics.totalAssignedJobs``: the jobs GitHub holds for the
pool, waiting or running, which the scaler takes as the pool's demand
(``PoolSpec.assigned_jobs``). The job messages of a batch (``JobAssigned``, ``JobStarted``,
``JobCompleted``) go through the same path as a webhook's observation
(:meth:`Controller.observe`), so a runner is marked busy and finished as it is for a webhook
pool; ``JobAvailable`` jobs (older GHES) are acquired first.

Deciding is apart from doing: :func:`effects_of` says what a message means (pure), and
:class:`ScaleSetListener` applies it, persists it, and only then acknowledges it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from runnerscale.model import JobState
from runnerscale.protocols import Clock, GitHubError, ObservedJob, Store
from runnerscale.scaleset_api import (
    ScaleSet,
    ScaleSetAPI,
    ScaleSetEvent,
    ScaleSetEventKind,
    ScaleSetGoneError,
    ScaleSetMessage,
    ScaleSetSession,
    ScaleSetSpec,
    ScaleSetStatistics,
)

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "MessageEffects",
    "ScaleSetListener",
    "ScaleSetState",
    "effects_of",
    "observation_of",
    "state_key",
]

log = logging.getLogger("runnerscale.controller")

#: After a failed call to the Actions service: wait this long, doubled per failure in a row.
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0


def state_key(pool: str) -> str:
    """The store key of a scale-set pool's listener state."""
    return f"scaleset:{pool}"


@dataclass
class ScaleSetState:
    """What a scale-set pool's listener knows, for the scaler, the registrar and the status.

    ``session``: where the listener is: ``starting``, ``finding the scale set``, ``opening
    the session`` (this waits while another holds it), ``open``, ``backing off``, ``closed``.
    """

    pool: str
    spec: ScaleSetSpec
    scale_set: ScaleSet | None = None
    #: Jobs assigned to the scale set as last reported (kept across restarts in the store).
    assigned: int = 0
    last_message_id: int = 0
    session: str = "starting"
    last_error: str | None = None


@dataclass(frozen=True)
class MessageEffects:
    """What one message means: the job observations to fold in, the ``JobAvailable``
    requests to acquire, and the pool's demand."""

    observations: tuple[ObservedJob, ...]
    acquire: tuple[int, ...]
    assigned: int


def effects_of(message: ScaleSetMessage, now: float) -> MessageEffects:
    """What a message means, decided apart from acting on it (pure).

    The assigned count is the statistics', never a count of the batch's events: an answer
    holds at most 50 of them, and a backlog is truncated."""
    observations = tuple(
        observed
        for observed in (observation_of(event, now) for event in message.events)
        if observed is not None
    )
    acquire = tuple(
        event.runner_request_id
        for event in message.events
        if event.kind is ScaleSetEventKind.JOB_AVAILABLE
    )
    return MessageEffects(observations, acquire, message.statistics.assigned_jobs)


def observation_of(event: ScaleSetEvent, now: float) -> ObservedJob | None:
    """A job message as the observation a webhook delivery would make of it; None when it
    tells nothing about a job we can key (no job id), or when it is a reassignment: a job
    ``canceled`` before any runner took it comes back as ``JobAssigned`` (up to 3 times, says
    GitHub), and a job recorded as completed could not be taken up again."""
    if not event.job_id:
        return None
    if event.kind is ScaleSetEventKind.JOB_COMPLETED:
        if event.runner_name is None and event.result == "canceled":
            return None
        state = JobState.COMPLETED
    elif event.kind is ScaleSetEventKind.JOB_STARTED:
        state = JobState.IN_PROGRESS
    else:
        state = JobState.QUEUED
    return ObservedJob(
        id=event.job_id,
        repo=event.repository,
        labels=event.labels,
        state=state,
        created_at=event.queued_at if event.queued_at is not None else now,
        run_id=event.workflow_run_id,
        name=event.job_name,
        started_at=now if state is JobState.IN_PROGRESS else None,
        completed_at=now if state is JobState.COMPLETED else None,
        runner_name=event.runner_name,
        conclusion=event.result if state is JobState.COMPLETED else None,
    )


class ScaleSetListener:
    """The listener of one scale-set pool (run as its own task by the controller).

    The loop: find or create the scale set, open the session, take the session's initial
    statistics, then ``next_message(last_id, capacity)`` forever. A message's effects are
    folded into the store (jobs through ``observe``; the key ``scaleset:<pool>`` with the
    last message id, the scale set's id and the assigned count), and THEN it is acknowledged.

    Why persist before the acknowledgement, not after as the Go listener does: an
    acknowledged message is never sent again, so a daemon killed between an acknowledgement
    and its write would have lost the message's jobs for good. Unacknowledged, it is
    redelivered on the next poll; applying it twice is harmless (a job only moves forward, an
    identical observation changes nothing, the count is the statistics', not a sum).

    The capacity announced (``X-ScaleSetMaxCapacity``) is the pool's cap, and never 0 while
    the pool can still serve: measured on GitHub, a job queued while a listener announced 0
    was excluded from the scale set for good, however much capacity was announced later
    ("zero is forever"). A pool at its cap announces its cap; the scaler keeps the rest.

    On a 202 (no message in the poll's time) the last statistics hold again. When the scale
    set is gone (deleted behind our back, or collected by GitHub after days offline), it is
    found or created again and a new session opened. Any other failure of the Actions
    service is backed off from (1 s doubling to 60 s, or the service's Retry-After), keeping
    the last assigned count. Every failure backed off from, a scale set gone included, is told
    to ``failed`` (the controller counts it as a failed cycle of its ``scaleset`` loop: the
    status API's ``errors`` and ``runnerscale_loop_errors_total``), as a failed cycle of
    the other loops is; the log alone would leave a listener failing for hours unseen. On
    shutdown the session is closed (deleted), so that a
    successor does not wait for it to expire.
    """

    def __init__(
        self,
        state: ScaleSetState,
        api: ScaleSetAPI,
        store: Store,
        clock: Clock,
        *,
        owner: str,
        capacity: Callable[[], int],
        observe: Callable[[ObservedJob], None],
        changed: Callable[[], None],
        failed: Callable[[], None],
    ) -> None:
        self.state = state
        self.api = api
        self.store = store
        self.clock = clock
        self.owner = owner
        self._capacity = capacity
        self._observe = observe
        self._changed = changed
        self._failed = failed
        self._session: ScaleSetSession | None = None
        self._statistics: ScaleSetStatistics | None = None
        self._stored_scale_set_id: int | None = None
        self._failures = 0
        self.restore()

    @property
    def capacity(self) -> int:
        """What the next poll announces: the pool's cap, at least 1 (see the class)."""
        return max(1, self._capacity())

    def restore(self) -> None:
        """Take the last message id, the scale set's id and the assigned count from the store
        (what a previous run persisted), so demand holds while the session is reopened."""
        stored = self.store.get_value(state_key(self.state.pool))
        if stored is None:
            return
        try:
            saved = json.loads(stored)
            self.state.last_message_id = int(saved["last_message_id"])
            self.state.assigned = int(saved["assigned"])
            scale_set_id = saved.get("scale_set_id")
            self._stored_scale_set_id = None if scale_set_id is None else int(scale_set_id)
        except (ValueError, KeyError, TypeError):
            log.warning(
                "pool %s: its stored listener state is unreadable: starting afresh",
                self.state.pool,
            )

    async def run(self) -> None:
        """Listen until cancelled; the session is closed on the way out. What the store holds
        is read again first: a daemon that stood by while another led starts from where the
        leader stopped."""
        self.restore()
        try:
            while True:
                try:
                    await self.step()
                    self._failures = 0
                except ScaleSetGoneError as error:
                    log.warning(
                        "pool %s: scale set %s is gone (%s): creating it again",
                        self.state.pool,
                        self.state.spec.name,
                        error,
                    )
                    await self._drop_session()
                    self.state.scale_set = None
                    await self._back_off(error)
                except GitHubError as error:
                    log.warning("pool %s: scale set listener: %s", self.state.pool, error)
                    await self._back_off(error)
                except Exception as error:  # the store, say: the loop must go on
                    log.exception("pool %s: scale set listener failed", self.state.pool)
                    await self._back_off(error)
        finally:
            await self.close()

    async def step(self) -> None:
        """One step: the scale set and the session when missing, else one long poll."""
        state = self.state
        if state.scale_set is None:
            state.session = "finding the scale set"
            scale_set = await self.api.ensure_scale_set(state.spec)
            if scale_set.id != self._stored_scale_set_id:
                # A new scale set: its message ids start over.
                state.last_message_id = 0
            self._stored_scale_set_id = scale_set.id
            state.scale_set = scale_set
            log.info("pool %s: scale set %s (id %d)", state.pool, scale_set.name, scale_set.id)
            self.persist()
        if self._session is None:
            state.session = "opening the session"
            self._session = await self.api.open_session(state.scale_set, self.owner)
            state.session = "open"
            state.last_error = None
            self._apply_statistics(self._session.statistics)
            self.persist()
            return
        state.session = "open"
        message = await self._session.next_message(state.last_message_id, self.capacity)
        if message is None:
            # 202: nothing new; the last statistics hold.
            if self._statistics is not None:
                self._apply_statistics(self._statistics)
            return
        await self.handle(message)

    async def handle(self, message: ScaleSetMessage) -> None:
        """Act on a message, persist its effects, then acknowledge it (the class says why)."""
        assert self._session is not None
        effects = effects_of(message, self.clock.now())
        if effects.acquire:
            acquired = await self._session.acquire_jobs(effects.acquire)
            log.info(
                "pool %s: acquired %d of %d available jobs",
                self.state.pool,
                len(acquired),
                len(effects.acquire),
            )
        for observed in effects.observations:
            self._observe(observed)
        self.state.last_message_id = message.message_id
        self._apply_statistics(message.statistics)
        self.persist()
        await self._session.acknowledge(message.message_id)

    def persist(self) -> None:
        state = self.state
        self.store.set_value(
            state_key(state.pool),
            json.dumps(
                {
                    "last_message_id": state.last_message_id,
                    "scale_set_id": None if state.scale_set is None else state.scale_set.id,
                    "assigned": state.assigned,
                }
            ),
        )

    def _apply_statistics(self, statistics: ScaleSetStatistics) -> None:
        self._statistics = statistics
        if statistics.assigned_jobs != self.state.assigned:
            log.info(
                "pool %s: %d jobs assigned to scale set %s",
                self.state.pool,
                statistics.assigned_jobs,
                self.state.spec.name,
            )
            self.state.assigned = statistics.assigned_jobs
            self._changed()

    async def _back_off(self, error: Exception) -> None:
        self._failed()
        self._failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(self._failures - 1, 16))
        if isinstance(error, GitHubError):
            delay = max(delay, error.retry_after or 0.0)
        self.state.session = "backing off"
        self.state.last_error = str(error)
        await self.clock.sleep(delay)

    async def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def close(self) -> None:
        """Close the session (the service forgets it at once: a successor opens its own
        without waiting for it to expire). Never raises."""
        await self._drop_session()
        self.state.session = "closed"
