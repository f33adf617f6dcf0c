"""An in-memory Actions service behind our own boundary, :class:`ScaleSetAPI`.

:class:`FakeScaleSetService` keeps scale sets, their one session, their messages (held until
acknowledged, redelivered on every poll until then), the runners registered through
``generatejitconfig`` and what each call asked, on a virtual clock: a poll with nothing to
deliver holds for ``hold`` seconds of the clock (or until :meth:`send` adds a message), then
answers None (the 202). Faults are set per operation: ``fail(operation, error, times=...)``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from runnerscale.clock import Clock
from runnerscale.controller.loops import wait_for
from runnerscale.protocols import DeleteOutcome, JitConfig
from runnerscale.scaleset_api import (
    ScaleSet,
    ScaleSetEvent,
    ScaleSetEventKind,
    ScaleSetGoneError,
    ScaleSetMessage,
    ScaleSetSpec,
    ScaleSetStatistics,
)

__all__ = ["FakeScaleSetService", "FakeSession", "event"]


def event(
    kind: ScaleSetEventKind,
    job_id: int,
    *,
    request_id: int | None = None,
    runner_name: str | None = None,
    result: str | None = None,
    labels: tuple[str, ...] = ("runnerscale-x64",),
) -> ScaleSetEvent:
    """A job message of a batch, for ``acme/app``."""
    return ScaleSetEvent(
        kind=kind,
        runner_request_id=request_id if request_id is not None else job_id + 5000,
        job_id=job_id,
        repository="acme/app",
        workflow_run_id=job_id * 10,
        job_name=f"job-{job_id}",
        labels=labels,
        queued_at=1_767_225_000.0,
        runner_name=runner_name,
        runner_id=None,
        result=result,
    )


@dataclass
class FakeRunner:
    id: int
    name: str
    scale_set_id: int
    busy: bool = False


class FakeSession:
    """The message session of one scale set."""

    def __init__(self, service: FakeScaleSetService, scale_set_id: int, owner: str) -> None:
        self.service = service
        self.scale_set_id = scale_set_id
        self.owner = owner
        self.closed = False

    @property
    def statistics(self) -> ScaleSetStatistics:
        return self.service.statistics.get(self.scale_set_id, ScaleSetStatistics())

    async def next_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        service = self.service
        service.polls.append((last_message_id, max_capacity))
        service.check("next_message")
        self._check_alive()
        if not service.pending(self.scale_set_id):
            service.arrived.clear()
            await wait_for(service.clock, service.arrived, service.hold)
            self._check_alive()
        pending = service.pending(self.scale_set_id)
        return pending[0] if pending else None

    async def acknowledge(self, message_id: int) -> None:
        self.service.check("acknowledge")
        self._check_alive()
        queue = self.service.queues[self.scale_set_id]
        self.service.queues[self.scale_set_id] = [m for m in queue if m.message_id != message_id]
        self.service.acknowledged.append(message_id)

    async def acquire_jobs(self, runner_request_ids: Sequence[int]) -> list[int]:
        self.service.check("acquire_jobs")
        self.service.acquired.extend(runner_request_ids)
        return list(runner_request_ids)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.service.sessions_closed += 1
            if self.service.sessions.get(self.scale_set_id) is self:
                del self.service.sessions[self.scale_set_id]

    def _check_alive(self) -> None:
        if self.scale_set_id not in self.service.by_id:
            raise ScaleSetGoneError(f"scale set {self.scale_set_id} not found", status=404)


@dataclass
class FakeScaleSetService:
    """The Actions service of one scope, in memory (implements ``ScaleSetAPI``)."""

    clock: Clock
    #: How long a poll with nothing to deliver is held before it answers None.
    hold: float = 50.0
    by_id: dict[int, ScaleSet] = field(default_factory=dict)
    statistics: dict[int, ScaleSetStatistics] = field(default_factory=dict)
    #: Unacknowledged messages per scale set, oldest first.
    queues: dict[int, list[ScaleSetMessage]] = field(default_factory=dict)
    sessions: dict[int, FakeSession] = field(default_factory=dict)
    runners: dict[int, FakeRunner] = field(default_factory=dict)
    #: Every poll's (last message id, capacity announced).
    polls: list[tuple[int, int]] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    acquired: list[int] = field(default_factory=list)
    #: Every session opened, by owner.
    owners: list[str] = field(default_factory=list)
    sessions_closed: int = 0
    created: int = 0
    closed: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    faults: dict[str, list[Exception]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _messages: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7001))

    # -- the protocol

    async def ensure_scale_set(self, spec: ScaleSetSpec) -> ScaleSet:
        self.check("ensure_scale_set")
        found = self.find(spec.name)
        if found is not None:
            return found
        scale_set = ScaleSet(
            id=next(self._ids),
            name=spec.name,
            runner_group_id=1,
            runner_group_name=spec.runner_group,
            labels=(spec.name, *spec.labels),
        )
        self.by_id[scale_set.id] = scale_set
        self.queues[scale_set.id] = []
        self.created += 1
        return scale_set

    async def open_session(self, scale_set: ScaleSet, owner: str) -> FakeSession:
        self.check("open_session")
        if scale_set.id not in self.by_id:
            raise ScaleSetGoneError(f"scale set {scale_set.id} not found", status=404)
        session = FakeSession(self, scale_set.id, owner)
        self.sessions[scale_set.id] = session
        self.owners.append(owner)
        return session

    async def generate_jitconfig(self, scale_set: ScaleSet, name: str) -> JitConfig:
        self.check("generate_jitconfig")
        runner = FakeRunner(next(self._runner_ids), name, scale_set.id)
        self.runners[runner.id] = runner
        return JitConfig(runner_id=runner.id, encoded=f"jit-secret-for-{name}")

    async def remove_runner(self, runner_id: int) -> DeleteOutcome:
        self.check("remove_runner")
        runner = self.runners.get(runner_id)
        if runner is None:
            return DeleteOutcome.GONE
        if runner.busy:
            return DeleteOutcome.BUSY  # JobStillRunningException
        del self.runners[runner_id]
        return DeleteOutcome.DELETED

    async def delete_scale_set(self, scale_set_id: int) -> None:
        self.by_id.pop(scale_set_id, None)
        self.queues.pop(scale_set_id, None)
        self.arrived.set()  # a held poll learns at once

    async def close(self) -> None:
        self.closed = True

    # -- what a test does

    def find(self, name: str) -> ScaleSet | None:
        return next((s for s in self.by_id.values() if s.name.lower() == name.lower()), None)

    def send(self, name: str, *events: ScaleSetEvent, assigned: int) -> ScaleSetMessage:
        """GitHub sends the scale set a message: these events, and ``assigned`` jobs."""
        scale_set = self.find(name)
        assert scale_set is not None, f"no scale set {name}"
        statistics = ScaleSetStatistics(assigned_jobs=assigned)
        self.statistics[scale_set.id] = statistics
        message = ScaleSetMessage(next(self._messages), statistics, tuple(events))
        self.queues[scale_set.id].append(message)
        self.arrived.set()
        return message

    def pending(self, scale_set_id: int) -> list[ScaleSetMessage]:
        return list(self.queues.get(scale_set_id, []))

    def fail(self, operation: str, error: Exception, times: int = 1) -> None:
        self.faults.setdefault(operation, []).extend([error] * times)

    def check(self, operation: str) -> None:
        queued = self.faults.get(operation)
        if queued:
            raise queued.pop(0)

    def runner_named(self, name: str) -> FakeRunner | None:
        return next((r for r in self.runners.values() if r.name == name), None)
