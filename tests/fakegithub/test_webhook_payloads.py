"""The simulator's ``workflow_job`` deliveries against GitHub's published schema.

Each generated body must validate against the bundled octokit schema (so the simulator sends
what GitHub sends) and parse with the production model (so the autoscaler reads it), for every
action and for org- and user-owned repositories.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft7Validator
from jsonschema.exceptions import relevance

from runnerscale.clock import iso8601
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.entities import (
    Conclusion,
    Job,
    JobStatus,
    Owner,
    OwnerType,
    Repo,
    WorkflowRun,
)
from runnerscale.fakegithub.webhook_payloads import (
    HOOKSHOT_VERSION,
    WORKFLOW_JOB_ACTIONS,
    legacy_node_id,
    webhook_delivery_headers,
    workflow_job_payload,
)
from runnerscale.github import webhooks
from runnerscale.github.webhooks import parse_workflow_job_event, verify_signature
from tests.contract.openapi import contract_dir

WEB_URL = "http://127.0.0.1:8765"
API_URL = "http://127.0.0.1:8765/api/v3/"  # trailing slash on purpose: it must not double up
T0 = 1_760_000_000.0


@cache
def _validator() -> Draft7Validator:
    path = contract_dir() / "webhooks" / "workflow_job" / "workflow_job.bundled.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    # The format checker catches timestamps that are not RFC 3339 (rfc3339-validator is
    # installed); "uri" is checked only when rfc3987 is, which it need not be.
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _schema_errors(payload: dict[str, Any]) -> list[str]:
    errors = sorted(_validator().iter_errors(payload), key=relevance, reverse=True)
    lines: list[str] = []
    for error in errors:
        lines.append(f"{error.json_path}: {error.message[:300]}")
        # oneOf over the four actions: say why the branch for this action failed.
        lines.extend(
            f"    {sub.json_path}: {sub.message[:300]}"
            for sub in sorted(error.context or [], key=relevance, reverse=True)
        )
    return lines


def assert_valid(payload: dict[str, Any]) -> None:
    errors = _schema_errors(json.loads(json.dumps(payload)))
    assert not errors, "payload breaks workflow_job.bundled.schema.json:\n" + "\n".join(errors)


# --- entities ------------------------------------------------------------------------------

ORG = Owner(login="acme", id=1001, type=OwnerType.ORGANIZATION, created_at=T0 - 86_400)
USER = Owner(login="octocat", id=2002, type=OwnerType.USER, created_at=T0 - 86_400)
OTHER_USER = Owner(login="hubot", id=3003, type=OwnerType.USER, created_at=T0 - 3_600)


def _repo(owner: Owner, *, private: bool = True) -> Repo:
    created = T0 - 7_200
    return Repo(
        id=500 + owner.id,
        owner=owner,
        name="app",
        created_at=created,
        pushed_at=created,
        private=private,
    )


def _run(repo: Repo) -> WorkflowRun:
    return WorkflowRun(
        id=9_000,
        repo=repo,
        name="CI",
        run_number=7,
        created_at=T0,
        updated_at=T0,
        head_sha="3484a3fb816e0859fd6e1cea078d76385ff50625",
        head_branch="feature/x",
    )


def _job(repo: Repo, **changes: Any) -> Job:
    job = Job(
        id=77_000,
        run=_run(repo),
        name="build (linux)",
        labels=["self-hosted", "linux", "x64"],
        duration=120.0,
        planned_conclusion=Conclusion.SUCCESS,
        created_at=T0 + 1,
    )
    for key, value in changes.items():
        setattr(job, key, value)
    return job


RUNNER = {
    "runner_id": 42,
    "runner_name": "rs-acme-0001",
    "runner_group_id": 1,
    "runner_group_name": "Default",
}


def queued(repo: Repo) -> Job:
    return _job(repo)


def waiting(repo: Repo) -> Job:
    return _job(repo, status=JobStatus.WAITING, environment="production")


def in_progress(repo: Repo) -> Job:
    return _job(repo, status=JobStatus.IN_PROGRESS, started_at=T0 + 30, **RUNNER)


def completed(conclusion: Conclusion) -> Callable[[Repo], Job]:
    def build(repo: Repo) -> Job:
        return _job(
            repo,
            status=JobStatus.COMPLETED,
            conclusion=conclusion,
            started_at=T0 + 30,
            completed_at=T0 + 150,
            **RUNNER,
        )

    return build


def cancelled_before_running(repo: Repo) -> Job:
    return _job(
        repo, status=JobStatus.COMPLETED, conclusion=Conclusion.CANCELLED, completed_at=T0 + 60
    )


CASES: list[tuple[str, Callable[[Repo], Job]]] = [
    ("queued", queued),
    ("waiting", waiting),
    ("in_progress", in_progress),
    ("completed", completed(Conclusion.SUCCESS)),
    ("completed", completed(Conclusion.FAILURE)),
    ("completed", cancelled_before_running),
]
CASE_IDS = [
    "queued",
    "waiting",
    "in_progress",
    "completed-success",
    "completed-failure",
    "completed-cancelled-no-runner",
]
OWNERS = pytest.mark.parametrize("owner", [ORG, USER], ids=["org", "user"])


def _payload(action: str, job: Job, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("installation_id", 31)
    return workflow_job_payload(action, job, web_url=WEB_URL, api_url=API_URL, **kwargs)


# --- schema and production parser ----------------------------------------------------------


@OWNERS
@pytest.mark.parametrize(("action", "make_job"), CASES, ids=CASE_IDS)
def test_payload_fits_schema_and_production_parser(
    owner: Owner, action: str, make_job: Callable[[Repo], Job]
) -> None:
    job = make_job(_repo(owner))
    payload = _payload(action, job)

    assert_valid(payload)
    event = parse_workflow_job_event(json.dumps(payload).encode())

    assert event.action == action
    assert event.workflow_job.status == action
    assert event.workflow_job.id == job.id
    assert event.workflow_job.run_id == job.run.id
    assert event.workflow_job.labels == job.labels
    assert event.workflow_job.workflow_name == "CI"
    assert event.workflow_job.head_branch == "feature/x"
    assert event.repo_full_name == f"{owner.login}/app"
    assert event.owner == owner.login
    assert event.installation_id == 31
    assert event.sender_login == owner.login
    if owner.type is OwnerType.ORGANIZATION:
        assert event.organization_login == owner.login
    else:
        assert "organization" not in payload
    # Only a job that waits on an environment is a deployment.
    assert ("deployment" in payload) == (job.environment is not None)


@OWNERS
@pytest.mark.parametrize(("action", "make_job"), CASES, ids=CASE_IDS)
def test_payload_without_installation_and_with_other_sender(
    owner: Owner, action: str, make_job: Callable[[Repo], Job]
) -> None:
    payload = _payload(
        action, make_job(_repo(owner, private=False)), installation_id=None, sender=OTHER_USER
    )
    assert_valid(payload)
    assert "installation" not in payload
    assert payload["repository"]["visibility"] == "public"
    event = parse_workflow_job_event(json.dumps(payload))
    assert event.installation_id is None
    assert event.sender_login == "hubot"


def test_validator_rejects_a_broken_payload() -> None:
    # Guard against a validator that passes everything (e.g. an unresolved $ref).
    payload = copy.deepcopy(_payload("in_progress", in_progress(_repo(ORG))))
    del payload["workflow_job"]["runner_name"]
    payload["repository"]["created_at"] = 1.5
    payload["workflow_job"]["started_at"] = "2025-10-09 08:53:20"  # not RFC 3339
    errors = "\n".join(_schema_errors(payload))
    assert "runner_name" in errors
    assert "created_at" in errors
    assert "'2025-10-09 08:53:20' is not a 'date-time'" in errors


# --- per-action semantics ------------------------------------------------------------------


def test_queued_job_has_no_runner_steps_or_conclusion() -> None:
    job = queued(_repo(ORG))
    # Even if the job has already moved on, a queued delivery is a snapshot of "queued".
    for key, value in RUNNER.items():
        setattr(job, key, value)
    workflow_job = _payload("queued", job)["workflow_job"]

    assert workflow_job["steps"] == []
    assert workflow_job["conclusion"] is None
    assert workflow_job["completed_at"] is None
    assert workflow_job["started_at"] == workflow_job["created_at"] == iso8601(T0 + 1)
    assert [workflow_job[key] for key in RUNNER] == [None] * 4


def test_in_progress_job_carries_its_runner_and_a_running_step() -> None:
    workflow_job = _payload("in_progress", in_progress(_repo(ORG)))["workflow_job"]

    assert {key: workflow_job[key] for key in RUNNER} == RUNNER
    assert workflow_job["started_at"] == iso8601(T0 + 30)
    assert workflow_job["conclusion"] is None
    assert [(s["status"], s["conclusion"]) for s in workflow_job["steps"]] == [
        ("in_progress", None)
    ]


def test_failed_job_has_completed_steps_with_the_failure_in_the_middle() -> None:
    workflow_job = _payload("completed", completed(Conclusion.FAILURE)(_repo(ORG)))["workflow_job"]

    assert workflow_job["conclusion"] == "failure"
    assert workflow_job["completed_at"] == iso8601(T0 + 150)
    steps = workflow_job["steps"]
    assert [s["number"] for s in steps] == [1, 2, 3]
    assert [s["conclusion"] for s in steps] == ["success", "failure", "success"]
    assert steps[0]["started_at"] == iso8601(T0 + 30)
    assert steps[-1]["completed_at"] == iso8601(T0 + 150)


def test_job_cancelled_before_running_has_no_runner_and_no_steps() -> None:
    workflow_job = _payload("completed", cancelled_before_running(_repo(USER)))["workflow_job"]

    assert workflow_job["conclusion"] == "cancelled"
    assert workflow_job["steps"] == []
    assert workflow_job["started_at"] == iso8601(T0 + 1)
    assert workflow_job["completed_at"] == iso8601(T0 + 60)
    assert [workflow_job[key] for key in RUNNER] == [None] * 4


def test_urls_follow_githubs_patterns() -> None:
    payload = _payload("queued", queued(_repo(ORG)))
    workflow_job = payload["workflow_job"]
    api = "http://127.0.0.1:8765/api/v3/repos/acme/app"

    assert workflow_job["url"] == f"{api}/actions/jobs/77000"
    assert workflow_job["run_url"] == f"{api}/actions/runs/9000"
    assert workflow_job["check_run_url"] == f"{api}/check-runs/77000"
    assert workflow_job["html_url"] == f"{WEB_URL}/acme/app/actions/runs/9000/job/77000"
    repository = payload["repository"]
    assert repository["url"] == api
    assert repository["html_url"] == f"{WEB_URL}/acme/app"
    assert repository["statuses_url"] == f"{api}/statuses/{{sha}}"
    assert repository["owner"]["url"] == "http://127.0.0.1:8765/api/v3/users/acme"
    assert repository["ssh_url"] == "git@127.0.0.1:acme/app.git"
    assert repository["clone_url"] == f"{WEB_URL}/acme/app.git"
    assert payload["organization"]["url"] == "http://127.0.0.1:8765/api/v3/orgs/acme"


@pytest.mark.parametrize("action", WORKFLOW_JOB_ACTIONS)
def test_a_job_waiting_on_an_environment_carries_its_deployment(action: str) -> None:
    job = _job(
        _repo(ORG),
        environment="production",
        conclusion=Conclusion.SUCCESS,
        started_at=T0 + 30,
        completed_at=T0 + 150,
        **RUNNER,
    )
    payload = _payload(action, job)

    assert_valid(payload)
    deployment = payload["deployment"]
    api = "http://127.0.0.1:8765/api/v3/repos/acme/app"
    assert deployment["environment"] == deployment["original_environment"] == "production"
    assert deployment["url"] == f"{api}/deployments/{deployment['id']}"
    assert deployment["statuses_url"] == f"{deployment['url']}/statuses"
    assert deployment["repository_url"] == api
    assert (deployment["sha"], deployment["ref"]) == (job.run.head_sha, job.run.head_branch)
    assert deployment["creator"]["login"] == "acme"
    assert deployment["performed_via_github_app"]["slug"] == "github-actions"
    assert deployment["created_at"] == iso8601(job.created_at)
    # Every delivery of the job names the same deployment.
    assert _payload("queued", job)["deployment"] == deployment


def test_the_deployment_has_the_published_examples_keys() -> None:
    path = contract_dir() / "webhooks" / "workflow_job" / "queued.with-deployment.payload.json"
    example = json.loads(path.read_text(encoding="utf-8"))
    deployment = _payload("waiting", waiting(_repo(ORG)))["deployment"]

    assert set(deployment) == set(example["deployment"])
    app = deployment["performed_via_github_app"]
    assert set(app) == set(example["deployment"]["performed_via_github_app"])
    assert app["id"] == example["deployment"]["performed_via_github_app"]["id"]


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workflow_job action"):
        _payload("started", queued(_repo(ORG)))


def test_completed_without_conclusion_is_refused() -> None:
    with pytest.raises(ValueError, match="conclusion"):
        _payload("completed", in_progress(_repo(ORG)))


def test_installation_node_id_uses_githubs_legacy_format() -> None:
    # Value from the published payload examples.
    assert (
        legacy_node_id("IntegrationInstallation", 3456996)
        == "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMzQ1Njk5Ng=="
    )
    payload = _payload("queued", queued(_repo(ORG)), installation_id=3456996)
    assert payload["installation"]["node_id"] == legacy_node_id("IntegrationInstallation", 3456996)


def test_delivery_agrees_with_the_rest_shapes() -> None:
    # The same account, repository and job carry the same ids and URLs in both views.
    job = completed(Conclusion.SUCCESS)(_repo(ORG))
    urls = shapes.Urls(api=API_URL.rstrip("/"), web=WEB_URL)
    payload = _payload("completed", job)

    assert payload["workflow_job"] == shapes.job(job, urls)
    rest_repo = shapes.minimal_repository(job.repo, urls)
    for key in ("node_id", "url", "html_url", "clone_url", "created_at", "visibility"):
        assert payload["repository"][key] == rest_repo[key]
    assert payload["repository"]["owner"]["node_id"] == rest_repo["owner"]["node_id"]
    assert payload["organization"]["node_id"] == rest_repo["owner"]["node_id"]
    assert payload["organization"]["avatar_url"] == rest_repo["owner"]["avatar_url"]
    assert payload["repository"]["pushed_at"] == iso8601(job.run.created_at)


# --- delivery headers ----------------------------------------------------------------------

BODY = json.dumps({"action": "queued"}).encode()


def _headers(secret: str | None) -> dict[str, str]:
    return webhook_delivery_headers(
        event="workflow_job",
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        hook_id=292430182,
        body=BODY,
        secret=secret,
        target_type="integration",
        target_id=79929171,
    )


def _documented_names() -> set[str]:
    document = json.loads((contract_dir() / "headers.json").read_text(encoding="utf-8"))
    example = document["webhook_delivery_headers"]["example_delivery_from_same_document"]
    return set(example) - {"Content-Length"}


def test_signed_delivery_headers_are_the_documented_ones() -> None:
    headers = _headers("s3cret")

    assert set(headers) == _documented_names()
    assert headers["X-GitHub-Event"] == "workflow_job"
    assert headers["X-GitHub-Delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert headers["X-GitHub-Hook-ID"] == "292430182"
    assert headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == "79929171"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"GitHub-Hookshot/{HOOKSHOT_VERSION}"
    assert verify_signature("s3cret", BODY, headers[webhooks.HEADER_SIGNATURE_256])
    expected_sha1 = hmac.new(b"s3cret", BODY, hashlib.sha1).hexdigest()
    assert headers["X-Hub-Signature"] == f"sha1={expected_sha1}"


@pytest.mark.parametrize("secret", [None, ""])
def test_unsigned_delivery_has_no_signature_headers(secret: str | None) -> None:
    headers = _headers(secret)

    assert set(headers) == _documented_names() - {"X-Hub-Signature", "X-Hub-Signature-256"}
