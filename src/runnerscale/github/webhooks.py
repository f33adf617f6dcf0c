"""What the autoscaler takes from a ``workflow_job`` webhook delivery, and how it trusts one.

GitHub's payload is large and grows new fields over time; the autoscaler needs a dozen of them.
So the models below name only those fields, ignore everything else, and still check the ones
they name (types, required keys, the known ``action`` values, and the limits of what GitHub
sends: :mod:`runnerscale.github.fields`), so a delivery either yields trustworthy facts or a
:class:`WebhookPayloadError` that says what was wrong without echoing the (possibly huge,
possibly hostile) payload back into logs. Nothing past the parse can then fail on a value.

:class:`WebhookIntake` is the one intake of deliveries, used by the daemon's HTTP server and by
the simulation alike: parse, drop a repeated delivery (its ``X-GitHub-Delivery`` GUID is
remembered in the store, in the same transaction as the job it carries), drop a repository
outside the targets, and translate the rest into the controller's
:class:`~runnerscale.protocols.ObservedJob` (:func:`observed_from_event`).
Repeated or reordered *transitions* of a job need no filter here: the store merges job
observations forward only, and the controller skips an observation identical to the last.

Signatures are GitHub's ``X-Hub-Signature-256``: an HMAC-SHA256 of the raw body keyed with the
webhook secret. Signing and the constant-time comparison come from githubkit, the project's
GitHub library; this module only adds the strict header checks around them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from githubkit.webhooks import sign as _githubkit_sign
from githubkit.webhooks import verify as _githubkit_verify
from pydantic import BaseModel, ConfigDict, ValidationError

from runnerscale.github.fields import (
    Conclusion,
    Id,
    Labels,
    Name,
    RunnerRef,
    Text,
    When,
    delivery_problem,
)
from runnerscale.model import JobState
from runnerscale.protocols import Clock, Delivery, ObservedJob, Store, Taken

__all__ = [
    "HEADER_DELIVERY",
    "HEADER_EVENT",
    "HEADER_HOOK_ID",
    "HEADER_SIGNATURE_256",
    "HEADER_SIGNATURE_SHA1",
    "HEADER_TARGET_ID",
    "HEADER_TARGET_TYPE",
    "WORKFLOW_JOB_EVENT",
    "AccountRef",
    "InstallationRef",
    "Intake",
    "OrganizationRef",
    "Reading",
    "RepositoryRef",
    "Verdict",
    "WebhookIntake",
    "WebhookPayloadError",
    "WorkflowJob",
    "WorkflowJobAction",
    "WorkflowJobEvent",
    "WorkflowJobStatus",
    "observed_from_event",
    "parse_workflow_job_event",
    "sign",
    "verify_signature",
]

# Delivery header names, spelled as GitHub's docs spell them (HTTP header names are
# case-insensitive, so receivers should look them up case-insensitively anyway).
HEADER_EVENT: Final = "X-GitHub-Event"
HEADER_DELIVERY: Final = "X-GitHub-Delivery"
HEADER_HOOK_ID: Final = "X-GitHub-Hook-ID"
HEADER_TARGET_TYPE: Final = "X-GitHub-Hook-Installation-Target-Type"
HEADER_TARGET_ID: Final = "X-GitHub-Hook-Installation-Target-ID"
HEADER_SIGNATURE_256: Final = "X-Hub-Signature-256"
#: Legacy SHA-1 signature; GitHub still sends it, the autoscaler never trusts it.
HEADER_SIGNATURE_SHA1: Final = "X-Hub-Signature"

#: The ``X-GitHub-Event`` value of the deliveries this module parses.
WORKFLOW_JOB_EVENT: Final = "workflow_job"

WorkflowJobAction = Literal["queued", "waiting", "in_progress", "completed"]
WorkflowJobStatus = Literal["queued", "waiting", "in_progress", "completed"]

_SIGNATURE_256 = re.compile(r"sha256=[0-9a-fA-F]{64}")
_MAX_REPORTED_ERRORS = 5


class WebhookPayloadError(ValueError):
    """A delivery whose body is not JSON or does not fit the expected event shape, or whose
    ``X-GitHub-Delivery`` cannot be GitHub's: the server answers 400 with this message."""


