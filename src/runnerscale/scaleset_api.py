"""The boundary to GitHub's runner scale sets: what a scale-set pool's listener and registrar
talk through, never how.

A scale set is GitHub's own autoscaling unit (``actions/scaleset``): GitHub routes a job to
it, and tells its one listener, over a long poll on the Actions service, how many jobs are
assigned to it (``statistics.totalAssignedJobs``), which is the exact demand. Messages wait
until acknowledged, so nothing is lost while the daemon is away. The production client is
:mod:`runnerscale.github.scaleset`; the simulator serves the same protocol on loopback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from runnerscale.protocols import DeleteOutcome, GitHubError, JitConfig

__all__ = [
    "ScaleSet",
    "ScaleSetAPI",
    "ScaleSetEvent",
    "ScaleSetEventKind",
    "ScaleSetGoneError",
    "ScaleSetMessage",
    "ScaleSetSession",
    "ScaleSetSpec",
    "ScaleSetStatistics",
]


@dataclass(frozen=True)
class ScaleSetStatistics:
    """The counts the service sends with every answer (``statistics``)."""

    available_jobs: int = 0
    acquired_jobs: int = 0
    #: Jobs assigned to the scale set, waiting or running: the demand to scale on.
    assigned_jobs: int = 0
    running_jobs: int = 0
    registered_runners: int = 0
    busy_runners: int = 0
    idle_runners: int = 0


class ScaleSetEventKind(StrEnum):
    JOB_AVAILABLE = "JobAvailable"
    JOB_ASSIGNED = "JobAssigned"
    JOB_STARTED = "JobStarted"
    JOB_COMPLETED = "JobCompleted"


@dataclass(frozen=True)
class ScaleSetEvent:
    """One job message of a batch."""

    kind: ScaleSetEventKind
    runner_request_id: int
    #: 0 when the service sent none.
    job_id: int
    #: ``owner/name``.
    repository: str
    workflow_run_id: int | None = None
    job_name: str | None = None
    labels: tuple[str, ...] = ()
    queued_at: float | None = None
    #: Set on ``JobStarted`` and ``JobCompleted``.
    runner_id: int | None = None
    runner_name: str | None = None
    #: ``JobCompleted``: succeeded, failed, canceled, ...
    result: str | None = None


@dataclass(frozen=True)
class ScaleSetMessage:
    message_id: int
    statistics: ScaleSetStatistics
    events: tuple[ScaleSetEvent, ...]


@dataclass(frozen=True)
class ScaleSet:
    id: int
    name: str
    runner_group_id: int
    runner_group_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ScaleSetSpec:
    """What a pool asks for: its scale set by name, in a runner group, with extra labels (the
    name is always one of its labels)."""

    name: str
    runner_group: str = "Default"
    labels: tuple[str, ...] = ()


class ScaleSetGoneError(GitHubError):
    """The scale set no longer exists (``RunnerScaleSetNotFoundException``): re-create it."""


class ScaleSetSession(Protocol):
    """The one message session of a scale set."""

    @property
    def statistics(self) -> ScaleSetStatistics:
        """The counts the session was created (or last refreshed) with."""
        ...

    async def next_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        """One long poll: the next message after ``last_message_id``, or None when the
        service held the poll and had none (202). Refreshes the session on an expired queue
        token; raises :class:`ScaleSetGoneError` when the scale set is gone."""
        ...

    async def acknowledge(self, message_id: int) -> None: ...

    async def acquire_jobs(self, runner_request_ids: Sequence[int]) -> list[int]:
        """Acquire ``JobAvailable`` jobs (older GHES); the ids acquired."""
        ...

    async def close(self) -> None:
        """Delete the session; never raises."""
        ...


class ScaleSetAPI(Protocol):
    """The Actions-service side of one GitHub scope (a target and its credentials)."""

    async def ensure_scale_set(self, spec: ScaleSetSpec) -> ScaleSet:
        """Find the scale set by name in its runner group; create it when absent; update its
        labels when they differ."""
        ...

    async def open_session(self, scale_set: ScaleSet, owner: str) -> ScaleSetSession:
        """Create the session; while another holds it (409), wait with backoff until it
        clears."""
        ...

    async def generate_jitconfig(self, scale_set: ScaleSet, name: str) -> JitConfig: ...

    async def remove_runner(self, runner_id: int) -> DeleteOutcome:
        """DELETED; BUSY when the service refuses (``JobStillRunningException``); GONE when
        it does not know the runner."""
        ...

    async def delete_scale_set(self, scale_set_id: int) -> None: ...

    async def close(self) -> None: ...
