"""How a job observation changes a stored job: the one rule every store applies.

Observations arrive duplicated and out of order (webhook retries, polls racing deliveries). A
forward move takes the observation's fields; a duplicate or stale one only fills fields still
unknown, so a completed job keeps its conclusion. Identity fields (repository, creation time)
never change. Keeping the rule here means the SQL store the daemon uses and the in-memory store
the simulation uses cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from runnerscale.model import Job, JobState
from runnerscale.protocols import ObservedJob

#: Job fields an observation reports beyond id and state.
OBSERVED_FIELDS: Final = (
    "run_id",
    "name",
    "started_at",
    "completed_at",
    "runner_name",
    "conclusion",
)


class _StoredJob(Protocol):
    labels: Any
    observed_at: float


def merge_observation(
    stored: _StoredJob, stored_state: JobState, job: ObservedJob, now: float
) -> JobState:
    """Apply ``job`` to ``stored`` in place (all but the state); returns the new state, which
    the caller stores in its own representation."""
    forward = stored_state.can_become(job.state)
    for field in OBSERVED_FIELDS:
        value = getattr(job, field)
        if value is not None and (forward or getattr(stored, field) is None):
            setattr(stored, field, value)
    if not stored.labels and job.labels:
        stored.labels = type(stored.labels)(job.labels)
    stored.observed_at = max(stored.observed_at, now)
    return job.state if forward else stored_state


def first_seen(job: ObservedJob, now: float) -> Job:
    """A job as its first observation records it (no pool chosen yet)."""
    return Job(
        id=job.id,
        repo=job.repo,
        labels=tuple(job.labels),
        state=job.state,
        created_at=job.created_at,
        run_id=job.run_id,
        name=job.name,
        started_at=job.started_at,
        completed_at=job.completed_at,
        runner_name=job.runner_name,
        conclusion=job.conclusion,
        observed_at=now,
    )
