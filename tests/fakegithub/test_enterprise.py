"""Enterprise-level self-hosted runners: the world's rules, then the REST operations over HTTP.

GitHub publishes the enterprise runner operations only in its Enterprise Cloud description;
they mirror the organisation ones under ``/enterprises/{enterprise}/actions/...``. githubkit
has no typed methods for them, so the tests call them through its raw request API, and every
answer is validated against the *organisation* operation's response schema (the transport
maps the path with :func:`enterprise_as_org`) and parsed with githubkit's organisation models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import jwt
import pytest
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed
from githubkit_schemas.latest.models import (
    AuthenticationToken,
    OrgsOrgActionsRunnerGroupsGetResponse200,
    OrgsOrgActionsRunnersGenerateJitconfigPostResponse201,
    OrgsOrgActionsRunnersGetResponse200,
    OrgsOrgActionsRunnersRunnerIdLabelsGetResponse200,
    Runner,
)

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.entities import OwnerType
from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import DEFAULT_GROUP_ID, ApiError, JobSpec, World
from tests.contract.openapi import ValidatingTransport, default_contract, enterprise_as_org
from tests.fakegithub.conftest import APP_ID, TOKEN, github_client
from tests.fakegithub.test_sim_runner import spawn

ENTERPRISE = "acme-corp"
BASE = f"/enterprises/{ENTERPRISE}/actions"
RUNNERS = f"{BASE}/runners"
LINUX = ["self-hosted", "linux"]
AUTH = {"Authorization": f"token {TOKEN}"}


# ---------------------------------------------------------------------- the world's rules


@pytest.fixture
def world() -> World:
    world = World(VirtualClock())
    world.ensure_enterprise(ENTERPRISE, ["acme", "beta"])
    return world


def enterprise_jit(world: World, name: str, labels: Sequence[str] = ("linux",)) -> Any:
    scope = world.scope_for_enterprise(ENTERPRISE)
    body = {"name": name, "labels": list(labels), "runner_group_id": DEFAULT_GROUP_ID}
    runner, _ = world.generate_jitconfig(scope, body, org_level=True)
    world.runner_connect(runner.credential)
    return runner


def queue(world: World, repo: str, labels: Sequence[str] = ("self-hosted", "linux")) -> Any:
    [job] = world.create_jobs([JobSpec(repo=repo, labels=tuple(labels), duration=10.0)])
    return job


def test_an_enterprise_runner_serves_every_organisation_of_the_enterprise(world: World) -> None:
    first = enterprise_jit(world, "e-1")
    second = enterprise_jit(world, "e-2")
    in_acme = queue(world, "acme/app")
    in_beta = queue(world, "beta/tool")
    assert (in_acme.runner_id, in_beta.runner_id) == (first.id, second.id)
    assert first.scope == "enterprise:acme-corp"
    assert first.is_enterprise_level
    assert not first.is_repo_level


def test_an_enterprise_runner_never_serves_outside_the_enterprise(world: World) -> None:
    enterprise_jit(world, "e-1")
    world.ensure_repo("octocat/tool", OwnerType.USER)
    foreign = queue(world, "globex/app")
    personal = queue(world, "octocat/tool")
    assert foreign.runner_id is None
    assert personal.runner_id is None


def test_labels_must_all_match_for_an_enterprise_runner(world: World) -> None:
    enterprise_jit(world, "e-1", ["linux"])
    gpu = queue(world, "acme/app", ["self-hosted", "linux", "gpu"])
    assert gpu.runner_id is None
    runner = enterprise_jit(world, "e-gpu", ["Linux", "GPU"])
    world.tick()
    assert gpu.runner_id == runner.id


def test_repository_organisation_and_enterprise_runners_share_a_job_queue(world: World) -> None:
    """Whichever level a matching idle runner is registered at, it may take the job."""
    org_runner, _ = world.generate_jitconfig(
        "acme", {"name": "o-1", "labels": ["linux"], "runner_group_id": 1}, org_level=True
    )
    world.runner_connect(org_runner.credential)
    ent_runner = enterprise_jit(world, "e-1")
    first, second = queue(world, "acme/app"), queue(world, "acme/app")
    assert {first.runner_id, second.runner_id} == {org_runner.id, ent_runner.id}


def test_an_organisation_joining_later_gets_its_queued_jobs_served(world: World) -> None:
    runner = enterprise_jit(world, "e-1")
    job = queue(world, "late/app")
    assert job.runner_id is None
    world.ensure_enterprise(ENTERPRISE, ["late"])
    assert job.runner_id == runner.id


def test_ensure_enterprise_is_idempotent_and_checks_its_organisations(world: World) -> None:
    again = world.ensure_enterprise("ACME-corp", ["beta", "gamma"])
    assert again is world.enterprise(ENTERPRISE)
    assert [org.login for org in again.organizations] == ["acme", "beta", "gamma"]
    assert world.enterprise(str(again.id)) is again  # GitHub also accepts the id
    world.ensure_repo("octocat/tool", OwnerType.USER)
    for orgs in (["octocat"], ["acme"]):
        with pytest.raises(ApiError) as refused:
            world.ensure_enterprise("other-corp", orgs)
        assert refused.value.status == 422
    with pytest.raises(ApiError) as unknown:
        world.enterprise("nope")
    assert unknown.value.status == 404


def test_enterprise_runner_names_and_groups_are_the_enterprises_own(world: World) -> None:
    scope = world.scope_for_enterprise(ENTERPRISE)
    enterprise_jit(world, "same-name")
    # An organisation runner may have the same name: another scope.
    world.generate_jitconfig(
        "acme", {"name": "same-name", "labels": ["x"], "runner_group_id": 1}, org_level=True
    )
    with pytest.raises(ApiError) as duplicate:
        enterprise_jit(world, "SAME-NAME")
    assert duplicate.value.status == 409
    gpu = world.add_enterprise_runner_group(ENTERPRISE, "gpu")
    assert [g.name for g in world.enterprise_groups(ENTERPRISE)] == ["Default", "gpu"]
    assert [g.name for g in world.groups_of("acme")] == ["Default"]
    runner, _ = world.generate_jitconfig(
        scope, {"name": "g", "labels": ["x"], "runner_group_id": gpu.id}, org_level=True
    )
    assert runner.runner_group is gpu
    org_gpu = world.add_runner_group("acme", "org-only")
    with pytest.raises(ApiError) as foreign_group:
        world.generate_jitconfig(
            scope, {"name": "h", "labels": ["x"], "runner_group_id": org_gpu.id}, org_level=True
        )
    assert foreign_group.value.status == 422
    assert "enterprise acme-corp" in foreign_group.value.message


def test_a_registration_token_of_the_enterprise_registers_an_enterprise_runner(
    world: World,
) -> None:
    token = world.create_token(world.scope_for_enterprise(ENTERPRISE), "registration")
    runner, _ = world.register_with_token(token.token, "cfg-1", ["linux"], ephemeral=False)
    assert runner.is_enterprise_level
    assert runner.runner_group is not None
    assert runner.runner_group.default
    world.runner_connect(runner.credential)
    assert queue(world, "beta/tool").runner_id == runner.id


# ---------------------------------------------------------------------- over HTTP


@pytest.fixture
def enterprise_transport() -> ValidatingTransport:
    return ValidatingTransport(contract=default_contract(), path_map=enterprise_as_org)


@pytest.fixture
async def control(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        created = await client.post(
            "/_sim/enterprises", json={"slug": ENTERPRISE, "orgs": ["acme", "beta"]}
        )
        assert created.status_code == 201, created.text
        yield client


@pytest.fixture
async def gh(
    simulator: SimulatorServer, enterprise_transport: ValidatingTransport
) -> AsyncIterator[GitHub[TokenAuthStrategy]]:
    client = github_client(simulator, enterprise_transport)
    yield client
    enterprise_transport.assert_clean()


async def new_runner(
    gh: GitHub[TokenAuthStrategy], name: str, group: int = DEFAULT_GROUP_ID
) -> tuple[Runner, str]:
    response = await gh.arequest(
        "POST",
        f"{RUNNERS}/generate-jitconfig",
        json={"name": name, "runner_group_id": group, "labels": ["linux"]},
        response_model=OrgsOrgActionsRunnersGenerateJitconfigPostResponse201,
    )
    assert response.status_code == 201
    return response.parsed_data.runner, response.parsed_data.encoded_jit_config


async def test_enterprise_runner_operations(
    gh: GitHub[TokenAuthStrategy],
    control: httpx.AsyncClient,
    enterprise_transport: ValidatingTransport,
) -> None:
    added = await control.post(
        "/_sim/runner-groups", json={"enterprise": ENTERPRISE, "name": "gpu"}
    )
    assert added.status_code == 201
    assert added.json() == {"id": added.json()["id"], "name": "gpu", "enterprise": ENTERPRISE}

    groups = await gh.arequest(
        "GET", f"{BASE}/runner-groups", response_model=OrgsOrgActionsRunnerGroupsGetResponse200
    )
    by_name = {group.name: group for group in groups.parsed_data.runner_groups}
    assert set(by_name) == {"Default", "gpu"}
    assert by_name["Default"].id == 1
    assert by_name["Default"].default
    gpu_id = int(by_name["gpu"].id)  # the org model types ids as numbers
    assert by_name["gpu"].runners_url.endswith(f"{BASE}/runner-groups/{gpu_id}/runners")

    runner, encoded = await new_runner(gh, "ent-1", group=gpu_id)
    assert runner.runner_group_id == gpu_id
    assert (runner.status, runner.busy, runner.ephemeral) == ("offline", False, True)
    assert decode(encoded).runner_id == runner.id

    listed = await gh.arequest("GET", RUNNERS, response_model=OrgsOrgActionsRunnersGetResponse200)
    assert [r.name for r in listed.parsed_data.runners] == ["ent-1"]
    named = await gh.arequest(
        "GET", RUNNERS, params={"name": "nope"}, response_model=OrgsOrgActionsRunnersGetResponse200
    )
    assert named.parsed_data.total_count == 0
    got = await gh.arequest("GET", f"{RUNNERS}/{runner.id}", response_model=Runner)
    assert got.parsed_data.name == "ent-1"

    labels = await gh.arequest(
        "POST",
        f"{RUNNERS}/{runner.id}/labels",
        json={"labels": ["big"]},
        response_model=OrgsOrgActionsRunnersRunnerIdLabelsGetResponse200,
    )
    assert [label.name for label in labels.parsed_data.labels] == ["self-hosted", "linux", "big"]
    await gh.arequest(
        "GET",
        f"{RUNNERS}/{runner.id}/labels",
        response_model=OrgsOrgActionsRunnersRunnerIdLabelsGetResponse200,
    )
    for kind in ("registration-token", "remove-token"):
        token = await gh.arequest("POST", f"{RUNNERS}/{kind}", response_model=AuthenticationToken)
        assert token.status_code == 201
        assert token.parsed_data.token

    # The organisation's own list does not show enterprise runners.
    org_runners = await gh.arequest("GET", "/orgs/acme/actions/runners")
    assert org_runners.json()["total_count"] == 0

    deleted = await gh.arequest("DELETE", f"{RUNNERS}/{runner.id}")
    assert deleted.status_code == 204
    with pytest.raises(RequestFailed) as gone:
        await gh.arequest("GET", f"{RUNNERS}/{runner.id}")
    assert gone.value.response.status_code == 404

    stats = (await control.get("/_sim/stats")).json()["operations"]
    assert stats["enterprise-admin/list-self-hosted-runners-for-enterprise"]["requests"] == 2
    assert stats["actions/generate-runner-jitconfig-for-enterprise"]["statuses"] == {"201": 1}
    assert stats["enterprise-admin/list-self-hosted-runner-groups-for-enterprise"]["requests"] == 1
    checked_as = {operation for operation, _ in enterprise_transport.seen}
    assert "actions/list-self-hosted-runners-for-org" in checked_as


async def test_enterprise_runner_list_is_paginated(
    gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    for n in range(5):
        await new_runner(gh, f"ent-{n}")
    seen: list[str] = []
    for page in (1, 2, 3):
        response = await gh.arequest(
            "GET",
            RUNNERS,
            params={"per_page": 2, "page": page},
            response_model=OrgsOrgActionsRunnersGetResponse200,
        )
        assert response.parsed_data.total_count == 5
        seen += [r.name for r in response.parsed_data.runners]
        link = response.headers.get("link", "")
        assert ('rel="next"' in link) == (page < 3)
        assert ('rel="prev"' in link) == (page > 1)
        if page == 1:
            assert f'{RUNNERS}?per_page=2&page=2>; rel="next"' in link
            assert f'{RUNNERS}?per_page=2&page=3>; rel="last"' in link
    assert seen == [f"ent-{n}" for n in range(5)]


async def test_enterprise_runner_list_answers_304_while_unchanged(
    gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    await new_runner(gh, "ent-1")
    first = await gh.arequest("GET", RUNNERS)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = await gh.arequest("GET", RUNNERS, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    assert "x-ratelimit-remaining" in again.headers
    await new_runner(gh, "ent-2")
    changed = await gh.arequest("GET", RUNNERS, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    stats = (await control.get("/_sim/stats")).json()
    assert (
        stats["operations"]["enterprise-admin/list-self-hosted-runners-for-enterprise"][
            "not_modified"
        ]
        == 1
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/enterprises/no-such-corp/actions/runners"),
        ("GET", "/enterprises/no-such-corp/actions/runners/1"),
        ("DELETE", "/enterprises/no-such-corp/actions/runners/1"),
        ("GET", "/enterprises/no-such-corp/actions/runner-groups"),
        ("POST", "/enterprises/no-such-corp/actions/runners/generate-jitconfig"),
        ("POST", "/enterprises/no-such-corp/actions/runners/registration-token"),
        # An organisation is not an enterprise.
        ("GET", "/enterprises/acme/actions/runners"),
    ],
)
async def test_an_unknown_enterprise_is_404(
    gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient, method: str, path: str
) -> None:
    body = {"name": "x", "runner_group_id": 1, "labels": ["linux"]} if method == "POST" else None
    with pytest.raises(RequestFailed) as missing:
        await gh.arequest(method, path, json=body)
    response = missing.value.response
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert response.json()["documentation_url"].startswith("https://docs.github.com/")


async def test_the_enterprise_id_names_the_enterprise_too(
    gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    [enterprise] = (await control.get("/_sim/enterprises")).json()
    response = await gh.arequest("GET", f"/enterprises/{enterprise['id']}/actions/runners")
    assert response.status_code == 200


async def test_deleting_a_busy_enterprise_runner_is_422(
    gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    runner, encoded = await new_runner(gh, "busy-1")
    credential = {"Authorization": f"Bearer {decode(encoded).credential}"}
    assert (await control.post("/_sim/runner/connect", headers=credential)).status_code == 200
    job = await control.post(
        "/_sim/jobs", json={"repo": "beta/tool", "labels": LINUX, "duration": 60}
    )
    assert job.json()["runner_name"] == "busy-1"
    with pytest.raises(RequestFailed) as refused:
        await gh.arequest("DELETE", f"{RUNNERS}/{runner.id}")
    assert refused.value.response.status_code == 422
    assert refused.value.response.json()["message"] == (
        'Bad request - Runner "busy-1" is still running a job".'
    )
    got = await gh.arequest("GET", f"{RUNNERS}/{runner.id}", response_model=Runner)
    assert (got.parsed_data.status, got.parsed_data.busy) == ("online", True)


async def test_enterprise_endpoints_take_a_pat_only(
    simulator: SimulatorServer, control: httpx.AsyncClient, app_private_key: str
) -> None:
    """GitHub: these endpoints "do not work with GitHub App user access tokens, GitHub App
    installation access tokens, or fine-grained personal access tokens"."""
    now = int(time.time())
    app_jwt = jwt.encode(
        {"iat": now - 30, "exp": now + 500, "iss": str(APP_ID)}, app_private_key, "RS256"
    )
    installation = simulator.simulator.world.installation_for(simulator.simulator.world.org("acme"))
    token = simulator.simulator.world.issue_installation_token(installation.id).token
    cases = [
        (AUTH, 200, None),
        ({}, 401, "Requires authentication"),
        ({"Authorization": "token wrong"}, 401, "Bad credentials"),
        (
            {"Authorization": f"Bearer {app_jwt}"},
            403,
            "This endpoint needs an installation access token, not the App's JWT.",
        ),
        ({"Authorization": f"token {token}"}, 403, "Resource not accessible by integration"),
    ]
    for headers, status, message in cases:
        for path in (RUNNERS, f"{BASE}/runner-groups"):
            response = await control.get(path, headers=headers)
            assert response.status_code == status, (headers, path, response.text)
            if message is not None:
                assert response.json()["message"] == message
    # The same installation token still works on its organisation's runners.
    org = await control.get(
        "/orgs/acme/actions/runners", headers={"Authorization": f"token {token}"}
    )
    assert org.status_code == 200


