"""The reads clients make first, beyond the contract's shapes: who may read what, the 404s,
the ``permissions`` repositories show each caller, the token's user and the App's client id.

Every answer (errors included) goes through the contract-validating transport.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from runnerscale.clock import SystemClock
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.entities import RUNNER_VERSION, OwnerType
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import TOKEN_USER_ID, World, WorldSettings
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.fakegithub.conftest import APP_ID, TOKEN
from tests.fakegithub.test_http_semantics import app_jwt

LINUX = ["self-hosted", "linux"]
PAT = {"Authorization": f"token {TOKEN}"}
ALL = dict.fromkeys(("admin", "maintain", "push", "triage", "pull"), True)
#: What the simulated App's installation may do on its own owner's repositories.
INSTALLATION = {"admin": True, "maintain": True, "push": False, "triage": False, "pull": True}
PULL_ONLY = {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True}


@pytest.fixture
async def api(
    simulator: SimulatorServer, transport: ValidatingTransport
) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP with no credentials by default; every API answer is held to the contract.
    The organisations ``acme`` and ``other`` exist, with ``acme/app`` and ``other/lib``."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30, transport=transport) as client:
        await client.post("/_sim/repos", json=[{"repo": "acme/app"}, {"repo": "other/lib"}])
        yield client
    transport.assert_clean()


@pytest.fixture
def jwt_auth(app_private_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app_jwt(app_private_key)}"}


async def installation_auth(api: httpx.AsyncClient, jwt_auth: dict[str, str], org: str) -> dict:
    installation = await api.get(f"/orgs/{org}/installation", headers=jwt_auth)
    token = await api.post(
        f"/app/installations/{installation.json()['id']}/access_tokens", headers=jwt_auth
    )
    return {"Authorization": f"token {token.json()['token']}"}


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["message"] == message
    assert response.json()["documentation_url"].startswith("https://docs.github.com/")


# ---------------------------------------------------------------------- GET /


async def test_the_api_root_points_at_the_simulator_for_anyone(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    response = await api.get("/")
    assert response.status_code == 200
    root = response.json()
    assert root["current_user_url"] == f"{simulator.url}/user"
    assert root["organization_repositories_url"] == (
        f"{simulator.url}/orgs/{{org}}/repos{{?type,page,per_page,sort}}"
    )
    assert all(url.startswith(simulator.url) for url in root.values())
    again = await api.get("/", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_under_the_ghes_prefix_the_root_points_under_it_too(
    control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    root = (await control.get("/api/v3/")).json()
    assert root["repository_url"] == f"{simulator.url}/api/v3/repos/{{owner}}/{{repo}}"
    assert root["current_user_authorizations_html_url"].startswith(f"{simulator.url}/settings/")


# ---------------------------------------------------------------------- users


async def test_a_pat_belongs_to_the_token_user(api: httpx.AsyncClient) -> None:
    me = (await api.get("/user", headers=PAT)).json()
    assert (me["login"], me["id"], me["type"]) == ("octocat", TOKEN_USER_ID, "User")
    assert me["user_view_type"] == "private"
    public = (await api.get("/users/OctoCat")).json()
    assert public["user_view_type"] == "public"
    assert "total_private_repos" not in public
    assert {k: v for k, v in public.items() if k != "user_view_type"} == {
        k: v for k, v in me.items() if k in public and k != "user_view_type"
    }


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [
        ("anonymous", 401, "Requires authentication"),
        ("installation", 403, "Resource not accessible by integration"),
        ("app", 403, "This endpoint needs an installation access token, not the App's JWT."),
    ],
)
async def test_only_a_pat_has_a_user(
    api: httpx.AsyncClient, jwt_auth: dict[str, str], who: str, status: int, message: str
) -> None:
    headers = {
        "anonymous": {},
        "installation": await installation_auth(api, jwt_auth, "acme"),
        "app": jwt_auth,
    }[who]
    assert_error(await api.get("/user", headers=headers), status, message)


async def test_any_account_is_public_and_an_unknown_one_is_404(api: httpx.AsyncClient) -> None:
    org = (await api.get("/users/acme")).json()
    assert (org["login"], org["type"]) == ("acme", "Organization")
    assert_error(await api.get("/users/nobody", headers=PAT), 404, "Not Found")


async def test_the_token_user_counts_its_own_repositories(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await api.post("/_sim/repos", json={"repo": "octocat/tool", "owner_type": "User"})
    simulator.simulator.world.repo("octocat", "tool").private = False
    me = (await api.get("/user", headers=PAT)).json()
    assert (me["public_repos"], me["total_private_repos"]) == (1, 0)


async def test_the_token_user_is_configurable(sim_options: SimulatorOptions) -> None:
    options = replace(sim_options, world=replace(sim_options.world, token_user="mona"))
    transport = ValidatingTransport(contract=default_contract())
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, transport=transport) as client,
    ):
        me = (await client.get("/user", headers=PAT)).json()
        assert me["login"] == "mona"
        assert (await client.get("/users/mona")).status_code == 200
    transport.assert_clean()


@pytest.mark.parametrize(
    ("scopes", "view", "org_plan"),
    [
        (frozenset({"repo"}), "public", False),
        (frozenset({"read:user", "admin:org"}), "private", True),
        (frozenset({"user"}), "private", False),
    ],
)
async def test_a_classic_token_sees_what_its_scopes_allow(
    sim_options: SimulatorOptions, scopes: frozenset[str], view: str, org_plan: bool
) -> None:
    """GitHub shows the private profile only with ``user`` (or ``read:user``), and an
    organisation's full details only with ``admin:org``."""
    options = replace(sim_options, token_scopes={TOKEN: scopes})
    transport = ValidatingTransport(contract=default_contract())
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, transport=transport, headers=PAT) as client,
    ):
        await client.post("/_sim/repos", json={"repo": "acme/app"})
        assert (await client.get("/user")).json()["user_view_type"] == view
        assert ("plan" in (await client.get("/orgs/acme")).json()) is org_plan
    transport.assert_clean()


