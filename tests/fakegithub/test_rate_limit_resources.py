"""Rate-limit resources: ``GET /rate_limit`` lists every resource GitHub's schema lists, and
registering runners (registration and remove tokens, JIT configurations, at every level) is
charged to ``actions_runner_registration`` rather than ``core`` (the simulator's named
assumption), which the answers say in ``x-ratelimit-resource``. Injected exhaustion spends
every resource; per-resource limits can be injected too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from githubkit import GitHub, TokenAuthStrategy

from runnerscale.fakegithub.ratelimit import RESOURCE_LIMITS, RUNNER_REGISTRATION_OPERATIONS
from runnerscale.fakegithub.server import SimulatorServer
from tests.contract.openapi import default_contract
from tests.fakegithub.conftest import TOKEN

AUTH = {"Authorization": f"token {TOKEN}"}
REGISTRATION = "actions_runner_registration"
LINUX = ["self-hosted", "linux"]
PREFIXES = {
    "repo": "/repos/acme/app/actions/runners",
    "org": "/orgs/acme/actions/runners",
    "enterprise": "/enterprises/big-corp/actions/runners",
}
#: (level, path suffix, body) of each operation charged to the registration resource.
REGISTRATION_CALLS = [
    (level, suffix, body)
    for level in PREFIXES
    for suffix, body in (
        ("registration-token", None),
        ("remove-token", None),
        ("generate-jitconfig", {"runner_group_id": 1, "labels": LINUX}),
    )
]


@pytest.fixture
async def api(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        await client.post("/_sim/repos", json={"repo": "acme/app"})
        await client.post("/_sim/enterprises", json={"slug": "big-corp", "orgs": ["acme"]})
        yield client


async def register(
    api: httpx.AsyncClient, level: str, suffix: str, body: dict[str, object] | None, n: int = 0
) -> httpx.Response:
    url = f"{PREFIXES[level]}/{suffix}"
    if body is None:
        return await api.post(url, headers=AUTH)
    return await api.post(url, json={**body, "name": f"{level}-{n}"}, headers=AUTH)


async def overview(api: httpx.AsyncClient) -> dict[str, dict[str, int]]:
    response = await api.get("/rate_limit", headers=AUTH)
    assert response.status_code == 200
    resources: dict[str, dict[str, int]] = response.json()["resources"]
    return resources


async def test_rate_limit_lists_every_resource_of_the_published_schema(
    github: GitHub[TokenAuthStrategy], api: httpx.AsyncClient
) -> None:
    schema = default_contract().document["components"]["schemas"]["rate-limit-overview"]
    published = set(schema["properties"]["resources"]["properties"])
    assert set(RESOURCE_LIMITS) == published
    # Over githubkit, every answer checked against the contract (the github fixture).
    parsed = (await github.rest.rate_limit.async_get()).parsed_data
    assert parsed.resources.core.limit == 5000
    body = (await api.get("/rate_limit", headers=AUTH)).json()
    assert set(body["resources"]) == published
    assert body["rate"] == body["resources"]["core"]
    # The published example's figures: 10,000 for registering runners, 30 for search.
    assert body["resources"][REGISTRATION]["limit"] == 10_000
    assert body["resources"]["search"]["limit"] == 30
    for name, bucket in body["resources"].items():
        assert bucket["limit"] == RESOURCE_LIMITS[name]
        assert bucket["remaining"] == bucket["limit"] - bucket["used"]


def test_the_assumption_covers_each_registration_operation_of_every_level() -> None:
    """Three operations at repository, organisation and enterprise level; the ids are the
    routes' own (enterprise tokens are ``enterprise-admin/``, the JIT config ``actions/``)."""
    assert len(RUNNER_REGISTRATION_OPERATIONS) == 9
    ids = default_contract().operation_ids()
    assert {op for op in RUNNER_REGISTRATION_OPERATIONS if not op.endswith("-enterprise")} <= ids


