"""PyGithub against the live simulator.

PyGithub blocks (requests), and the simulator serves from the test's event loop, so each
client session runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from github import Auth, Github, GithubIntegration, GithubRetry
from github.GithubException import (
    GithubException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
)
from urllib3.util.retry import Retry

from runnerscale.fakegithub.server import SimulatorServer
from tests.interop.conftest import APP_ID, TOKEN, operation_statuses, sim_post

pytestmark = pytest.mark.timeout(180)

OWNER = "acme"
REPO = "app"
FULL_NAME = f"{OWNER}/{REPO}"
RUNNERS = "actions/list-self-hosted-runners-for-repo"


@contextmanager
def pygithub(
    simulator: SimulatorServer,
    *,
    auth: Auth.Auth | None = None,
    retry: int | Retry | None = None,
    per_page: int = 30,
    lazy: bool = False,
) -> Iterator[Github]:
    """A PyGithub client of the simulator: no pause between requests, retries only if asked."""
    client = Github(
        auth=auth or Auth.Token(TOKEN),
        base_url=simulator.url,
        retry=retry,
        per_page=per_page,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=lazy,
    )
    try:
        yield client
    finally:
        client.close()


async def test_runners_past_one_page_with_paginated_list(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    org_count, repo_count = 130, 105

    def scenario() -> dict[str, Any]:
        with pygithub(simulator) as gh:
            org = gh.get_organization(OWNER)
            org_created = [
                org.create_self_hosted_runner_jitconfig(
                    name=f"org-runner-{i}", runner_group_id=1, labels=["linux"]
                )
                for i in range(org_count)
            ]
            # PyGithub has no method for a repository's JIT configuration: its requester is the
            # documented way to call an endpoint it does not wrap.
            repo_created = [
                gh.requester.requestJsonAndCheck(
                    "POST",
                    f"/repos/{FULL_NAME}/actions/runners/generate-jitconfig",
                    input={"name": f"repo-runner-{i}", "labels": ["linux"], "runner_group_id": 1},
                )[1]
                for i in range(repo_count)
            ]
            org_runners = org.get_self_hosted_runners()
            org_listed = list(org_runners)
            repo_runners = gh.get_repo(FULL_NAME).get_self_hosted_runners()
            return {
                "org_created": [jit.runner.id for jit in org_created],
                "org_jit_configs": {bool(jit.encoded_jit_config) for jit in org_created},
                "org_listed": [runner.id for runner in org_listed],
                "org_total": org_runners.totalCount,
                "org_reversed": [runner.id for runner in org_runners.reversed],
                "repo_created": [data["runner"]["id"] for data in repo_created],
                "repo_total": repo_runners.totalCount,
                "repo_listed": [(runner.id, runner.name) for runner in repo_runners],
                "repo_labels": [label["name"] for label in repo_runners[0].labels],
                "repo_page_2": [runner.id for runner in repo_runners.get_page(2)],
            }

    result = await asyncio.to_thread(scenario)

    assert result["org_jit_configs"] == {True}
    assert result["org_total"] == org_count
    assert sorted(result["org_listed"]) == sorted(result["org_created"])
    assert result["org_reversed"] == result["org_listed"][::-1]
    assert result["repo_total"] == repo_count
    assert sorted(i for i, _ in result["repo_listed"]) == sorted(result["repo_created"])
    assert {name for _, name in result["repo_listed"]} == {
        f"repo-runner-{i}" for i in range(repo_count)
    }
    assert result["repo_labels"] == ["self-hosted", "linux"]
    assert result["repo_page_2"] == [i for i, _ in result["repo_listed"][60:90]]
    # Iterating followed the Link header, 30 to a page (PyGithub's default per_page).
    org_list = await operation_statuses(control, "actions/list-self-hosted-runners-for-org")
    reversed_requests = 1 + math.ceil(org_count / 30)  # the first page (for "last"), then all
    assert org_list == {"200": math.ceil(org_count / 30) + reversed_requests}


async def test_runs_and_jobs_list_get_cancel(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    job = {"repo": FULL_NAME, "labels": ["self-hosted", "linux"], "duration": 5}
    await sim_post(control, "/_sim/jobs", [job] * 34)
    run_id = 50
    queued = await sim_post(
        control,
        "/_sim/jobs",
        [{**job, "run_id": run_id, "name": "build"}, {**job, "run_id": run_id, "name": "test"}],
    )
    build_id = queued[0]["id"]

    def scenario() -> dict[str, Any]:
        with pygithub(simulator) as gh:
            repo = gh.get_repo(FULL_NAME)
            runs = repo.get_workflow_runs()
            listed = list(runs)
            queued_runs = repo.get_workflow_runs(status="queued").totalCount
            run = next(r for r in listed if r.id == run_id)
            jobs = list(run.jobs())
            before = repo.get_workflow_job(build_id)
            cancelled = run.cancel()
            after = repo.get_workflow_job(build_id)
            cancelled_again = run.cancel()
            return {
                "total": runs.totalCount,
                "ids": [r.id for r in listed],
                "statuses": {r.status for r in listed},
                "queued_runs": queued_runs,
                "jobs": [(j.name, j.status, j.run_attempt) for j in jobs],
                "before": (before.status, before.conclusion, before.run_id, before.labels),
                "cancelled": cancelled,
                "after": (after.status, after.conclusion, after.completed_at is not None),
                "cancelled_again": cancelled_again,
            }

    result = await asyncio.to_thread(scenario)

    assert result["total"] == 35
    assert result["ids"][0] == run_id
    assert sorted(result["ids"]) == [*range(1, 35), run_id]
    assert result["statuses"] == {"queued"}
    assert result["queued_runs"] == 35
    assert result["jobs"] == [("build", "queued", 1), ("test", "queued", 1)]
    assert result["before"] == ("queued", None, run_id, ["self-hosted", "linux"])
    assert result["cancelled"] is True
    assert result["after"] == ("completed", "cancelled", True)
    assert result["cancelled_again"] is False  # 409: the run has completed


async def test_get_workflow_run(simulator: SimulatorServer, control: httpx.AsyncClient) -> None:
    """``Repository.get_workflow_run`` reads ``GET /repos/{o}/{r}/actions/runs/{run_id}``."""
    [job] = await sim_post(
        control, "/_sim/jobs", [{"repo": FULL_NAME, "labels": ["linux"], "duration": 5}]
    )

    def scenario() -> tuple[int, str, int, list[str]]:
        with pygithub(simulator) as gh:
            run = gh.get_repo(FULL_NAME).get_workflow_run(job["run_id"])
            return run.id, run.status, run.run_attempt, [j.name for j in run.jobs()]

    assert await asyncio.to_thread(scenario) == (job["run_id"], "queued", 1, [job["name"]])


async def test_app_installation_token(
    simulator: SimulatorServer, control: httpx.AsyncClient, app_private_key: str
) -> None:
    await sim_post(control, "/_sim/repos", [{"repo": FULL_NAME}, {"repo": "beta/tool"}])
    app_auth = Auth.AppAuth(APP_ID, app_private_key)

    def scenario() -> dict[str, Any]:
        with GithubIntegration(
            auth=app_auth, base_url=simulator.url, seconds_between_requests=None
        ) as integration:
            installations = {i.account.login: i.id for i in integration.get_installations()}
            org_installation = integration.get_org_installation(OWNER)
            repo_installation = integration.get_repo_installation(OWNER, REPO)
            token = integration.get_access_token(org_installation.id)
            # The token as a plain token ...
            with pygithub(simulator, auth=Auth.Token(token.token)) as gh:
                jit = gh.get_organization(OWNER).create_self_hosted_runner_jitconfig(
                    name="app-runner", runner_group_id=1, labels=["linux"]
                )
                with pytest.raises(GithubException) as other_owner:
                    list(gh.get_organization("beta").get_self_hosted_runners())
            # ... and the installation auth PyGithub refreshes on its own.
            installation_auth = app_auth.get_installation_auth(org_installation.id)
            with pygithub(simulator, auth=installation_auth) as gh:
                runners = [r.name for r in gh.get_organization(OWNER).get_self_hosted_runners()]
            with integration.get_github_for_installation(org_installation.id) as gh:
                repositories = [
                    r.full_name for r in gh.get_organization(OWNER).get_repos(sort="full_name")
                ]
            return {
                "installations": installations,
                "org_installation": (org_installation.id, org_installation.app_id),
                "repo_installation": repo_installation.id,
                "token": token.token[:4],
                "expires_in": (token.expires_at - datetime.now(UTC)).total_seconds(),
                "repository_selection": token.repository_selection,
                "jit": jit.runner.name,
                "other_owner": (other_owner.value.status, other_owner.value.message),
                "runners": runners,
                "repositories": repositories,
            }

    result = await asyncio.to_thread(scenario)

    assert set(result["installations"]) == {OWNER, "beta"}
    assert result["org_installation"] == (result["installations"][OWNER], APP_ID)
    assert result["repo_installation"] == result["installations"][OWNER]
    assert result["token"] == "ghs_"
    assert 3000 < result["expires_in"] <= 3600
    assert result["repository_selection"] == "all"
    assert result["jit"] == "app-runner"
    assert result["other_owner"] == (403, "Resource not accessible by integration")
    assert result["runners"] == ["app-runner"]
    assert result["repositories"] == [FULL_NAME]


def list_runners(gh: Github) -> list[int]:
    """The call the rate-limit tests make; with a lazy client, get_repo makes no request."""
    return [runner.id for runner in gh.get_repo(FULL_NAME).get_self_hosted_runners()]


async def test_exhausted_primary_limit_raises_rate_limit_exceeded(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(control, "/_sim/faults", {"rate_limit": {"exhaust_primary": True}})

    def scenario() -> tuple[RateLimitExceededException, int, tuple[int, int]]:
        with pygithub(simulator, lazy=True) as gh:
            with pytest.raises(RateLimitExceededException) as raised:
                list_runners(gh)
            core = gh.get_rate_limit().resources.core  # never limited
            return raised.value, core.remaining, gh.rate_limiting

    error, remaining, (left, limit) = await asyncio.to_thread(scenario)
    assert error.status == 403
    assert error.message is None  # PyGithub keeps GitHub's text in .data for this class
    assert error.data["message"].startswith("API rate limit exceeded")
    assert error.headers is not None
    assert error.headers["x-ratelimit-remaining"] == "0"
    assert remaining == 0
    assert (left, limit) == (0, 5000)


async def test_github_retry_refuses_to_wait_for_a_far_reset(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(control, "/_sim/faults", {"rate_limit": {"exhaust_primary": True}})

    def scenario() -> tuple[RateLimitExceededExceedsMaxWait, float]:
        with pygithub(simulator, retry=GithubRetry(max_rate_limit_wait=30), lazy=True) as gh:
            with pytest.raises(RateLimitExceededExceedsMaxWait) as raised:
                list_runners(gh)
            return raised.value, time.time()

    error, now = await asyncio.to_thread(scenario)
    assert error.headers is not None
    reset = int(error.headers["x-ratelimit-reset"])
    # GithubRetry would wait until x-ratelimit-reset, plus one second.
    assert error.wait is not None
    assert error.wait == pytest.approx(reset - now + 1, abs=2)
    assert 3500 < error.wait <= 3602


async def test_secondary_limit_without_retry_raises_with_retry_after(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(control, "/_sim/faults", {"rate_limit": {"secondary_for": 60, "retry_after": 7}})

    def scenario() -> RateLimitExceededException:
        with (
            pygithub(simulator, lazy=True) as gh,
            pytest.raises(RateLimitExceededException) as raised,
        ):
            list_runners(gh)
        return raised.value

    error = await asyncio.to_thread(scenario)
    assert error.status == 403
    assert error.data["message"].startswith("You have exceeded a secondary rate limit")
    assert error.headers is not None
    assert error.headers["retry-after"] == "7"


async def test_secondary_limit_as_429_is_a_plain_github_exception(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    """PyGithub recognises rate limits on 403 only: a 429 stays a GithubException."""
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(
        control,
        "/_sim/faults",
        {"rate_limit": {"secondary_for": 60, "retry_after": 7, "status": 429}},
    )

    def scenario() -> GithubException:
        with pygithub(simulator, lazy=True) as gh, pytest.raises(GithubException) as raised:
            list_runners(gh)
        return raised.value

    error = await asyncio.to_thread(scenario)
    assert type(error) is GithubException
    assert error.status == 429
    assert error.headers is not None
    assert error.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [403, 429])
async def test_github_retry_waits_out_a_secondary_limit(
    simulator: SimulatorServer, control: httpx.AsyncClient, status: int
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(
        control,
        "/_sim/faults",
        {"rate_limit": {"secondary_for": 2.5, "retry_after": 1, "status": status}},
    )

    def scenario() -> tuple[list[int], float]:
        started = time.monotonic()
        with pygithub(simulator, retry=GithubRetry(total=5), lazy=True) as gh:
            runners = list_runners(gh)
        return runners, time.monotonic() - started

    runners, elapsed = await asyncio.to_thread(scenario)
    assert runners == []
    statuses = await operation_statuses(control, RUNNERS)
    limited = statuses.pop(str(status))
    assert statuses == {"200": 1}
    assert 1 <= limited <= 4  # within the 2.5 s window, a retry a second
    assert elapsed >= limited * 1.0  # urllib3 slept the retry-after before each retry


async def test_github_retry_retries_injected_server_errors(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(control, "/_sim/faults", {"seed": 7, "error_rate": 0.5, "error_status": 502})

    def scenario() -> list[list[int]]:
        with pygithub(simulator, retry=GithubRetry(total=10, backoff_factor=0), lazy=True) as gh:
            return [list_runners(gh) for _ in range(10)]

    assert await asyncio.to_thread(scenario) == [[]] * 10
    statuses = await operation_statuses(control, RUNNERS)
    assert statuses["200"] == 10
    assert statuses["502"] > 0
    assert set(statuses) == {"200", "502"}


async def test_server_error_without_retry_raises(
    simulator: SimulatorServer, control: httpx.AsyncClient
) -> None:
    await sim_post(control, "/_sim/repos", {"repo": FULL_NAME})
    await sim_post(
        control, "/_sim/faults", {"operations": {RUNNERS: {"error_rate": 1.0, "error_status": 503}}}
    )

    def scenario() -> GithubException:
        with pygithub(simulator, lazy=True) as gh, pytest.raises(GithubException) as raised:
            list_runners(gh)
        return raised.value

    error = await asyncio.to_thread(scenario)
    assert error.status == 503
    assert error.message == "Server Error"