class _Model(BaseModel):
    # Unknown fields are ignored so GitHub adding keys never breaks parsing; frozen because a
    # parsed delivery is a fact, not something to edit; strict because GitHub sends numbers
    # as numbers and strings as strings.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class AccountRef(_Model):
    """A user, bot or organisation as it appears in ``owner`` and ``sender``."""

    login: Name
    id: Id | None = None
    type: Name | None = None


class OrganizationRef(_Model):
    login: Name
    id: Id | None = None


class InstallationRef(_Model):
    """The App installation the delivery was sent for (App webhooks only)."""

    id: Id


class RepositoryRef(_Model):
    id: Id
    name: Name
    full_name: Name
    owner: AccountRef


class WorkflowJob(_Model):
    """The job a delivery is about: what it needs (labels) and where it runs (runner fields).

    The runner fields are usually null until the job is picked up, but GitHub's own examples
    show them set on ``queued`` deliveries too, so nothing here relies on that.
    """

    id: Id
    run_id: Id
    run_attempt: Id = 1
    name: Text
    status: WorkflowJobStatus
    #: Kept open (a snake-case word): GitHub's list (``timed_out``, ``neutral``, ...) outgrows
    #: any enum.
    conclusion: Conclusion | None = None
    labels: Labels
    runner_id: RunnerRef | None = None
    runner_name: Name | None = None
    runner_group_id: RunnerRef | None = None
    runner_group_name: Name | None = None
    created_at: When
    started_at: When | None = None
    completed_at: When | None = None
    workflow_name: Text | None = None
    head_branch: Text | None = None
    html_url: Text


class WorkflowJobEvent(_Model):
    """One ``workflow_job`` delivery.

    ``action`` is the transition that triggered the delivery; it can differ from
    ``workflow_job.status`` (GitHub sends ``action: queued`` with ``status: waiting`` for jobs
    held by a deployment environment).
    """

    action: WorkflowJobAction
    workflow_job: WorkflowJob
    repository: RepositoryRef
    organization: OrganizationRef | None = None
    installation: InstallationRef | None = None
    sender: AccountRef | None = None

    @property
    def owner(self) -> str:
        """Login of the repository's owner (organisation or user)."""
        return self.repository.owner.login

    @property
    def repo_name(self) -> str:
        return self.repository.name

    @property
    def repo_full_name(self) -> str:
        """``owner/name``."""
        return self.repository.full_name

    @property
    def installation_id(self) -> int | None:
        return None if self.installation is None else self.installation.id

    @property
    def organization_login(self) -> str | None:
        return None if self.organization is None else self.organization.login

    @property
    def sender_login(self) -> str | None:
        return None if self.sender is None else self.sender.login


def parse_workflow_job_event(body: bytes | str, *, now: float | None = None) -> WorkflowJobEvent:
    """Parse a ``workflow_job`` delivery body.

    Raises :class:`WebhookPayloadError` naming the offending fields (never their values) when
    the body is not JSON, lacks what the autoscaler relies on, or holds what GitHub never
    sends. ``now`` (epoch seconds, the receiver's clock) bounds the dates from above; without
    it only the fixed lower bound applies (for reading recorded deliveries).
    """
    try:
        return WorkflowJobEvent.model_validate_json(body, context={"now": now})
    except ValidationError as exc:
        raise WebhookPayloadError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for error in errors:
        if error["type"] == "json_invalid":
            return f"workflow_job payload is not valid JSON ({error['msg']})"
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or '<body>'}: {error['msg']}"
        for error in errors[:_MAX_REPORTED_ERRORS]
    ]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "workflow_job payload does not fit the expected shape: " + "; ".join(parts)


def observed_from_event(event: WorkflowJobEvent) -> ObservedJob:
    """The controller's view of a delivery: the job's state is ``workflow_job.status``, not
    ``action`` (GitHub sends ``action: queued`` with ``status: waiting`` for jobs held by an
    environment); ``started_at`` only once it left the queue."""
    job = event.workflow_job
    state = JobState(job.status)
    return ObservedJob(
        id=job.id,
        repo=event.repo_full_name,
        labels=tuple(job.labels),
        state=state,
        created_at=job.created_at.timestamp(),
        run_id=job.run_id,
        name=job.name,
        started_at=job.started_at.timestamp()
        if job.started_at and state not in (JobState.QUEUED, JobState.WAITING)
        else None,
        completed_at=job.completed_at.timestamp() if job.completed_at else None,
        runner_name=job.runner_name or None,
        conclusion=job.conclusion,
    )


