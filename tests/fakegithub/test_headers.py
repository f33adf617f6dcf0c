"""The headers every GitHub answer has: a unique ``x-github-request-id``, the REST API version
selected (and GitHub's 400 for one it does not serve), and for a classic token its scopes
and the scopes the operation accepts, with GitHub's refusal when none of them is there."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from githubkit import GitHub, TokenAuthStrategy

from runnerscale.clock import SystemClock
from runnerscale.fakegithub.scopes import OPERATION_SCOPES, parse_scopes
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer, build_simulator
from tests.contract.openapi import default_contract
from tests.fakegithub.conftest import TOKEN

RUNNERS = "/repos/acme/app/actions/runners"
ORG_RUNNERS = "/orgs/acme/actions/runners"
ENTERPRISE_RUNNERS = "/enterprises/big-corp/actions/runners"
REQUEST_ID = re.compile(r"^[0-9A-F]{4}:[0-9A-F]{5}:[0-9A-F]{7}:[0-9A-F]{7}:[0-9A-F]{8}$")
UNSUPPORTED = (
    'The version you specified in the "X-GitHub-API-Version" request header, "2023-01-01", is '
    "not a supported version. The following versions are currently supported: "
    '"2026-03-10" (most recent), "2022-11-28".'
)
#: Classic tokens of the scoped simulator, by what they were given.
CLASSIC = {
    "repo": "ghp_classic_repo",
    "org": "ghp_classic_org_admin",
    "none": "ghp_classic_no_scope",
    "enterprise": "ghp_classic_enterprise",
    "hooks": "ghp_classic_hooks",
}
SCOPES = {
    "repo": frozenset({"repo"}),
    "org": frozenset({"admin:org", "repo"}),
    "none": frozenset(),
    "enterprise": frozenset({"manage_runners:enterprise"}),
    "hooks": frozenset({"read:repo_hook", "admin:org_hook"}),
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


async def seed(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/repos", json={"repo": "acme/app"})
    await client.post("/_sim/enterprises", json={"slug": "big-corp", "orgs": ["acme"]})


@pytest.fixture
async def api(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        await seed(client)
        yield client


@pytest.fixture
async def scoped(sim_options: SimulatorOptions) -> AsyncIterator[httpx.AsyncClient]:
    """A simulator whose ``CLASSIC`` tokens are classic ones; ``TOKEN`` stays fine-grained."""
    options = replace(
        sim_options,
        tokens=(TOKEN, *CLASSIC.values()),
        token_scopes={CLASSIC[name]: scopes for name, scopes in SCOPES.items()},
    )
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        await seed(client)
        yield client


# ---------------------------------------------------------------------- x-github-request-id


async def test_every_answer_has_a_request_id_of_its_own(api: httpx.AsyncClient) -> None:
    first = await api.get(RUNNERS, headers=auth(TOKEN))
    answers = [
        first,
        await api.get(RUNNERS, headers={**auth(TOKEN), "If-None-Match": first.headers["etag"]}),
        await api.post(f"{RUNNERS}/registration-token", headers=auth(TOKEN)),
        await api.get(RUNNERS),
        await api.get(RUNNERS, headers=auth("wrong")),
        await api.get("/repos/acme/nope/actions/runners", headers=auth(TOKEN)),
        await api.get("/no/such/path", headers=auth(TOKEN)),
        await api.get(RUNNERS, headers={**auth(TOKEN), "X-GitHub-Api-Version": "2023-01-01"}),
        await api.get("/rate_limit"),
    ]
    assert [a.status_code for a in answers] == [200, 304, 201, 401, 401, 404, 404, 400, 200]
    ids = [a.headers["x-github-request-id"] for a in answers]
    assert all(REQUEST_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)


async def test_injected_limits_and_faults_carry_a_request_id(api: httpx.AsyncClient) -> None:
    await api.post("/_sim/faults", json={"rate_limit": {"secondary_for": 30}})
    limited = await api.get(RUNNERS, headers=auth(TOKEN))
    await api.post("/_sim/faults", json={"error_rate": 1.0})
    failed = await api.get(RUNNERS, headers=auth(TOKEN))
    assert (limited.status_code, failed.status_code) == (403, 500)
    assert limited.headers["x-github-request-id"] != failed.headers["x-github-request-id"]


# ---------------------------------------------------------------------- API versions


@pytest.mark.parametrize(
    ("asked", "selected"),
    [(None, "2022-11-28"), ("2022-11-28", "2022-11-28"), ("2026-03-10", "2026-03-10")],
)
async def test_the_selected_api_version_is_named(
    api: httpx.AsyncClient, asked: str | None, selected: str
) -> None:
    version = {} if asked is None else {"X-GitHub-Api-Version": asked}
    for response in (
        await api.get(RUNNERS, headers={**auth(TOKEN), **version}),
        await api.get("/repos/acme/nope/actions/runners", headers={**auth(TOKEN), **version}),
        await api.get(RUNNERS, headers=version),  # 401
    ):
        assert response.headers["x-github-api-version-selected"] == selected


async def test_an_unsupported_api_version_is_githubs_400(api: httpx.AsyncClient) -> None:
    refused = await api.post(
        f"{RUNNERS}/registration-token",
        headers={**auth(TOKEN), "X-GitHub-Api-Version": "2023-01-01"},
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "message": UNSUPPORTED,
        "documentation_url": "https://docs.github.com/rest",
    }
    assert "x-github-api-version-selected" not in refused.headers
    # Refused before anything happened: no token was made, nothing charged.
    limits = (await api.get("/rate_limit", headers=auth(TOKEN))).json()["resources"]
    assert limits["actions_runner_registration"]["used"] == 0


async def test_githubkit_asks_for_a_version_the_simulator_serves(
    github: GitHub[TokenAuthStrategy], simulator: SimulatorServer
) -> None:
    simulator.simulator.world.ensure_repo("acme/app")
    response = await github.rest.actions.async_list_self_hosted_runners_for_repo("acme", "app")
    assert response.headers["x-github-api-version-selected"] in ("2022-11-28", "2026-03-10")


# ---------------------------------------------------------------------- token scopes


async def test_tokens_without_scopes_are_fine_grained_and_say_nothing(
    scoped: httpx.AsyncClient,
) -> None:
    for path in (RUNNERS, ORG_RUNNERS, ENTERPRISE_RUNNERS):
        response = await scoped.get(path, headers=auth(TOKEN))
        assert response.status_code == 200
        assert "x-oauth-scopes" not in response.headers
        assert "x-accepted-oauth-scopes" not in response.headers
    anonymous = await scoped.get(RUNNERS)
    assert anonymous.status_code == 401
    assert "x-oauth-scopes" not in anonymous.headers


async def test_a_classic_token_hears_its_scopes_and_what_each_operation_accepts(
    scoped: httpx.AsyncClient,
) -> None:
    repo = await scoped.get(RUNNERS, headers=auth(CLASSIC["org"]))
    assert repo.status_code == 200
    assert repo.headers["x-oauth-scopes"] == "admin:org, repo"
    assert repo.headers["x-accepted-oauth-scopes"] == "repo"
    org = await scoped.post(f"{ORG_RUNNERS}/registration-token", headers=auth(CLASSIC["org"]))
    assert org.status_code == 201
    assert org.headers["x-accepted-oauth-scopes"] == "admin:org"
    free = await scoped.get("/rate_limit", headers=auth(CLASSIC["none"]))
    assert free.status_code == 200
    assert (free.headers["x-oauth-scopes"], free.headers["x-accepted-oauth-scopes"]) == ("", "")


@pytest.mark.parametrize(
    ("token", "method", "path", "status", "message", "accepted"),
    [
        pytest.param(
            "repo",
            "POST",
            f"{ORG_RUNNERS}/registration-token",
            403,
            "Must have admin rights to Repository.",
            "admin:org",
            id="org-runners-without-admin:org",
        ),
        pytest.param(
            "repo",
            "GET",
            ENTERPRISE_RUNNERS,
            403,
            "Must have admin rights to Repository.",
            "admin:enterprise, manage_runners:enterprise",
            id="enterprise-runners-without-manage_runners",
        ),
        pytest.param(
            "none", "GET", RUNNERS, 404, "Not Found", "repo", id="private-repo-without-repo"
        ),
        pytest.param(
            "none",
            "GET",
            "/repos/acme/app/actions/runs",
            404,
            "Not Found",
            "repo",
            id="runs-without-repo",
        ),
        pytest.param(
            "org",
            "GET",
            "/orgs/acme/hooks",
            404,
            "Not Found",
            "admin:org_hook",
            id="org-hooks-without-admin:org_hook",
        ),
        pytest.param(
            "hooks",
            "DELETE",
            "/repos/acme/app/hooks/1",
            404,
            "Not Found",
            "admin:repo_hook, public_repo, repo",
            id="deleting-a-repo-hook-with-read:repo_hook",
        ),
    ],
)
async def test_an_operation_needing_a_scope_the_token_lacks_is_refused(
    scoped: httpx.AsyncClient,
    token: str,
    method: str,
    path: str,
    status: int,
    message: str,
    accepted: str,
) -> None:
    before = (await scoped.get("/rate_limit", headers=auth(CLASSIC[token]))).json()
    refused = await scoped.request(method, path, headers=auth(CLASSIC[token]))
    assert refused.status_code == status
    assert refused.json()["message"] == message
    assert refused.headers["x-accepted-oauth-scopes"] == accepted
    assert refused.headers["x-oauth-scopes"] == ", ".join(sorted(SCOPES[token]))
    assert "x-github-request-id" in refused.headers
    after = (await scoped.get("/rate_limit", headers=auth(CLASSIC[token]))).json()
    assert after["resources"] == before["resources"]  # a refusal is not charged
    assert (await scoped.get("/_sim/runners")).json() == []


@pytest.mark.parametrize(
    ("token", "path"),
    [
        ("enterprise", ENTERPRISE_RUNNERS),
        ("hooks", "/repos/acme/app/hooks"),
        ("hooks", "/orgs/acme/hooks"),
        ("org", "/orgs/acme/actions/runner-groups"),
    ],
)
async def test_the_right_scope_lets_the_token_in(
    scoped: httpx.AsyncClient, token: str, path: str
) -> None:
    response = await scoped.get(path, headers=auth(CLASSIC[token]))
    assert response.status_code == 200, response.text


def test_the_scope_table_knows_what_githubs_descriptions_ask_of_classic_tokens() -> None:
    """Each contract operation whose description names the scope classic tokens need has an
    entry accepting it; every hook operation of the contract has one."""
    contract = default_contract().document
    needs = re.compile(r"personal access tokens \(classic\) need (?:the ?)?`([a-z_:]+)` scope")
    for item in contract["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            op_id = operation["operationId"]
            description = operation.get("description", "")
            found = needs.search(description)
            # Later mentions are extras ("if the repository is private, ... also"); a scope
            # that only widens the answer (private profile, full details) is not needed.
            if found and "private profile" not in description and "full details" not in description:
                assert found.group(1) in OPERATION_SCOPES[op_id].accepted, op_id
            if "/hooks" in next(p for p, i in contract["paths"].items() if i is item):
                assert op_id in OPERATION_SCOPES, op_id


def test_scopes_and_scoped_tokens_are_checked(sim_options: SimulatorOptions) -> None:
    assert parse_scopes(["repo, admin:org", "", "workflow"]) == {"repo", "admin:org", "workflow"}
    with pytest.raises(ValueError, match="not a classic token scope: admin:orgs"):
        parse_scopes(["repo,admin:orgs"])
    secret = "ghp_not_accepted_secret"
    stray = replace(sim_options, token_scopes={secret: frozenset({"repo"})})
    with pytest.raises(ValueError, match="a token the simulator does not accept") as caught:
        build_simulator(stray, SystemClock(), "http://simulator.invalid")
    assert secret not in str(caught.value)
    unknown = replace(sim_options, token_scopes={TOKEN: frozenset({"admin:everything"})})
    with pytest.raises(ValueError, match="admin:everything"):
        build_simulator(unknown, SystemClock(), "http://simulator.invalid")