def test_the_token_user_gets_the_app_once_it_owns_repositories() -> None:
    """Asking who the token is creates no installation (the App's owner need not install
    it), and shifts no other owner's id; owning a repository installs it as anywhere."""
    world = World(SystemClock(), WorldSettings(app_id=APP_ID, token_user="octocat"))
    user = world.token_user()
    assert user.type is OwnerType.USER
    assert world.installations == {}
    assert world.ensure_owner("acme").id == 10_001
    assert {i.owner.login for i in world.installations.values()} == {"acme"}
    repo = world.ensure_repo("octocat/tool", OwnerType.USER)
    assert repo.owner is user
    assert {i.owner.login for i in world.installations.values()} == {"acme", "octocat"}
    assert world.installation_for(user).owner is user


# ---------------------------------------------------------------------- organisations


async def test_an_organisation_shows_its_settings_to_its_owner_only(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    owner_view = (await api.get("/orgs/acme", headers=PAT)).json()
    assert owner_view["plan"]["name"] == "free"
    assert (owner_view["owned_private_repos"], owner_view["public_repos"]) == (1, 0)
    installation = await installation_auth(api, jwt_auth, "acme")
    for headers in ({}, installation):
        public = (await api.get("/orgs/acme", headers=headers)).json()
        assert "plan" not in public
        assert "total_private_repos" not in public
        assert public["login"] == "acme"


async def test_an_unknown_organisation_or_a_user_is_not_an_organisation(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/_sim/repos", json={"repo": "octocat/tool", "owner_type": "User"})
    for org in ("nobody", "octocat"):
        assert_error(await api.get(f"/orgs/{org}", headers=PAT), 404, "Not Found")


# ---------------------------------------------------------------------- repositories


async def test_repository_permissions_follow_the_caller(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    installation = await installation_auth(api, jwt_auth, "acme")
    pat = (await api.get("/repos/acme/app", headers=PAT)).json()
    assert pat["permissions"] == ALL
    assert pat["organization"]["login"] == "acme"
    assert (await api.get("/repos/acme/app", headers=installation)).json()[
        "permissions"
    ] == INSTALLATION

    listed = (await api.get("/orgs/acme/repos", headers=PAT)).json()
    assert [r["permissions"] for r in listed] == [ALL]
    listed = (await api.get("/orgs/acme/repos", headers=installation)).json()
    assert [r["permissions"] for r in listed] == [INSTALLATION]
    accessible = (await api.get("/installation/repositories", headers=installation)).json()
    assert [r["permissions"] for r in accessible["repositories"]] == [INSTALLATION]


async def test_a_private_repository_is_404_to_whoever_cannot_see_it(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    other = await installation_auth(api, jwt_auth, "other")
    for headers in ({}, jwt_auth, other):
        assert_error(await api.get("/repos/acme/app", headers=headers), 404, "Not Found")
    assert_error(await api.get("/repos/acme/nothing", headers=PAT), 404, "Not Found")


async def test_a_public_repository_is_readable_by_anyone(
    api: httpx.AsyncClient, jwt_auth: dict[str, str], simulator: SimulatorServer
) -> None:
    await api.post("/_sim/repos", json={"repo": "octocat/tool", "owner_type": "User"})
    simulator.simulator.world.repo("octocat", "tool").private = False
    anonymous = (await api.get("/repos/octocat/tool")).json()
    assert "permissions" not in anonymous
    assert "organization" not in anonymous  # a user's repository
    other = await installation_auth(api, jwt_auth, "other")
    read = (await api.get("/repos/octocat/tool", headers=other)).json()
    assert read["permissions"] == PULL_ONLY


# ---------------------------------------------------------------------- the App


async def test_the_app_knows_itself_and_its_client_id(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    app = (await api.get("/app", headers=jwt_auth)).json()
    assert (app["id"], app["slug"], app["owner"]["login"]) == (
        APP_ID,
        "runnerscale-simulator",
        "octocat",
    )
    assert app["installations_count"] == 2  # acme and other, not the App's owner
    assert re.fullmatch(r"Iv1\.[0-9a-f]{16}", app["client_id"])
    assert app["client_id"] == shapes.app_client_id(APP_ID)
    installations = (await api.get("/app/installations", headers=jwt_auth)).json()
    assert {i["client_id"] for i in installations} == {app["client_id"]}
    by_repo = (await api.get("/repos/acme/app/installation", headers=jwt_auth)).json()
    assert by_repo["client_id"] == app["client_id"]


async def test_only_the_apps_jwt_reads_the_app(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    assert_error(await api.get("/app", headers=PAT), 401, "A JSON web token could not be decoded")
    installation = await installation_auth(api, jwt_auth, "acme")
    assert_error(
        await api.get("/app", headers=installation),
        401,
        "This endpoint requires you to authenticate as a GitHub App (JWT).",
    )


# ---------------------------------------------------------------------- workflow runs


async def test_a_run_is_read_by_id_within_its_repository(api: httpx.AsyncClient) -> None:
    await api.post(
        "/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 1, "run_id": 90}
    )
    run = (await api.get("/repos/acme/app/actions/runs/90", headers=PAT)).json()
    assert (run["id"], run["status"], run["conclusion"]) == (90, "queued", None)
    await api.post("/repos/acme/app/actions/runs/90/cancel", headers=PAT)
    run = (await api.get("/repos/acme/app/actions/runs/90", headers=PAT)).json()
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    for path in ("/repos/acme/app/actions/runs/91", "/repos/other/lib/actions/runs/90"):
        assert_error(await api.get(path, headers=PAT), 404, "Not Found")
    assert_error(await api.get("/repos/acme/app/actions/runs/x", headers=PAT), 404, "Not Found")


# ---------------------------------------------------------------------- runner downloads


async def test_runner_downloads_point_at_the_simulator_which_serves_none(
    api: httpx.AsyncClient, control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    apps = (await api.get("/orgs/acme/actions/runners/downloads", headers=PAT)).json()
    assert apps == (await api.get("/repos/acme/app/actions/runners/downloads", headers=PAT)).json()
    linux = next(a for a in apps if (a["os"], a["architecture"]) == ("linux", "x64"))
    assert linux["filename"] == f"actions-runner-linux-x64-{RUNNER_VERSION}.tar.gz"
    assert linux["download_url"] == (
        f"{simulator.url}/actions/runner/releases/download/v{RUNNER_VERSION}/{linux['filename']}"
    )
    windows = next(a for a in apps if a["os"] == "win")
    assert windows["filename"].endswith(".zip")
    download = await control.get(linux["download_url"].removeprefix(simulator.url))
    assert download.status_code == 404
    assert "serves no runner application" in download.json()["message"]


async def test_runner_downloads_need_a_known_target_and_credentials(
    api: httpx.AsyncClient,
) -> None:
    for path in ("/orgs/nobody", "/repos/acme/nothing"):
        downloads = f"{path}/actions/runners/downloads"
        assert_error(await api.get(downloads, headers=PAT), 404, "Not Found")
    unauthenticated = await api.get("/orgs/acme/actions/runners/downloads")
    assert_error(unauthenticated, 401, "Requires authentication")


# ---------------------------------------------------------------------- runner groups


async def test_a_runner_group_and_its_runners(api: httpx.AsyncClient) -> None:
    gpu = (await api.post("/_sim/runner-groups", json={"org": "acme", "name": "gpu"})).json()
    for name, group in (("a", gpu["id"]), ("b", gpu["id"]), ("c", 1)):
        body = {"name": name, "runner_group_id": group, "labels": LINUX}
        created = await api.post(
            "/orgs/acme/actions/runners/generate-jitconfig", json=body, headers=PAT
        )
        assert created.status_code == 201
    group = (await api.get(f"/orgs/acme/actions/runner-groups/{gpu['id']}", headers=PAT)).json()
    assert group["runners_url"].endswith(f"/orgs/acme/actions/runner-groups/{gpu['id']}/runners")
    first = await api.get(f"{group['runners_url']}?per_page=1", headers=PAT)
    assert first.json()["total_count"] == 2
    assert [r["name"] for r in first.json()["runners"]] == ["a"]
    assert 'rel="next"' in first.headers["link"]
    default = (await api.get("/orgs/acme/actions/runner-groups/1/runners", headers=PAT)).json()
    assert [r["name"] for r in default["runners"]] == ["c"]


async def test_unknown_runner_groups_are_404(
    api: httpx.AsyncClient, jwt_auth: dict[str, str]
) -> None:
    gpu = (await api.post("/_sim/runner-groups", json={"org": "other", "name": "gpu"})).json()
    for path in (
        f"/orgs/acme/actions/runner-groups/{gpu['id']}",  # another organisation's
        "/orgs/acme/actions/runner-groups/999",
        "/orgs/acme/actions/runner-groups/x/runners",
        "/orgs/nobody/actions/runner-groups/1",
    ):
        assert_error(await api.get(path, headers=PAT), 404, "Not Found")
    other = await installation_auth(api, jwt_auth, "other")
    assert_error(
        await api.get("/orgs/acme/actions/runner-groups/1", headers=other),
        403,
        "Resource not accessible by integration",
    )
