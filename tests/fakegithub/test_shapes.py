"""The simulator's JSON bodies fit GitHub's OpenAPI description, and the contract checker
itself tells a fitting body from a wrong one."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.entities import (
    Conclusion,
    ExpiringToken,
    Installation,
    Job,
    JobStatus,
    Owner,
    OwnerType,
    Repo,
    Runner,
    RunnerGroup,
    RunnerLabel,
    WorkflowRun,
)
from tests.contract.openapi import OpenAPIContract, ValidatingTransport, default_contract

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
URLS = shapes.Urls(api="http://127.0.0.1:9000", web="http://127.0.0.1:9000/_web")

ORG = Owner(login="acme", id=1001, type=OwnerType.ORGANIZATION, created_at=T0)
USER = Owner(login="octo-dev", id=2002, type=OwnerType.USER, created_at=T0)
ORG_REPO = Repo(id=5_000_001, owner=ORG, name="app", created_at=T0 + 10, pushed_at=T0 + 90)
USER_REPO = Repo(
    id=42, owner=USER, name="tool", created_at=T0 + 20, pushed_at=T0 + 20, private=False
)

DEFAULT_GROUP = RunnerGroup(id=1, name="Default", default=True)
GPU_GROUP = RunnerGroup(id=2, name="gpu")
SELF_HOSTED = RunnerLabel(id=1, name="self-hosted", type="read-only")
LINUX = RunnerLabel(id=2, name="linux", type="read-only")
GPU = RunnerLabel(id=3, name="gpu", type="custom")


def _runner(runner_id: int, **overrides: Any) -> Runner:
    fields: dict[str, Any] = {
        "id": runner_id,
        "name": f"runner-{runner_id}",
        "scope": "acme",
        "labels": [SELF_HOSTED, LINUX],
        "runner_group": DEFAULT_GROUP,
        "ephemeral": True,
        "jit": True,
        "credential": "secret",
        "created_at": T0 + 30,
    } | overrides
    return Runner(**fields)


RUNNERS = {
    "registered, never connected": _runner(1),
    "online idle": _runner(2, connected=True, last_seen=T0 + 40, ephemeral=False, jit=False),
    "online busy": _runner(3, connected=True, last_seen=T0 + 40, job_id=7, labels=[GPU]),
    "offline after connecting": _runner(4, last_seen=T0 + 40, runner_group=GPU_GROUP),
    "repository runner": _runner(5, scope="acme/app", runner_group=None),
}

RUN = WorkflowRun(
    id=900,
    repo=ORG_REPO,
    name="CI",
    run_number=12,
    created_at=T0 + 100,
    updated_at=T0 + 400,
    head_sha="3484a3fb816e0859fd6e1cea078d76385ff50625",
    run_started_at=T0 + 100,
)
RETRIED_RUN = WorkflowRun(
    id=901,
    repo=USER_REPO,
    name="Build & Test",
    run_number=3,
    created_at=T0 + 100,
    updated_at=T0 + 100,
    head_sha="0" * 40,
    event="workflow_dispatch",
    run_attempt=2,
)


def _job(job_id: int, status: JobStatus, **overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "id": job_id,
        "run": RUN,
        "name": f"job-{job_id}",
        "labels": ["self-hosted", "linux"],
        "duration": 60.0,
        "planned_conclusion": Conclusion.SUCCESS,
        "created_at": T0 + 100,
        "status": status,
    } | overrides
    return Job(**fields)


RUNNER_FIELDS = {
    "runner_id": 3,
    "runner_name": "runner-3",
    "runner_group_id": 1,
    "runner_group_name": "Default",
}
JOBS = {
    "queued": _job(1, JobStatus.QUEUED),
    "waiting": _job(2, JobStatus.WAITING, environment="production"),
    "in_progress": _job(3, JobStatus.IN_PROGRESS, started_at=T0 + 110, **RUNNER_FIELDS),
    "success": _job(
        4,
        JobStatus.COMPLETED,
        conclusion=Conclusion.SUCCESS,
        started_at=T0 + 110,
        completed_at=T0 + 170,
        **RUNNER_FIELDS,
    ),
    "failure": _job(
        5,
        JobStatus.COMPLETED,
        conclusion=Conclusion.FAILURE,
        started_at=T0 + 110,
        completed_at=T0 + 110.5,
        **RUNNER_FIELDS,
    ),
    "cancelled while queued": _job(
        6, JobStatus.COMPLETED, conclusion=Conclusion.CANCELLED, completed_at=T0 + 120
    ),
    "cancelled while running": _job(
        7,
        JobStatus.COMPLETED,
        conclusion=Conclusion.CANCELLED,
        started_at=T0 + 110,
        completed_at=T0 + 150,
        failure_reason="The runner has received a shutdown signal.",
        **RUNNER_FIELDS,
    ),
    "skipped": _job(8, JobStatus.COMPLETED, conclusion=Conclusion.SKIPPED, completed_at=T0 + 100),
}

TOKEN = ExpiringToken(token="AABBCC", expires_at=T0 + 3600, scope="acme", kind="registration")


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return default_contract()


# --- every shape fits its component schema ------------------------------------------------

SAMPLES: list[tuple[str, str, Callable[[], shapes.JSON]]] = [
    ("simple-user", "organisation", lambda: shapes.simple_user(ORG, URLS)),
    ("simple-user", "user", lambda: shapes.simple_user(USER, URLS)),
    ("repository", "private org repo", lambda: shapes.repository(ORG_REPO, URLS)),
    ("repository", "public user repo", lambda: shapes.repository(USER_REPO, URLS)),
    ("minimal-repository", "org repo", lambda: shapes.minimal_repository(ORG_REPO, URLS)),
    (
        "full-repository",
        "org repo, the token user's view",
        lambda: shapes.full_repository(
            ORG_REPO, URLS, permissions=shapes.repository_permissions(None)
        ),
    ),
    (
        "full-repository",
        "public user repo, anonymous",
        lambda: shapes.full_repository(USER_REPO, URLS, permissions=None),
    ),
    ("root", "api root", lambda: shapes.api_root(URLS)),
    ("public-user", "organisation", lambda: shapes.public_user(ORG, URLS, public_repos=0)),
    (
        "private-user",
        "the token user",
        lambda: shapes.private_user(USER, URLS, public_repos=1, private_repos=2),
    ),
    (
        "organization-full",
        "owner's view",
        lambda: shapes.organization_full(ORG, URLS, public_repos=0, private_repos=1, admin=True),
    ),
    (
        "organization-full",
        "public view",
        lambda: shapes.organization_full(ORG, URLS, public_repos=0, private_repos=1, admin=False),
    ),
    (
        "integration",
        "the App",
        lambda: shapes.integration(
            77, "runnerscale-sim", USER, URLS, created_at=T0, installations=2
        ),
    ),
    ("runner-application", "windows", lambda: shapes.runner_applications("2.329.0", URLS)[-1]),
    (
        "installation",
        "organisation",
        lambda: shapes.installation(Installation(11, ORG, T0), 77, "runnerscale-sim", URLS),
    ),
    (
        "installation",
        "user",
        lambda: shapes.installation(Installation(12, USER, T0), 77, "runnerscale-sim", URLS),
    ),
    (
        "installation-token",
        "org permissions",
        lambda: shapes.installation_token(TOKEN, shapes.ORG_INSTALLATION_PERMISSIONS),
    ),
    ("authentication-token", "registration", lambda: shapes.authentication_token(TOKEN)),
    ("runner-label", "custom", lambda: shapes.runner_label(GPU)),
    ("runner-groups-org", "default", lambda: shapes.runner_group(DEFAULT_GROUP, "acme", URLS)),
    ("runner-groups-org", "custom", lambda: shapes.runner_group(GPU_GROUP, "acme", URLS)),
    ("workflow-run", "in progress", lambda: shapes.workflow_run(RUN, "in_progress", None, URLS)),
    (
        "workflow-run",
        "second attempt, completed",
        lambda: shapes.workflow_run(RETRIED_RUN, "completed", "failure", URLS),
    ),
    (
        "rate-limit-overview",
        "core only",
        lambda: shapes.rate_limit_overview({"core": (5000, 4990, int(T0) + 3600, 10)}),
    ),
    ("basic-error", "not found", lambda: shapes.error("Not Found", status=404)),
    (
        "validation-error",
        "missing field",
        lambda: shapes.validation_error(
            "Validation Failed",
            [{"resource": "Label", "field": "name", "code": "missing_field"}],
        ),
    ),
    (
        "validation-error-simple",
        "runner busy",
        lambda: shapes.validation_error_simple("Bad request", ["Runner is busy"]),
    ),
    *[("runner", name, lambda r=r: shapes.runner(r)) for name, r in RUNNERS.items()],
    *[("job", name, lambda j=j: shapes.job(j, URLS)) for name, j in JOBS.items()],
]


@pytest.mark.parametrize(
    ("schema", "render"),
    [pytest.param(schema, render, id=f"{schema}: {name}") for schema, name, render in SAMPLES],
)
def test_shape_fits_its_schema(
    contract: OpenAPIContract, schema: str, render: Callable[[], shapes.JSON]
) -> None:
    contract.validate_schema(schema, render())


def test_every_component_schema_a_shape_stands_for_is_exercised() -> None:
    exercised = {schema for schema, _, _ in SAMPLES}
    assert exercised >= {
        "simple-user",
        "repository",
        "minimal-repository",
        "installation",
        "installation-token",
        "authentication-token",
        "runner",
        "runner-label",
        "runner-groups-org",
        "job",
        "workflow-run",
        "rate-limit-overview",
        "basic-error",
        "validation-error",
    }


# --- whole response bodies, as the HTTP layer will assemble them ---------------------------


def test_list_bodies_fit_their_operations(contract: OpenAPIContract) -> None:
    runners = [shapes.runner(r) for r in RUNNERS.values()]
    jobs = [shapes.job(j, URLS) for j in JOBS.values()]
    repos = [shapes.repository(ORG_REPO, URLS)]
    installations = [shapes.installation(Installation(11, ORG, T0), 77, "sim", URLS)]
    bodies: list[tuple[str, str, int, Any]] = [
        ("GET", "/orgs/acme/actions/runners", 200, shapes.paginated("runners", runners, 5)),
        ("GET", "/repos/acme/app/actions/runners", 200, shapes.paginated("runners", [], 0)),
        ("GET", "/repos/acme/app/actions/runs/900/jobs", 200, shapes.paginated("jobs", jobs, 8)),
        (
            "GET",
            "/repos/acme/app/actions/runs",
            200,
            shapes.paginated("workflow_runs", [shapes.workflow_run(RUN, "queued", None, URLS)], 1),
        ),
        (
            "GET",
            "/orgs/acme/actions/runner-groups",
            200,
            shapes.paginated(
                "runner_groups", [shapes.runner_group(DEFAULT_GROUP, "acme", URLS)], 1
            ),
        ),
        (
            "GET",
            "/orgs/acme/actions/runners/3/labels",
            200,
            shapes.paginated("labels", [shapes.runner_label(GPU)], 1),
        ),
        ("GET", "/installation/repositories", 200, shapes.paginated("repositories", repos, 1)),
        ("GET", "/orgs/acme/repos", 200, [shapes.minimal_repository(ORG_REPO, URLS)]),
        ("GET", "/app/installations", 200, installations),
        (
            "POST",
            "/orgs/acme/actions/runners/generate-jitconfig",
            201,
            {
                "runner": shapes.runner(RUNNERS["registered, never connected"]),
                "encoded_jit_config": "e30=",
            },
        ),
        ("POST", "/repos/acme/app/actions/runs/900/cancel", 202, {}),
        (
            "POST",
            "/orgs/acme/actions/runners/registration-token",
            201,
            shapes.authentication_token(TOKEN),
        ),
        ("DELETE", "/orgs/acme/actions/runners/3", 204, None),
        ("DELETE", "/orgs/acme/actions/runners/3", 422, shapes.validation_error_simple("busy", [])),
        ("GET", "/rate_limit", 304, None),
    ]
    for method, path, status, body in bodies:
        contract.validate_response(method, path, status, body)


# --- what the shapes say, beyond fitting the schema ----------------------------------------


def test_urls_follow_githubs_patterns() -> None:
    repo = shapes.repository(ORG_REPO, URLS)
    assert repo["url"] == "http://127.0.0.1:9000/repos/acme/app"
    assert repo["html_url"] == "http://127.0.0.1:9000/_web/acme/app"
    assert repo["archive_url"] == "http://127.0.0.1:9000/repos/acme/app/{archive_format}{/ref}"
    assert repo["visibility"] == "private"
    assert repo["owner"]["url"] == "http://127.0.0.1:9000/users/acme"
    assert shapes.repository(USER_REPO, URLS)["visibility"] == "public"
    group = shapes.runner_group(GPU_GROUP, "acme", URLS)
    assert group["runners_url"] == "http://127.0.0.1:9000/orgs/acme/actions/runner-groups/2/runners"
    job = shapes.job(JOBS["success"], URLS)
    assert job["url"] == "http://127.0.0.1:9000/repos/acme/app/actions/jobs/4"
    assert job["run_url"] == "http://127.0.0.1:9000/repos/acme/app/actions/runs/900"
    assert job["check_run_url"] == "http://127.0.0.1:9000/repos/acme/app/check-runs/4"
    assert job["html_url"] == "http://127.0.0.1:9000/_web/acme/app/actions/runs/900/job/4"


def test_repository_extends_minimal_repository() -> None:
    minimal = shapes.minimal_repository(ORG_REPO, URLS)
    full = shapes.repository(ORG_REPO, URLS)
    assert full | minimal == full


def test_a_repository_shows_its_last_push() -> None:
    repo = shapes.minimal_repository(ORG_REPO, URLS)
    assert repo["created_at"] == "2026-01-01T00:00:10Z"
    assert repo["pushed_at"] == "2026-01-01T00:01:30Z"


def test_installation_permissions_depend_on_the_account_type() -> None:
    org = shapes.installation(Installation(11, ORG, T0), 77, "sim", URLS)
    user = shapes.installation(Installation(12, USER, T0), 77, "sim", URLS)
    assert org["permissions"]["organization_self_hosted_runners"] == "write"
    assert "organization_self_hosted_runners" not in user["permissions"]
    assert user["permissions"]["administration"] == "write"
    assert (org["target_type"], user["target_type"]) == ("Organization", "User")
    assert org["html_url"].endswith("/organizations/acme/settings/installations/11")


def test_runner_status_busy_and_group() -> None:
    idle, busy, fresh, repo_runner = (
        shapes.runner(RUNNERS[name])
        for name in (
            "online idle",
            "online busy",
            "registered, never connected",
            "repository runner",
        )
    )
    assert (idle["status"], idle["busy"], idle["ephemeral"]) == ("online", False, False)
    assert (busy["status"], busy["busy"]) == ("online", True)
    assert busy["labels"] == [{"id": 3, "name": "gpu", "type": "custom"}]
    assert (fresh["status"], fresh["version"], fresh["runner_group_id"]) == ("offline", None, 1)
    assert "runner_group_id" not in repo_runner


def test_job_steps_follow_the_job() -> None:
    rendered = {name: shapes.job(j, URLS) for name, j in JOBS.items()}
    for name in ("queued", "waiting", "cancelled while queued", "skipped"):
        assert rendered[name]["steps"] == [], name
    queued = rendered["queued"]
    assert queued["started_at"] == queued["created_at"] == "2026-01-01T00:01:40Z"
    assert queued["runner_id"] is None
    assert queued["conclusion"] is None
    assert [s["status"] for s in rendered["in_progress"]["steps"]] == ["in_progress"]
    success = rendered["success"]
    assert [s["conclusion"] for s in success["steps"]] == ["success"] * 3
    assert success["steps"][-1]["completed_at"] == success["completed_at"]
    assert [s["conclusion"] for s in rendered["cancelled while running"]["steps"]] == [
        "success",
        "cancelled",
        "success",
    ]
    assert rendered["failure"]["steps"][1]["conclusion"] == "failure"
    assert rendered["cancelled while running"]["runner_name"] == "runner-3"


def test_node_ids_are_deterministic_and_distinct() -> None:
    ids = [
        shapes.simple_user(ORG, URLS)["node_id"],
        shapes.simple_user(USER, URLS)["node_id"],
        shapes.repository(ORG_REPO, URLS)["node_id"],
        shapes.job(JOBS["queued"], URLS)["node_id"],
        shapes.workflow_run(RUN, "queued", None, URLS)["node_id"],
    ]
    assert len(set(ids)) == len(ids)
    assert ids[2] == shapes.repository(ORG_REPO, URLS)["node_id"]
    assert ids[2].startswith("R_kgDO")
    assert ids[3].startswith("CR_kwDO")


def test_workflow_run_details() -> None:
    run = shapes.workflow_run(RUN, "completed", "success", URLS)
    again = shapes.workflow_run(RUN, "completed", "success", URLS)
    assert run["path"] == ".github/workflows/ci.yml"
    assert run["workflow_id"] == again["workflow_id"]
    assert run["workflow_url"].endswith(f"/actions/workflows/{run['workflow_id']}")
    assert run["head_commit"]["id"] == RUN.head_sha
    assert run["repository"] == run["head_repository"]
    assert run["previous_attempt_url"] is None
    retried = shapes.workflow_run(RETRIED_RUN, "completed", "failure", URLS)
    assert retried["path"] == ".github/workflows/build-test.yml"
    assert retried["previous_attempt_url"].endswith("/actions/runs/901/attempts/1")
    assert retried["actor"]["login"] == "octo-dev"


def test_rate_limit_overview_reports_core_as_rate_and_fills_required_resources() -> None:
    body = shapes.rate_limit_overview({"core": (5000, 4990, 1_767_229_200, 10)})
    assert body["rate"] == {"limit": 5000, "remaining": 4990, "reset": 1_767_229_200, "used": 10}
    assert body["resources"]["core"] == body["rate"]
    assert body["resources"]["search"]["used"] == 0
    with pytest.raises(ValueError, match="core"):
        shapes.rate_limit_overview({"search": (30, 30, 0, 0)})


# --- the contract checker ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation_id"),
    [
        (
            "POST",
            "/orgs/acme/actions/runners/generate-jitconfig",
            "actions/generate-runner-jitconfig-for-org",
        ),
        ("GET", "/orgs/acme/actions/runners/17", "actions/get-self-hosted-runner-for-org"),
        ("delete", "/orgs/acme/actions/runners/17", "actions/delete-self-hosted-runner-from-org"),
        (
            "POST",
            "/repos/acme/app/actions/runners/registration-token",
            "actions/create-registration-token-for-repo",
        ),
        ("GET", "/repos/acme/app/actions/runners/5", "actions/get-self-hosted-runner-for-repo"),
        (
            "GET",
            "/repos/acme/app/actions/runners/5/labels",
            "actions/list-labels-for-self-hosted-runner-for-repo",
        ),
        (
            "GET",
            "/repos/acme/app/actions/runs?status=queued&per_page=100",
            "actions/list-workflow-runs-for-repo",
        ),
        ("POST", "/app/installations/11/access_tokens", "apps/create-installation-access-token"),
        ("GET", "/rate_limit/", "rate-limit/get"),
    ],
)
def test_operation_for_matches_concrete_paths(
    contract: OpenAPIContract, method: str, path: str, operation_id: str
) -> None:
    operation = contract.operation_for(method, path)
    assert operation is not None
    assert operation.operation_id == operation_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/orgs/acme/actions/runners/generate-jitconfig/extra"),
        ("PUT", "/orgs/acme/actions/runners/17/labels"),  # not in the subset
        ("GET", "/orgs//actions/runners"),  # a parameter never matches an empty segment
        ("GET", "/_sim/state"),
    ],
)
def test_operation_for_rejects_unknown_requests(
    contract: OpenAPIContract, method: str, path: str
) -> None:
    assert contract.operation_for(method, path) is None


def test_contract_lists_all_operations(contract: OpenAPIContract) -> None:
    ids = contract.operation_ids()
    # 29 collected 2026-11-22, 25 added 2026-12-02; 1 from tests/contract/supplement.json
    assert len(ids) == 55
    assert "actions/generate-runner-jitconfig-for-repo" in ids
    assert "checks/list-annotations" in ids


def test_validate_response_rejects_a_wrong_body(contract: OpenAPIContract) -> None:
    body = shapes.runner(RUNNERS["online busy"])
    del body["busy"]
    body["labels"][0]["type"] = "builtin"
    with pytest.raises(AssertionError) as failure:
        contract.validate_response("GET", "/orgs/acme/actions/runners/3", 200, body)
    message = str(failure.value)
    assert "actions/get-self-hosted-runner-for-org" in message
    assert "answered 200" in message
    assert "'busy' is a required property" in message
    assert "$.labels[0].type" in message


def test_validate_response_rejects_an_undocumented_status(contract: OpenAPIContract) -> None:
    with pytest.raises(AssertionError, match=r"status 201 is not documented \(documented: 200\)"):
        contract.validate_response("GET", "/orgs/acme/actions/runners/3", 201, {})


def test_undocumented_errors_must_still_be_github_errors(contract: OpenAPIContract) -> None:
    # GitHub documents 401/403/404/... once for the whole API: any operation may answer them,
    # always with its basic error body (a validation error for 422).
    contract.validate_response("GET", "/orgs/acme/actions/runners/3", 404, shapes.error("x"))
    with pytest.raises(AssertionError, match="basic-error"):
        contract.validate_response("GET", "/orgs/acme/actions/runners/3", 404, {"message": 1})


def test_validate_response_rejects_missing_or_unexpected_bodies(contract: OpenAPIContract) -> None:
    with pytest.raises(AssertionError, match="documents a JSON body, got none"):
        contract.validate_response("POST", "/repos/acme/app/actions/runs/900/cancel", 202, None)
    with pytest.raises(AssertionError, match="documents no body"):
        contract.validate_response("DELETE", "/orgs/acme/actions/runners/3", 204, {})
    with pytest.raises(AssertionError, match="no operation in the contract"):
        contract.validate_response("GET", "/nowhere", 200, {})


def test_nullable_and_formats_are_enforced(contract: OpenAPIContract) -> None:
    job = shapes.job(JOBS["queued"], URLS)
    contract.validate_schema("job", job)  # conclusion (a nullable enum) and runner_* are null
    with pytest.raises(AssertionError, match=r"\$\.conclusion: 'pending' is not one of"):
        contract.validate_schema("job", job | {"conclusion": "pending"})
    with pytest.raises(AssertionError, match=r"\$\.started_at: None for not nullable"):
        contract.validate_schema("job", job | {"started_at": None})
    with pytest.raises(AssertionError, match=r"\$\.created_at: .*date-time"):
        contract.validate_schema("job", job | {"created_at": "1767225700.0"})
    with pytest.raises(KeyError, match="no schema 'jobs'"):
        contract.validate_schema("jobs", job)


# --- the validating transport --------------------------------------------------------------


def _github(request: httpx.Request) -> httpx.Response:
    """A stand-in server: good runner bodies, one broken one, a gzip-encoded list."""
    path = request.url.path
    if path.endswith("/runners/3"):
        return httpx.Response(200, json=shapes.runner(RUNNERS["online busy"]))
    if path.endswith("/runners/4"):
        return httpx.Response(200, json={"id": 4})
    if path.endswith("/runners"):
        body = json.dumps(shapes.paginated("runners", [], 0)).encode()
        return httpx.Response(
            200, headers={"content-encoding": "gzip"}, content=gzip.compress(body)
        )
    if path.endswith("/rate_limit"):
        return httpx.Response(304)
    return httpx.Response(200, json={"ok": True})


async def test_validating_transport_checks_answers_and_stays_readable(
    contract: OpenAPIContract,
) -> None:
    transport = ValidatingTransport(httpx.MockTransport(_github), contract, base_path="/api/v3")
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/api/v3") as client:
        good = await client.get("/orgs/acme/actions/runners/3")
        listed = await client.get("/orgs/acme/actions/runners")
        await client.get("/rate_limit")
        await client.get("/_sim/state")
        assert transport.failures == []
        transport.assert_clean()
        await client.get("/orgs/acme/actions/runners/4")
        await client.get("/orgs/acme/teams")
    assert good.json()["busy"] is True
    assert listed.json() == {"total_count": 0, "runners": []}
    assert transport.seen == [
        ("actions/get-self-hosted-runner-for-org", 200),
        ("actions/list-self-hosted-runners-for-org", 200),
        ("rate-limit/get", 304),
        ("actions/get-self-hosted-runner-for-org", 200),
    ]
    assert len(transport.failures) == 2
    assert "'busy' is a required property" in transport.failures[0]
    assert "GET /orgs/acme/teams -> 200: no operation" in transport.failures[1]
    with pytest.raises(AssertionError, match="2 response"):
        transport.assert_clean()
