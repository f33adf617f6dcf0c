"""Octokit and PyGithub set up for GitHub Enterprise Server: the REST API under ``/api/v3``,
over https with the simulator's own CA (``fake-github --tls``).

Phase 2 of the interop tests. It relies on the simulator's GHES layout and TLS
(``SimulatorOptions.tls``, :mod:`runnerscale.fakegithub.tls`). Node is told to trust the CA with
``NODE_EXTRA_CA_CERTS``, PyGithub with ``verify=<CA file>``, as their users would.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import requests
from github import Auth, Github, GithubIntegration

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.tls import ServerTls
from tests.interop.conftest import APP_ID, TOKEN, Node

pytestmark = pytest.mark.timeout(180)

GHES = "/api/v3"
OWNER = "acme"
REPO = "app"
FULL_NAME = f"{OWNER}/{REPO}"


@pytest.fixture
async def tls_control(
    tls_simulator: SimulatorServer, tls_files: ServerTls
) -> AsyncIterator[httpx.AsyncClient]:
    trust = ssl.create_default_context(cafile=tls_files.ca_file)
    async with httpx.AsyncClient(base_url=tls_simulator.url, verify=trust, timeout=30) as client:
        response = await client.post("/_sim/repos", json={"repo": FULL_NAME})
        assert response.status_code == 201, response.text
        yield client


@pytest.fixture
def ghes_env(
    tls_simulator: SimulatorServer, tls_files: ServerTls, app_private_key: str
) -> dict[str, str]:
    assert tls_files.ca_file is not None
    return {
        "GITHUB_API_URL": f"{tls_simulator.url}{GHES}",
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": app_private_key,
        "NODE_EXTRA_CA_CERTS": str(tls_files.ca_file),
    }


async def test_octokit_paginates_runners_on_ghes_over_tls(
    node: Node, ghes_env: dict[str, str], tls_control: httpx.AsyncClient
) -> None:
    assert ghes_env["GITHUB_API_URL"].startswith("https://")
    result = await node.run(
        "runners.mjs", {"owner": OWNER, "repo": REPO, "count": 5, "perPage": 2}, ghes_env
    )
    assert sorted(result["repo"]["ids"]) == sorted(result["created"]["repo"])
    assert [len(page["ids"]) for page in result["orgPages"]] == [2, 2, 1]
    stats = (await tls_control.get("/_sim/stats")).json()["operations"]
    assert stats["actions/list-self-hosted-runners-for-org"]["statuses"] == {"200": 3}


async def test_octokit_app_auth_on_ghes_over_tls(
    node: Node, ghes_env: dict[str, str], tls_control: httpx.AsyncClient
) -> None:
    await tls_control.post("/_sim/repos", json={"repo": "beta/tool"})
    result = await node.run("app.mjs", {"org": OWNER, "repo": REPO, "otherOrg": "beta"}, ghes_env)
    assert result["token"]["prefix"] == "ghs_"
    assert result["runners"] == ["app-runner"]
    assert result["otherOwner"]["status"] == 403


async def test_pygithub_on_ghes_over_tls(
    tls_simulator: SimulatorServer,
    tls_files: ServerTls,
    tls_control: httpx.AsyncClient,
    app_private_key: str,
) -> None:
    base_url = f"{tls_simulator.url}{GHES}"
    ca_file = str(tls_files.ca_file)
    job = {"repo": FULL_NAME, "labels": ["self-hosted", "linux"], "duration": 5}
    response = await tls_control.post("/_sim/jobs", json=[job] * 3)
    assert response.status_code == 201, response.text

    def scenario() -> dict[str, Any]:
        with Github(
            auth=Auth.Token(TOKEN),
            base_url=base_url,
            verify=ca_file,
            per_page=2,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        ) as gh:
            org = gh.get_organization(OWNER)
            for i in range(5):
                org.create_self_hosted_runner_jitconfig(f"ghes-{i}", 1, ["linux"])
            runners = [r.name for r in org.get_self_hosted_runners()]
            repo = gh.get_repo(FULL_NAME)
            runs = list(repo.get_workflow_runs())
            jobs = [j.name for j in runs[0].jobs()]
        with GithubIntegration(
            auth=Auth.AppAuth(APP_ID, app_private_key),
            base_url=base_url,
            verify=ca_file,
            seconds_between_requests=None,
        ) as integration:
            installation = integration.get_org_installation(OWNER)
            token = integration.get_access_token(installation.id).token
        return {
            "runners": runners,
            "repo_url": repo.url,
            "runs": [r.id for r in runs],
            "jobs_url": runs[0].jobs_url,
            "jobs": jobs,
            "token": token[:4],
        }

    result = await asyncio.to_thread(scenario)
    assert result["runners"] == [f"ghes-{i}" for i in range(5)]
    assert result["repo_url"] == f"{base_url}/repos/{FULL_NAME}"
    assert sorted(result["runs"]) == [1, 2, 3]
    assert result["jobs_url"].startswith(f"{base_url}/repos/{FULL_NAME}/actions/runs/")
    assert result["jobs"] == ["job-0"]
    assert result["token"] == "ghs_"


async def test_pygithub_refuses_the_simulator_without_its_ca(
    tls_simulator: SimulatorServer,
) -> None:
    def scenario() -> None:
        with Github(
            auth=Auth.Token(TOKEN), base_url=f"{tls_simulator.url}{GHES}", retry=None
        ) as gh:
            gh.get_repo(FULL_NAME)

    with pytest.raises(requests.exceptions.SSLError):
        await asyncio.to_thread(scenario)