class Verdict(enum.Enum):
    """What the intake made of a delivery."""

    #: A job of a target: hand ``Intake.observed`` to the controller.
    ACCEPTED = "accepted"
    #: A delivery already taken (the same ``X-GitHub-Delivery``): nothing to do.
    DUPLICATE = "duplicate delivery ignored"
    #: A repository outside every target: nothing to do.
    NOT_A_TARGET = "repository not among the targets"


@dataclass(frozen=True)
class Intake:
    verdict: Verdict
    event: WorkflowJobEvent
    #: The observation to hand over (``ACCEPTED`` only).
    observed: ObservedJob | None = None
    #: What the store made of the delivery (its job before and after, when it recorded one).
    taken: Taken | None = None


@dataclass(frozen=True)
class Reading:
    """A delivery read and checked, not yet recorded: what :meth:`WebhookIntake.judge` needs
    once the store has taken ``delivery``."""

    event: WorkflowJobEvent
    delivery: Delivery
    covered: bool
    observed: ObservedJob


def _always(observed: ObservedJob) -> bool:
    return True


@dataclass
class WebhookIntake:
    """The one intake of ``workflow_job`` deliveries (the HTTP server and the simulation).

    The delivery's GUID is remembered whatever its repository, so a repeated delivery is a
    duplicate whatever its repository; a delivery without a GUID is never a duplicate. The
    GUID and the job are recorded in one transaction
    (:meth:`~runnerscale.protocols.Store.take_deliveries`): a delivery is never remembered
    without its job, so a redelivery after a crash is not dropped as a duplicate.
    """

    store: Store
    #: Whether a repository belongs to a target (``Controller.covers``).
    covers: Callable[[str], bool]
    clock: Clock
    #: Whether an observation tells the controller something new (``Controller.fresh``): one
    #: identical to the last it took is not written again.
    fresh: Callable[[ObservedJob], bool] = _always

    def read(self, body: bytes | str, delivery: str | None) -> Reading:
        """Parse and check a delivery. Raises :class:`WebhookPayloadError` for a body that is
        not a ``workflow_job``, or a ``delivery`` GUID that cannot be GitHub's."""
        problem = delivery_problem(delivery) if delivery else None
        if problem is not None:
            raise WebhookPayloadError(problem)
        event = parse_workflow_job_event(body, now=self.clock.now())
        observed = observed_from_event(event)
        covered = self.covers(event.repo_full_name)
        job = observed if covered and self.fresh(observed) else None
        return Reading(event, Delivery(delivery or None, job), covered, observed)

    def judge(self, reading: Reading, taken: Taken) -> Intake:
        """The verdict on a delivery the store has taken."""
        if not taken.new:
            return Intake(Verdict.DUPLICATE, reading.event, taken=taken)
        if not reading.covered:
            return Intake(Verdict.NOT_A_TARGET, reading.event, taken=taken)
        return Intake(Verdict.ACCEPTED, reading.event, reading.observed, taken)

    def take(self, body: bytes | str, delivery: str | None) -> Intake:
        """Read and record a delivery at once (the simulation's path; the daemon's groups its
        writes: :mod:`runnerscale.controller.deliveries`). Raises as :meth:`read` does;
        nothing is remembered then."""
        reading = self.read(body, delivery)
        taken = self.store.take_deliveries([reading.delivery], self.clock.now())[0]
        return self.judge(reading, taken)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``: ``sha256=<hex>``."""
    return _githubkit_sign(secret, body, "sha256")


def verify_signature(secret: str, body: bytes, signature_header: str | None) -> bool:
    """Whether ``signature_header`` is a valid ``X-Hub-Signature-256`` for ``body``.

    Constant-time in the signature (githubkit compares with :func:`hmac.compare_digest`).
    Returns False, never raises, for a missing or malformed header, and for an empty secret:
    an HMAC keyed with nothing authenticates nothing. Only SHA-256 is accepted; the legacy
    SHA-1 ``X-Hub-Signature`` is not.
    """
    if not secret or signature_header is None:
        return False
    if _SIGNATURE_256.fullmatch(signature_header) is None:
        return False
    # The regex admits only ASCII, so compare_digest cannot raise on the string comparison.
    return _githubkit_verify(secret, body, signature_header.lower())