async def test_control_api_for_enterprises(control: httpx.AsyncClient) -> None:
    again = await control.post(
        "/_sim/enterprises", json=[{"slug": ENTERPRISE, "orgs": ["gamma"]}, {"slug": "initech"}]
    )
    assert again.status_code == 201
    first, second = again.json()
    assert (first["slug"], first["orgs"]) == (ENTERPRISE, ["acme", "beta", "gamma"])
    assert (second["slug"], second["name"], second["orgs"]) == ("initech", "initech", [])
    listed = (await control.get("/_sim/enterprises")).json()
    assert [e["slug"] for e in listed] == [ENTERPRISE, "initech"]
    # Organisations came into being on first use.
    repos = await control.get("/orgs/gamma/repos", headers=AUTH)
    assert repos.status_code == 200

    taken = await control.post("/_sim/enterprises", json={"slug": "initech", "orgs": ["acme"]})
    assert taken.status_code == 422
    assert "already belongs to enterprise acme-corp" in taken.json()["errors"][0]["message"]
    await control.post("/_sim/repos", json={"repo": "octocat/x", "owner_type": "User"})
    user = await control.post("/_sim/enterprises", json={"slug": "initech", "orgs": ["octocat"]})
    assert user.status_code == 422
    bad_bodies: list[dict[str, object]] = [
        {"slug": "-bad"},
        {"slug": "a b"},
        {"slug": "ok", "extra": 1},
        {"orgs": []},
    ]
    for bad in bad_bodies:
        response = await control.post("/_sim/enterprises", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["message"] == "Validation Failed"

    both = await control.post(
        "/_sim/runner-groups", json={"org": "acme", "enterprise": ENTERPRISE, "name": "x"}
    )
    assert both.status_code == 422
    unknown = await control.post(
        "/_sim/runner-groups", json={"enterprise": "no-such-corp", "name": "x"}
    )
    assert unknown.status_code == 404


@pytest.mark.slow
async def test_an_enterprise_jit_runner_runs_a_job_end_to_end(
    simulator: SimulatorServer, gh: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    """The real stand-in runner process, configured from an enterprise JIT configuration,
    takes a job of one of the enterprise's organisations, runs it and is removed."""
    runner, encoded = await new_runner(gh, "ent-e2e")
    process = await spawn(encoded)
    job = (
        await control.post(
            "/_sim/jobs",
            json={"repo": "beta/tool", "labels": ["Linux"], "duration": 1.0, "name": "build"},
        )
    ).json()
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    output = out.decode() + err.decode()
    assert process.returncode == 0, output
    assert "Running job: build" in output
    assert encoded not in output
    record = next(j for j in (await control.get("/_sim/jobs")).json() if j["id"] == job["id"])
    assert (record["status"], record["conclusion"], record["runner_name"]) == (
        "completed",
        "success",
        "ent-e2e",
    )
    assert runner.id not in simulator.simulator.world.runners
    listed = await gh.arequest("GET", RUNNERS, response_model=OrgsOrgActionsRunnersGetResponse200)
    assert listed.parsed_data.total_count == 0
    runs = await gh.arequest("GET", "/repos/beta/tool/actions/runs")
    assert runs.json()["workflow_runs"][0]["conclusion"] == "success"
    jobs = await gh.arequest("GET", f"/repos/beta/tool/actions/jobs/{job['id']}")
    assert (jobs.json()["runner_name"], jobs.json()["runner_group_id"]) == ("ent-e2e", 1)
