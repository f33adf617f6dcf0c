"""Octokit for JavaScript (@octokit/rest and its plugins) against the live simulator.

Each test prepares the simulator through the control API, runs one script of ``node/`` and
asserts on the JSON it prints.
"""

from __future__ import annotations

import math

import httpx
import pytest

from tests.interop.conftest import APP_ID, Node, operation_statuses, sim_post

pytestmark = pytest.mark.timeout(180)

OWNER = "acme"
REPO = "app"


async def test_runners_past_one_page_with_paginate(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    count, per_page = 130, 50
    result = await node.run(
        "runners.mjs", {"owner": OWNER, "repo": REPO, "count": count, "perPage": per_page}, node_env
    )

    created = result["created"]
    assert len(created["repo"]) == len(created["org"]) == count
    assert len(set(created["repo"]) | set(created["org"])) == 2 * count

    repo = result["repo"]
    assert sorted(repo["ids"]) == sorted(created["repo"])
    assert sorted(repo["names"]) == sorted(f"repo-runner-{i}" for i in range(count))
    assert repo["labels"] == ["self-hosted", "linux", "x64"]
    assert repo["status"] == ["offline"]

    pages = result["orgPages"]
    assert [len(page["ids"]) for page in pages] == [50, 50, 30]
    assert all(page["totalCount"] == count for page in pages)
    assert sorted(i for page in pages for i in page["ids"]) == sorted(created["org"])
    # paginate followed the Link header: one request per page, nothing more.
    org_list = await operation_statuses(control, "actions/list-self-hosted-runners-for-org")
    assert org_list == {"200": math.ceil(count / per_page)}


async def test_runs_and_jobs_list_get_cancel_rerun(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    job = {"repo": f"{OWNER}/{REPO}", "labels": ["self-hosted", "linux"], "duration": 5}
    await sim_post(control, "/_sim/jobs", [job] * 34)  # runs 1..34, one job each
    run_id = 50
    queued = await sim_post(
        control,
        "/_sim/jobs",
        [{**job, "run_id": run_id, "name": "build"}, {**job, "run_id": run_id, "name": "test"}],
    )
    build_id = queued[0]["id"]

    result = await node.run(
        "runs.mjs", {"owner": OWNER, "repo": REPO, "runId": run_id, "perPage": 10}, node_env
    )

    runs = result["runs"]
    assert len(runs) == 35
    assert runs[0]["id"] == run_id  # newest first
    assert sorted(run["id"] for run in runs) == [*range(1, 35), run_id]
    assert {run["status"] for run in runs} == {"queued"}
    assert result["queuedCount"] == 35

    assert result["jobs"]["totalCount"] == 2
    assert [j["name"] for j in result["jobs"]["jobs"]] == ["build", "test"]
    assert result["job"] == {
        "id": build_id,
        "run_id": run_id,
        "run_attempt": 1,
        "name": "build",
        "status": "queued",
        "conclusion": None,
        "labels": ["self-hosted", "linux"],
    }

    assert result["rerunWhileQueued"]["status"] == 403
    assert result["cancel"] == {"status": 202}
    assert result["cancelledJob"]["status"] == "completed"
    assert result["cancelledJob"]["conclusion"] == "cancelled"
    assert result["cancelAgain"]["status"] == 409
    assert result["rerun"] == {"status": 201}

    all_jobs = result["allJobs"]
    assert [(j["name"], j["run_attempt"]) for j in all_jobs] == [
        ("build", 1),
        ("test", 1),
        ("build", 2),
    ]
    rerun_job = all_jobs[2]
    assert rerun_job["id"] not in (build_id, queued[1]["id"])
    assert rerun_job["status"] == "queued"
    assert result["latestJobs"] == [rerun_job]
    assert result["newestRun"] == {"id": run_id, "status": "queued", "run_attempt": 2}


async def test_app_installation_token_with_auth_app(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", [{"repo": f"{OWNER}/{REPO}"}, {"repo": "beta/tool"}])
    result = await node.run("app.mjs", {"org": OWNER, "repo": REPO, "otherOrg": "beta"}, node_env)

    assert result["appAuthentication"] == {"type": "app", "appId": APP_ID, "jwtParts": 3}
    installations = {i["login"]: i for i in result["installations"]}
    assert set(installations) == {OWNER, "beta"}
    assert {i["app_id"] for i in installations.values()} == {APP_ID}
    assert result["orgInstallation"] == result["repoInstallation"] == installations[OWNER]["id"]

    token = result["token"]
    assert token["type"] == "token"
    assert token["tokenType"] == "installation"
    assert token["prefix"] == "ghs_"
    assert token["installationId"] == installations[OWNER]["id"]
    assert token["expiresAt"]
    assert token["repositorySelection"] == "all"
    assert token["permissions"]["organization_self_hosted_runners"] == "write"

    assert result["jit"] == {"status": 201, "runner": "app-runner"}
    assert result["runners"] == ["app-runner"]
    assert result["repositories"] == [f"{OWNER}/{REPO}"]
    assert result["otherOwner"]["status"] == 403
    assert result["otherOwner"]["message"] == "Resource not accessible by integration"
    assert result["jwtOnRunners"]["status"] == 403


@pytest.mark.parametrize("status", [403, 429])
async def test_throttling_secondary_limit_reports_retry_after(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient, status: int
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    await sim_post(
        control,
        "/_sim/faults",
        {"rate_limit": {"secondary_for": 60, "retry_after": 7, "status": status}},
    )
    # The handler declines to retry: the plugin hands back the error.
    result = await node.run(
        "throttling.mjs", {"owner": OWNER, "repo": REPO, "requests": 1, "retries": 0}, node_env
    )

    [call] = result["calls"]
    assert call["kind"] == "secondary"
    assert call["retryAfter"] == 7  # the simulator's retry-after, not the plugin's fallback
    assert call["retryCount"] == 0
    assert call["method"] == "GET"
    assert call["url"] == "/repos/{owner}/{repo}/actions/runners"
    [failure] = result["results"]
    assert failure["status"] == status
    assert failure["message"].startswith("You have exceeded a secondary rate limit")
    assert failure["headers"]["retry-after"] == "7"


async def test_throttling_retries_after_a_secondary_limit_ends(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    await sim_post(control, "/_sim/faults", {"rate_limit": {"secondary_for": 3, "retry_after": 1}})
    # The window outlasts node's start-up; the limit ends while the plugin waits to retry.
    result = await node.run(
        "throttling.mjs", {"owner": OWNER, "repo": REPO, "requests": 1, "retries": 10}, node_env
    )

    calls = result["calls"]
    assert 1 <= len(calls) <= 4
    assert {call["retryAfter"] for call in calls} == {1}
    assert [call["retryCount"] for call in calls] == list(range(len(calls)))
    [success] = result["results"]
    assert success["status"] == 200
    assert success["elapsed"] >= len(calls) * 1.0  # it waited retry-after before each retry
    statuses = await operation_statuses(control, "actions/list-self-hosted-runners-for-repo")
    assert statuses == {"403": len(calls), "200": 1}


@pytest.mark.parametrize("status", [403, 429])
async def test_throttling_primary_limit_reports_time_to_reset(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient, status: int
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    await sim_post(
        control, "/_sim/faults", {"rate_limit": {"exhaust_primary": True, "status": status}}
    )
    result = await node.run(
        "throttling.mjs", {"owner": OWNER, "repo": REPO, "requests": 1, "retries": 0}, node_env
    )

    [call] = result["calls"]
    [failure] = result["results"]
    assert call["kind"] == "primary"
    assert failure["status"] == status
    assert failure["message"].startswith("API rate limit exceeded")
    headers = failure["headers"]
    assert headers["x-ratelimit-remaining"] == "0"
    # The plugin waits until x-ratelimit-reset, plus one second.
    reset = int(headers["x-ratelimit-reset"])
    assert abs(call["retryAfter"] - (math.ceil(reset - call["at"]) + 1)) <= 1
    assert 3500 < call["retryAfter"] <= 3601


async def test_throttling_reaches_a_small_primary_budget(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    await sim_post(control, "/_sim/faults", {"rate_limit": {"limit": 3}})
    result = await node.run(
        "throttling.mjs", {"owner": OWNER, "repo": REPO, "requests": 4, "retries": 0}, node_env
    )

    results = result["results"]
    assert [r["status"] for r in results] == [200, 200, 200, 403]
    assert [r.get("remaining") for r in results[:3]] == ["2", "1", "0"]
    assert [call["kind"] for call in result["calls"]] == ["primary"]


async def test_retry_plugin_retries_injected_server_errors(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    await sim_post(control, "/_sim/faults", {"seed": 7, "error_rate": 0.5, "error_status": 502})
    result = await node.run(
        "retry.mjs", {"owner": OWNER, "repo": REPO, "requests": 10, "retries": 10}, node_env
    )

    assert [r["status"] for r in result["results"]] == [200] * 10
    attempts = result["attempts"]
    assert set(attempts) == {200, 502}
    assert attempts.count(200) == 10
    statuses = await operation_statuses(control, "actions/list-self-hosted-runners-for-repo")
    assert statuses == {"200": 10, "502": attempts.count(502)}


async def test_retry_plugin_gives_up_after_its_retries(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": f"{OWNER}/{REPO}"})
    operation = "actions/list-self-hosted-runners-for-repo"
    await sim_post(
        control,
        "/_sim/faults",
        {"operations": {operation: {"error_rate": 1.0, "error_status": 503}}},
    )
    result = await node.run(
        "retry.mjs", {"owner": OWNER, "repo": REPO, "requests": 1, "retries": 2}, node_env
    )

    [failure] = result["results"]
    assert failure["status"] == 503
    assert failure["message"] == "Server Error"
    assert result["attempts"] == [503, 503, 503]
    assert await operation_statuses(control, operation) == {"503": 3}
