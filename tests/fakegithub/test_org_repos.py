"""``GET /orgs/{org}/repos`` over real HTTP: each repository's ``pushed_at`` (a new workflow
run is a push) and the listing's ``type``, ``sort`` and ``direction``, every answer checked
against the contract.

The simulator runs on a virtual clock so that pushes a few seconds apart show as different
``pushed_at`` values (GitHub renders timestamps to the second).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from githubkit import GitHub, TokenAuthStrategy

from runnerscale.clock import VirtualClock, iso8601
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.fakegithub.conftest import TOKEN, github_client

REPOS = "/orgs/acme/repos"
AUTH = {"Authorization": f"token {TOKEN}"}
LINUX = ["self-hosted", "linux"]
DAY = 86_400.0


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def server(
    sim_options: SimulatorOptions, clock: VirtualClock
) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(sim_options, clock) as server:
        yield server


@pytest.fixture
async def api(server: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client for the REST and control APIs; every REST answer is validated."""
    transport = ValidatingTransport(contract=default_contract())
    async with httpx.AsyncClient(base_url=server.url, timeout=30, transport=transport) as client:
        yield client
    transport.assert_clean()


@pytest.fixture
async def github(server: SimulatorServer) -> AsyncIterator[GitHub[TokenAuthStrategy]]:
    transport = ValidatingTransport(contract=default_contract())
    yield github_client(server, transport)
    transport.assert_clean()


async def create_repo(api: httpx.AsyncClient, repo: str, **extra: object) -> None:
    response = await api.post("/_sim/repos", json={"repo": repo, **extra})
    assert response.status_code == 201, response.text


async def queue(api: httpx.AsyncClient, repo: str, run_id: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"repo": repo, "labels": LINUX, "duration": 30}
    if run_id is not None:
        body["run_id"] = run_id
    response = await api.post("/_sim/jobs", json=body)
    assert response.status_code == 201, response.text
    record: dict[str, object] = response.json()
    return record


