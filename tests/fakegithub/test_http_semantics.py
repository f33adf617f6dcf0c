"""GitHub's rules as the simulator serves them over HTTP: auth, rate limits, conditional
requests, pagination, fault injection and bad input."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import GitHub, TokenAuthStrategy
from starlette.requests import Request

from runnerscale.clock import SystemClock
from runnerscale.fakegithub.api import ApiError, read_json
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer, build_simulator
from tests.contract.openapi import ValidatingTransport
from tests.fakegithub.conftest import APP_ID, TOKEN, github_client
from tests.virtual_time import virtual_clock

RUNNERS = "/repos/acme/app/actions/runners"
AUTH = {"Authorization": f"token {TOKEN}"}
LINUX = ["self-hosted", "linux"]


@pytest.fixture
async def api(simulator: SimulatorServer) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        await client.post("/_sim/repos", json={"repo": "acme/app"})
        yield client  # type: ignore[misc]


def app_jwt(private_key: str, *, issued: float | None = None, lifetime: int = 540) -> str:
    now = int(issued if issued is not None else time.time())
    return jwt.encode(
        {"iat": now - 30, "exp": now + lifetime, "iss": str(APP_ID)}, private_key, "RS256"
    )


async def jit(api: httpx.AsyncClient, name: str, **body: object) -> httpx.Response:
    payload = {"name": name, "runner_group_id": 1, "labels": LINUX, **body}
    return await api.post(f"{RUNNERS}/generate-jitconfig", json=payload, headers=AUTH)


# ---------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Requires authentication"),
        ("token wrong", "Bad credentials"),
        ("Bearer wrong", "Bad credentials"),
        ("Basic abc", "Bad credentials"),
        ("token", "Bad credentials"),
    ],
)
async def test_missing_or_wrong_credentials_get_401(
    api: httpx.AsyncClient, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.get(RUNNERS, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["message"] == message
    assert body["documentation_url"].startswith("https://docs.github.com/")
    assert "x-ratelimit-limit" in response.headers


@pytest.mark.parametrize("scheme", ["token", "Bearer"])
async def test_a_pat_works_with_either_scheme(api: httpx.AsyncClient, scheme: str) -> None:
    response = await api.get(RUNNERS, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200


async def test_app_jwt_is_checked_against_the_app_key(
    api: httpx.AsyncClient, app_private_key: str
) -> None:
    good = await api.get(
        "/app/installations", headers={"Authorization": f"Bearer {app_jwt(app_private_key)}"}
    )
    assert good.status_code == 200

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged_pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    forged = await api.get(
        "/app/installations", headers={"Authorization": f"Bearer {app_jwt(forged_pem)}"}
    )
    assert forged.status_code == 401
    assert forged.json()["message"] == "A JSON web token could not be decoded"

    expired = app_jwt(app_private_key, issued=time.time() - 3600)
    answer = await api.get("/app/installations", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert "'exp'" in answer.json()["message"]

    too_long = app_jwt(app_private_key, lifetime=3600)
    answer = await api.get("/app/installations", headers={"Authorization": f"Bearer {too_long}"})
    assert answer.status_code == 401


async def test_each_credential_only_where_github_accepts_it(
    api: httpx.AsyncClient, app_private_key: str
) -> None:
    await api.post("/_sim/repos", json={"repo": "other/tool"})
    bearer_jwt = {"Authorization": f"Bearer {app_jwt(app_private_key)}"}
    # A PAT is not an App.
    assert (await api.get("/app/installations", headers=AUTH)).status_code == 401
    # The App's JWT is not an installation.
    assert (await api.get(RUNNERS, headers=bearer_jwt)).status_code == 403
    installation = (await api.get("/orgs/acme/installation", headers=bearer_jwt)).json()
    token = await api.post(
        f"/app/installations/{installation['id']}/access_tokens", headers=bearer_jwt
    )
    assert token.status_code == 201
    as_installation = {"Authorization": f"token {token.json()['token']}"}
    assert (await api.get(RUNNERS, headers=as_installation)).status_code == 200
    # ...of acme only.
    other = await api.get("/repos/other/tool/actions/runners", headers=as_installation)
    assert other.status_code == 403
    assert other.json()["message"] == "Resource not accessible by integration"
    # /installation/repositories is for installation tokens only.
    assert (await api.get("/installation/repositories", headers=AUTH)).status_code == 403
    missing = await api.post("/app/installations/999/access_tokens", headers=bearer_jwt)
    assert missing.status_code == 404


async def test_installation_tokens_expire_after_an_hour(
    simulator: SimulatorServer, api: httpx.AsyncClient
) -> None:
    world = simulator.simulator.world
    token = world.issue_installation_token(world.installation_for(world.owners["acme"]).id)
    headers = {"Authorization": f"token {token.token}"}
    assert (await api.get(RUNNERS, headers=headers)).status_code == 200
    token.expires_at = time.time() - 1  # an hour later
    assert (await api.get(RUNNERS, headers=headers)).status_code == 401


# ---------------------------------------------------------------------- rate limits and 304


async def test_every_answer_carries_rate_limit_headers(api: httpx.AsyncClient) -> None:
    for response in [
        await api.get(RUNNERS, headers=AUTH),
        await api.get("/repos/acme/nope/actions/runners", headers=AUTH),
        await api.post(f"{RUNNERS}/generate-jitconfig", content=b"{", headers=AUTH),
    ]:
        for header in ("limit", "remaining", "used", "reset", "resource"):
            assert f"x-ratelimit-{header}" in response.headers, (response.status_code, header)
    first = await api.get(RUNNERS, headers=AUTH)
    second = await api.get(RUNNERS, headers=AUTH)
    assert int(second.headers["x-ratelimit-used"]) == int(first.headers["x-ratelimit-used"]) + 1
    assert first.headers["x-ratelimit-limit"] == "5000"


async def test_conditional_requests_answer_304_without_charge(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    first = await api.get(RUNNERS, headers=AUTH)
    etag = first.headers["etag"]
    used = int(first.headers["x-ratelimit-used"])
    for _ in range(3):
        again = await api.get(RUNNERS, headers={**AUTH, "If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert int(again.headers["x-ratelimit-used"]) == used
    await jit(api, "r-1")
    changed = await api.get(RUNNERS, headers={**AUTH, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    stats = (await api.get("/_sim/stats")).json()
    assert stats["operations"]["actions/list-self-hosted-runners-for-repo"]["not_modified"] == 3


async def test_spent_budget_answers_403_until_reset(api: httpx.AsyncClient) -> None:
    await api.post("/_sim/faults", json={"rate_limit": {"limit": 3}})
    statuses = [(await api.get(RUNNERS, headers=AUTH)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 403]
    refused = await api.get(RUNNERS, headers=AUTH)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert "rate limit exceeded" in refused.json()["message"]
    # GET /rate_limit is free and still answers.
    limits = await api.get("/rate_limit", headers=AUTH)
    assert limits.status_code == 200
    assert limits.json()["resources"]["core"]["remaining"] == 0


@pytest.mark.parametrize("status", [403, 429])
async def test_exhausted_primary_limit(api: httpx.AsyncClient, status: int) -> None:
    await api.post("/_sim/faults", json={"rate_limit": {"exhaust_primary": True, "status": status}})
    refused = await api.get(RUNNERS, headers=AUTH)
    assert refused.status_code == status
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # Side effects do not happen when the limit refuses a write.
    assert (await jit(api, "r-1")).status_code == status
    assert (await api.get("/_sim/runners")).json() == []


async def test_secondary_limit_asks_to_retry_after(sim_options: SimulatorOptions) -> None:
    clock = virtual_clock()
    async with (
        SimulatorServer(sim_options, clock) as simulator,
        httpx.AsyncClient(base_url=simulator.url, timeout=30) as api,
    ):
        await api.post("/_sim/repos", json={"repo": "acme/app"})
        await api.post(
            "/_sim/faults", json={"rate_limit": {"secondary_for": 1.0, "retry_after": 1}}
        )
        refused = await api.get(RUNNERS, headers=AUTH)
        assert refused.status_code == 403
        assert refused.headers["retry-after"] == "1"
        assert "secondary rate limit" in refused.json()["message"]
        clock.advance(1.1)
        assert (await api.get(RUNNERS, headers=AUTH)).status_code == 200


# ---------------------------------------------------------------------- pagination


async def test_pagination_with_link_headers(
    api: httpx.AsyncClient, simulator: SimulatorServer, transport: ValidatingTransport
) -> None:
    for index in range(105):
        assert (await jit(api, f"r-{index:03}")).status_code == 201
    capped = await api.get(RUNNERS, params={"per_page": 500}, headers=AUTH)
    assert len(capped.json()["runners"]) == 100
    assert capped.json()["total_count"] == 105
    links = capped.links
    assert links["next"]["url"].endswith("per_page=100&page=2")
    assert links["last"]["url"].endswith("page=2")
    second = await api.get(links["next"]["url"], headers=AUTH)
    assert [r["name"] for r in second.json()["runners"]] == [f"r-{i:03}" for i in range(100, 105)]
    assert set(second.links) == {"prev", "first"}
    beyond = await api.get(RUNNERS, params={"per_page": 100, "page": 9}, headers=AUTH)
    assert beyond.json()["runners"] == []

    # The production client follows the Link header through every page.
    github: GitHub[TokenAuthStrategy] = github_client(simulator, transport)
    names = [
        runner.name
        async for runner in github.rest.paginate(
            github.rest.actions.async_list_self_hosted_runners_for_repo,
            map_func=lambda r: r.parsed_data.runners,
            owner="acme",
            repo="app",
            per_page=30,
        )
    ]
    assert len(names) == 105
    transport.assert_clean()


# ---------------------------------------------------------------------- bad input


async def test_bad_input_gets_what_github_gives(api: httpx.AsyncClient) -> None:
    malformed = await api.post(f"{RUNNERS}/generate-jitconfig", content=b"{not json", headers=AUTH)
    assert (malformed.status_code, malformed.json()["message"]) == (400, "Problems parsing JSON")
    assert (await api.get("/repos/acme/nope/actions/runners", headers=AUTH)).status_code == 404
    assert (await api.get(f"{RUNNERS}/424242", headers=AUTH)).status_code == 404
    assert (await api.get(f"{RUNNERS}/not-a-number", headers=AUTH)).status_code == 404
    assert (await api.get("/orgs/nobody/actions/runners", headers=AUTH)).status_code == 404
    assert (await api.get("/no/such/route", headers=AUTH)).status_code == 404

    invalid = await jit(api, "", labels=[])
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["message"]
    assert body["errors"]
    assert all(isinstance(item, str) for item in body["errors"])

    assert (await jit(api, "dup")).status_code == 201
    conflict = await jit(api, "dup")
    assert conflict.status_code == 409
    assert "already exists" in conflict.json()["message"]

    too_many = await jit(api, "many", labels=[f"l{i}" for i in range(101)])
    assert too_many.status_code == 422
    unknown_group = await jit(api, "grp", runner_group_id=77)
    assert unknown_group.status_code == 422


async def test_control_api_rejects_bad_jobs_with_field_errors(api: httpx.AsyncClient) -> None:
    bad = await api.post("/_sim/jobs", json={"repo": "no-slash", "labels": [], "duration": -1})
    assert bad.status_code == 422
    fields = {error["field"] for error in bad.json()["errors"]}
    assert fields == {"repo", "labels", "duration"}
    unknown = await api.post(
        "/_sim/jobs", json={"repo": "a/b", "labels": ["x"], "duration": 1, "colour": 1}
    )
    assert unknown.status_code == 422
    assert (await api.post("/_sim/jobs", content=b"[")).status_code == 400


async def test_busy_runner_cannot_be_deleted(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    runner = (await jit(api, "busy-1")).json()["runner"]
    world = simulator.simulator.world
    world.runner_connect(world.runners[runner["id"]].credential)
    await api.post("/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 60})
    assert world.runners[runner["id"]].busy
    refused = await api.delete(f"{RUNNERS}/{runner['id']}", headers=AUTH)
    assert refused.status_code == 422
    assert "still running a job" in refused.json()["message"]
    assert (await api.get(f"{RUNNERS}/{runner['id']}", headers=AUTH)).json()["busy"] is True


# ---------------------------------------------------------------------- fault injection


async def test_injected_errors_hit_only_the_named_operation(api: httpx.AsyncClient) -> None:
    await api.post(
        "/_sim/faults",
        json={
            "operations": {
                "actions/list-self-hosted-runners-for-repo": {
                    "error_rate": 1.0,
                    "error_status": 503,
                }
            }
        },
    )
    assert (await api.get(RUNNERS, headers=AUTH)).status_code == 503
    assert (await jit(api, "r-1")).status_code == 201
    await api.post("/_sim/faults", json={})
    assert (await api.get(RUNNERS, headers=AUTH)).status_code == 200


async def test_injected_errors_hit_only_the_named_repository(api: httpx.AsyncClient) -> None:
    await api.post("/_sim/repos", json={"repo": "acme/lib"})
    plan = {"repos": {"Acme/App": {"error_rate": 1.0, "error_status": 502}}}
    await api.post("/_sim/faults", json=plan)
    assert (await api.get(RUNNERS, headers=AUTH)).status_code == 502
    assert (await api.get("/repos/acme/app/actions/runs", headers=AUTH)).status_code == 502
    assert (await api.get("/repos/acme/lib/actions/runs", headers=AUTH)).status_code == 200
    assert (await api.get("/orgs/acme/repos", headers=AUTH)).status_code == 200


async def test_injected_errors_repeat_with_the_same_seed(api: httpx.AsyncClient) -> None:
    async def sequence() -> list[int]:
        await api.post("/_sim/faults", json={"seed": 7, "error_rate": 0.5})
        return [(await api.get(RUNNERS, headers=AUTH)).status_code for _ in range(20)]

    first = await sequence()
    assert set(first) == {200, 500}
    assert await sequence() == first


async def test_injected_latency(api: httpx.AsyncClient) -> None:
    await api.post("/_sim/faults", json={"latency": 0.3})
    started = time.monotonic()
    await api.get(RUNNERS, headers=AUTH)
    assert time.monotonic() - started >= 0.3


async def test_bad_fault_plans_are_refused(api: httpx.AsyncClient) -> None:
    refused = await api.post("/_sim/faults", json={"error_rate": 2, "webhooks": {"drop": 1}})
    assert refused.status_code == 422
    fields = {error["field"] for error in refused.json()["errors"]}
    assert fields == {"error_rate", "webhooks.drop"}
    current = (await api.get("/_sim/faults")).json()
    assert current["error_rate"] == 0


async def test_stats_count_requests_by_operation(api: httpx.AsyncClient) -> None:
    await api.get(RUNNERS, headers=AUTH)
    await api.get(RUNNERS, headers={"Authorization": "token wrong"})
    await jit(api, "r-1")
    stats = (await api.get("/_sim/stats")).json()
    listing = stats["operations"]["actions/list-self-hosted-runners-for-repo"]
    assert listing["requests"] == 2
    assert listing["statuses"] == {"200": 1, "401": 1}
    assert stats["operations"]["actions/generate-runner-jitconfig-for-repo"]["requests"] == 1
    assert stats["total"] == 3


async def test_simulator_runs_in_process_without_sockets(sim_options: SimulatorOptions) -> None:
    """The same app answers through an in-memory transport (what the simulation uses)."""
    simulator = build_simulator(sim_options, SystemClock(), "http://simulator.invalid")
    simulator.world.ensure_repo("acme/app")
    transport = httpx.ASGITransport(app=create_app(simulator))
    github = GitHub(
        TOKEN, base_url="http://simulator.invalid", async_transport=transport, http_cache=False
    )
    listed = await github.rest.actions.async_list_self_hosted_runners_for_repo("acme", "app")
    assert listed.parsed_data.total_count == 0


async def test_an_empty_fault_plan_clears_every_fault(api: httpx.AsyncClient) -> None:
    await api.post("/_sim/faults", json={"rate_limit": {"exhaust_primary": True, "limit": 3}})
    assert (await api.get(RUNNERS, headers=AUTH)).status_code == 403
    await api.post("/_sim/faults", json={})
    cleared = await api.get(RUNNERS, headers=AUTH)
    assert cleared.status_code == 200
    assert cleared.headers["x-ratelimit-limit"] == "5000"


async def test_control_lists_add_several_hooks_and_groups(api: httpx.AsyncClient) -> None:
    hooks = await api.post(
        "/_sim/hooks", json=[{"url": "http://127.0.0.1:1/a"}, {"url": "http://127.0.0.1:1/b"}]
    )
    assert hooks.status_code == 201
    assert [hook["id"] for hook in hooks.json()] == [1, 2]
    groups = await api.post("/_sim/runner-groups", json=[{"org": "acme", "name": "gpu"}])
    assert [group["name"] for group in groups.json()] == ["gpu"]
    assert (await api.post("/_sim/runner-groups", json=[])).status_code == 422


async def test_registration_tokens_register_runners_until_they_expire(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    token = (await api.post(f"{RUNNERS}/registration-token", headers=AUTH)).json()
    registered = await api.post(
        "/_sim/runner/register",
        json={"token": token["token"], "name": "long-lived", "labels": LINUX, "ephemeral": False},
    )
    assert registered.status_code == 201
    config = decode(registered.json()["encoded_config"])
    assert (config.runner_name, config.ephemeral) == ("long-lived", False)
    simulator.simulator.world.tokens[token["token"]].expires_at = time.time() - 1
    expired = await api.post(
        "/_sim/runner/register",
        json={"token": token["token"], "name": "too-late", "labels": LINUX},
    )
    assert expired.status_code == 401


async def test_a_client_gone_before_its_body_is_a_400_not_a_traceback() -> None:
    """A stopping daemon cuts its requests short: the body never comes."""

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(ApiError) as raised:
        await read_json(request)
    assert raised.value.status == 400
