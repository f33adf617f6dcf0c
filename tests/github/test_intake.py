"""The one webhook intake (``WebhookIntake``), shared by the HTTP server and the simulation."""

from __future__ import annotations

from runnerscale.github.webhooks import (
    Verdict,
    WebhookIntake,
    WebhookPayloadError,
    observed_from_event,
    parse_workflow_job_event,
)
from runnerscale.model import JobState
from runnerscale.store.memory import MemoryStore
from tests.github.test_webhooks import WORKFLOW_JOB_DIR

QUEUED = (WORKFLOW_JOB_DIR / "queued.payload.json").read_bytes()
HELD = (WORKFLOW_JOB_DIR / "queued.with-deployment.payload.json").read_bytes()


class FixedClock:
    def now(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the intake never waits")


def intake(*covered: str) -> WebhookIntake:
    return WebhookIntake(MemoryStore(), lambda repo: repo in covered, FixedClock())


def test_accepted_delivery_is_translated() -> None:
    repo = parse_workflow_job_event(QUEUED).repo_full_name
    taken = intake(repo).take(QUEUED, "guid-1")
    assert taken.verdict is Verdict.ACCEPTED
    assert taken.observed == observed_from_event(taken.event)
    assert taken.observed.state is JobState.QUEUED
    assert taken.observed.repo == repo


def test_state_comes_from_the_status_not_the_action() -> None:
    repo = parse_workflow_job_event(HELD).repo_full_name
    taken = intake(repo).take(HELD, "guid-1")
    assert taken.observed is not None
    assert taken.observed.state is JobState.WAITING
    assert taken.observed.started_at is None


def test_a_repeated_delivery_is_a_duplicate_whatever_its_repository() -> None:
    repo = parse_workflow_job_event(QUEUED).repo_full_name
    covering = intake(repo)
    assert covering.take(QUEUED, "guid-1").verdict is Verdict.ACCEPTED
    assert covering.take(QUEUED, "guid-1").verdict is Verdict.DUPLICATE
    elsewhere = intake()
    assert elsewhere.take(QUEUED, "guid-2").verdict is Verdict.NOT_A_TARGET
    assert elsewhere.take(QUEUED, "guid-2").verdict is Verdict.DUPLICATE


def test_a_delivery_without_a_guid_is_never_a_duplicate() -> None:
    repo = parse_workflow_job_event(QUEUED).repo_full_name
    taken = intake(repo)
    assert taken.take(QUEUED, None).verdict is Verdict.ACCEPTED
    assert taken.take(QUEUED, "").verdict is Verdict.ACCEPTED


def test_a_bad_body_is_a_payload_error_and_is_not_remembered() -> None:
    repo = parse_workflow_job_event(QUEUED).repo_full_name
    taken = intake(repo)
    try:
        taken.take(b"{", "guid-1")
    except WebhookPayloadError:
        pass
    else:
        raise AssertionError("a truncated body must not parse")
    assert taken.take(QUEUED, "guid-1").verdict is Verdict.ACCEPTED