async def listed(api: httpx.AsyncClient, **params: str | int) -> list[dict[str, object]]:
    response = await api.get(REPOS, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    repos: list[dict[str, object]] = response.json()
    return repos


async def names(api: httpx.AsyncClient, **params: str | int) -> list[object]:
    return [repo["name"] for repo in await listed(api, **params)]


async def pushed_at(api: httpx.AsyncClient, name: str) -> object:
    return next(repo["pushed_at"] for repo in await listed(api) if repo["name"] == name)


# ---------------------------------------------------------------------- pushed_at


async def test_a_new_run_is_a_push_and_a_job_joining_it_is_not(
    api: httpx.AsyncClient, clock: VirtualClock
) -> None:
    created = clock.now()
    await create_repo(api, "acme/app")
    assert await pushed_at(api, "app") == iso8601(created)

    clock.advance(60)
    job = await queue(api, "acme/app")
    first_push = iso8601(clock.now())
    assert await pushed_at(api, "app") == first_push

    clock.advance(60)
    await queue(api, "acme/app", run_id=int(str(job["run_id"])))
    assert await pushed_at(api, "app") == first_push

    clock.advance(60)
    await queue(api, "acme/app")
    assert await pushed_at(api, "app") == iso8601(clock.now())
    [repo] = await listed(api)
    assert repo["created_at"] == iso8601(created)


async def test_a_push_changes_the_listings_etag(
    api: httpx.AsyncClient, clock: VirtualClock
) -> None:
    await create_repo(api, "acme/app")
    first = await api.get(REPOS, headers=AUTH)
    etag = first.headers["etag"]
    assert (await api.get(REPOS, headers={**AUTH, "If-None-Match": etag})).status_code == 304
    clock.advance(5)
    await queue(api, "acme/app")
    changed = await api.get(REPOS, headers={**AUTH, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_the_control_api_creates_a_repository_last_pushed_long_ago(
    api: httpx.AsyncClient, clock: VirtualClock
) -> None:
    month_ago = clock.now() - 30 * DAY
    await create_repo(api, "acme/quiet", pushed_at=month_ago)
    [repo] = await listed(api)
    # Pushed before it existed would be impossible: its creation goes back too.
    assert (repo["pushed_at"], repo["created_at"]) == (iso8601(month_ago), iso8601(month_ago))
    bad = await api.post("/_sim/repos", json={"repo": "acme/x", "pushed_at": "yesterday"})
    assert bad.status_code == 422


# ---------------------------------------------------------------------- sort and direction


@pytest.fixture
async def three_repos(api: httpx.AsyncClient, clock: VirtualClock) -> None:
    """``zeta`` created first, ``Alpha`` second and pushed a day ago, ``mid`` last; then
    ``zeta`` is pushed (a new run) after everything else."""
    await create_repo(api, "acme/zeta")
    clock.advance(10)
    await create_repo(api, "acme/Alpha")
    clock.advance(10)
    await create_repo(api, "acme/mid")
    await create_repo(api, "acme/Alpha", pushed_at=clock.now() - DAY)
    clock.advance(10)
    await queue(api, "acme/zeta")


@pytest.mark.usefixtures("three_repos")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["mid", "Alpha", "zeta"]),  # sort=created, desc
        ({"sort": "created", "direction": "asc"}, ["zeta", "Alpha", "mid"]),
        ({"sort": "updated"}, ["mid", "Alpha", "zeta"]),
        ({"sort": "pushed"}, ["zeta", "mid", "Alpha"]),
        ({"sort": "pushed", "direction": "desc"}, ["zeta", "mid", "Alpha"]),
        ({"sort": "pushed", "direction": "asc"}, ["Alpha", "mid", "zeta"]),
        ({"sort": "full_name"}, ["Alpha", "mid", "zeta"]),  # full_name defaults to asc
        ({"sort": "full_name", "direction": "desc"}, ["zeta", "mid", "Alpha"]),
        ({"type": "all", "sort": "pushed"}, ["zeta", "mid", "Alpha"]),
        ({"type": "sources"}, ["mid", "Alpha", "zeta"]),
        ({"type": "private"}, ["mid", "Alpha", "zeta"]),
        ({"type": "public"}, []),
        ({"type": "forks"}, []),
    ],
)
async def test_sort_direction_and_type(
    api: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await names(api, **params) == expected


async def test_ties_break_by_id_and_pages_follow_the_sort(
    api: httpx.AsyncClient, clock: VirtualClock
) -> None:
    # Five repositories created (and so pushed) at the same instant: only ids tell them apart.
    for name in ("e", "d", "c", "b", "a"):
        await create_repo(api, f"acme/{name}")
    assert await names(api, sort="pushed", direction="asc") == ["e", "d", "c", "b", "a"]
    assert await names(api, sort="pushed") == ["a", "b", "c", "d", "e"]
    clock.advance(1)
    await queue(api, "acme/c")
    first = await api.get(REPOS, params={"sort": "pushed", "per_page": 2}, headers=AUTH)
    assert [repo["name"] for repo in first.json()] == ["c", "a"]
    assert 'rel="next"' in first.headers["link"]
    assert "sort=pushed" in first.headers["link"]
    assert await names(api, sort="pushed", per_page=2, page=2) == ["b", "d"]
    assert await names(api, sort="pushed", per_page=2, page=3) == ["e"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("sort", "name"), ("sort", "PUSHED"), ("direction", "up"), ("type", "owner")],
)
async def test_values_outside_the_enum_are_rejected(
    api: httpx.AsyncClient, name: str, value: str
) -> None:
    await create_repo(api, "acme/app")
    response = await api.get(REPOS, params={name: value}, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Validation Failed"
    [error] = body["errors"]
    assert (error["field"], error["code"], error["value"]) == (name, "invalid", value)


async def test_githubkit_sorts_through_the_contract(
    github: GitHub[TokenAuthStrategy], api: httpx.AsyncClient, clock: VirtualClock
) -> None:
    await create_repo(api, "acme/old", pushed_at=clock.now() - DAY)
    await create_repo(api, "acme/new")
    repos = github.rest.repos
    pushed = await repos.async_list_for_org("acme", sort="pushed")
    assert [repo.name for repo in pushed.parsed_data] == ["new", "old"]
    assert pushed.parsed_data[1].pushed_at is not None
    by_name = await repos.async_list_for_org("acme", sort="full_name", direction="desc")
    assert [repo.name for repo in by_name.parsed_data] == ["old", "new"]