@pytest.mark.parametrize(("level", "suffix", "body"), REGISTRATION_CALLS)
async def test_registering_runners_is_charged_to_its_own_resource(
    api: httpx.AsyncClient, level: str, suffix: str, body: dict[str, object] | None
) -> None:
    before = await overview(api)
    first = await register(api, level, suffix, body, 1)
    second = await register(api, level, suffix, body, 2)
    assert first.status_code == second.status_code == 201, first.text
    for response, used in ((first, 1), (second, 2)):
        assert response.headers["x-ratelimit-resource"] == REGISTRATION
        assert response.headers["x-ratelimit-limit"] == "10000"
        assert response.headers["x-ratelimit-used"] == str(before[REGISTRATION]["used"] + used)
    after = await overview(api)
    assert after[REGISTRATION]["used"] == before[REGISTRATION]["used"] + 2
    assert after["core"]["used"] == before["core"]["used"]  # core is untouched


async def test_other_operations_stay_on_core(api: httpx.AsyncClient) -> None:
    for path in (PREFIXES["repo"], PREFIXES["org"], "/orgs/acme/actions/runner-groups"):
        response = await api.get(path, headers=AUTH)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-resource"] == "core"
    # An error before the charge still names the operation's resource.
    broken = await api.post(f"{PREFIXES['repo']}/generate-jitconfig", content=b"{", headers=AUTH)
    assert broken.status_code == 400
    assert broken.headers["x-ratelimit-resource"] == REGISTRATION
    assert (await overview(api))["core"]["used"] == 3


@pytest.mark.parametrize("status", [403, 429])
async def test_injected_exhaustion_spends_every_resource(
    api: httpx.AsyncClient, status: int
) -> None:
    await register(api, "repo", "registration-token", None)  # a registration window in use
    faults = {"rate_limit": {"exhaust_primary": True, "status": status}}
    assert (await api.post("/_sim/faults", json=faults)).status_code == 200
    listed = await api.get(PREFIXES["repo"], headers=AUTH)
    token = await register(api, "org", "registration-token", None)
    for response, resource in ((listed, "core"), (token, REGISTRATION)):
        assert response.status_code == status
        assert response.headers["x-ratelimit-resource"] == resource
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert "API rate limit exceeded" in response.json()["message"]
    # GET /rate_limit is free and shows every resource spent, untouched ones too.
    assert all(bucket["remaining"] == 0 for bucket in (await overview(api)).values())
    # Clearing the plan gives every resource a fresh window.
    await api.post("/_sim/faults", json={})
    assert (await register(api, "org", "registration-token", None)).status_code == 201
    assert (await api.get(PREFIXES["repo"], headers=AUTH)).status_code == 200


async def test_a_registration_limit_can_be_injected_apart_from_core(
    api: httpx.AsyncClient,
) -> None:
    plan = {"rate_limit": {"limit": 50, "limits": {REGISTRATION: 2}}}
    assert (await api.post("/_sim/faults", json=plan)).status_code == 200
    statuses = [
        (await register(api, "repo", "registration-token", None)).status_code for _ in range(3)
    ]
    assert statuses == [201, 201, 403]
    refused = await register(api, "repo", "generate-jitconfig", REGISTRATION_CALLS[2][2])
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-resource"] == REGISTRATION
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert (await api.get("/_sim/runners")).json() == []  # nothing was created
    listed = await api.get(PREFIXES["repo"], headers=AUTH)
    assert listed.status_code == 200
    assert listed.headers["x-ratelimit-limit"] == "50"
    resources = await overview(api)
    assert (resources[REGISTRATION]["limit"], resources[REGISTRATION]["remaining"]) == (2, 0)
    assert resources["search"]["limit"] == 30  # not named: GitHub's


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [
        ({"limits": {"cores": 5}}, "unknown rate-limit resource 'cores'"),
        ({"limits": {REGISTRATION: 0}}, "must be at least 1"),
        ({"limit": 5, "limits": {"core": 6}}, "give the core limit once"),
        ({"windows": {"cores": 5}}, "unknown rate-limit resource 'cores'"),
        ({"windows": {REGISTRATION: 0}}, "window must be above 0"),
        ({"windows": {REGISTRATION: 7200}}, "at most 3600 seconds"),
    ],
)
async def test_bad_resource_limits_are_refused(
    api: httpx.AsyncClient, rate_limit: dict[str, object], message: str
) -> None:
    refused = await api.post("/_sim/faults", json={"rate_limit": rate_limit})
    assert refused.status_code == 422
    assert message in refused.text
