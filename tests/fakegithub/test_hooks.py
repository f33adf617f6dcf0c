"""Webhooks belong to hooks, as on GitHub: who hears what, and how each delivery is addressed.

Every delivery here crosses real HTTP to a real receiver, whose signatures are checked with the
production verifier; the REST answers are checked against the contract on the wire. The
routing cases are the ones independent autoscalers depend on: they route a delivery by
``X-GitHub-Hook-Installation-Target-Type``/``-ID``, so a repository hook on an organisation's
repository must say ``repository`` and that repository's id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import jsonschema
import pytest
from githubkit.webhooks import parse_obj

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.github.webhooks import parse_workflow_job_event, verify_signature
from tests.contract.openapi import ValidatingTransport, contract_dir, default_contract
from tests.fakegithub.conftest import APP_ID, TOKEN
from tests.fakegithub.receiver import Received, Receiver, serve_receiver, wait_attempted

SECRET = "hook-secret-for-tests"
LINUX = ["self-hosted", "linux"]
AUTH = {"Authorization": f"token {TOKEN}"}
TARGET_TYPE = "x-github-hook-installation-target-type"
TARGET_ID = "x-github-hook-installation-target-id"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver() as pair:
        yield pair


@pytest.fixture
async def api(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """REST (checked against the contract) and control API, with the test's token."""
    transport = ValidatingTransport(contract=default_contract())
    async with httpx.AsyncClient(
        base_url=simulator.url, headers=AUTH, transport=transport, timeout=30
    ) as client:
        yield client
    transport.assert_clean()


async def repo(api: httpx.AsyncClient, full_name: str, owner_type: str = "Organization") -> int:
    """Create ``full_name`` through the control API; its id."""
    response = await api.post("/_sim/repos", json={"repo": full_name, "owner_type": owner_type})
    assert response.status_code == 201, response.text
    repo_id: int = response.json()["id"]
    return repo_id


async def create_hook(api: httpx.AsyncClient, where: str, url: str, **body: Any) -> dict[str, Any]:
    """``POST {where}/hooks`` (``where``: ``/repos/o/r`` or ``/orgs/o``) with GitHub's JSON."""
    config = {"url": url, "content_type": "json", "secret": SECRET, **body.pop("config", {})}
    response = await api.post(f"{where}/hooks", json={"name": "web", "config": config, **body})
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    return hook


async def queue(api: httpx.AsyncClient, full_name: str, **extra: Any) -> dict[str, Any]:
    response = await api.post(
        "/_sim/jobs", json={"repo": full_name, "labels": LINUX, "duration": 1, **extra}
    )
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def signed(delivery: Received, secret: str = SECRET) -> bool:
    return verify_signature(secret, delivery.body, delivery.headers["x-hub-signature-256"])


def target(delivery: Received) -> tuple[str, int]:
    return delivery.headers[TARGET_TYPE], int(delivery.headers[TARGET_ID])


def jobs_at(receiver: Receiver, path: str) -> list[Received]:
    return receiver.at(path, "workflow_job")


# ---------------------------------------------------------------------- who hears what


async def test_a_repository_hook_on_an_organisation_repository_is_addressed_to_the_repository(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    app_id = await repo(api, "acme/app")
    await repo(api, "acme/other")
    hook = await create_hook(api, "/repos/acme/app", f"{url}/repo", events=["workflow_job"])
    await queue(api, "acme/app")
    await queue(api, "acme/other")
    await hooks.wait_for(2)

    ping, delivery = hooks.received
    assert (ping.event, delivery.event) == ("ping", "workflow_job")
    for received in (ping, delivery):
        assert received.headers["x-github-hook-id"] == str(hook["id"])
        assert target(received) == ("repository", app_id)
        assert signed(received)
    event = parse_workflow_job_event(delivery.body)
    assert event.repo_full_name == "acme/app"
    assert event.organization_login == "acme"
    # Only the App's webhook gets the installation, though the simulator serves an App.
    assert event.installation_id is None
    # Routing as an independent autoscaler does, by the hook's resource: it registered this
    # repository hook for acme/app, and that is where the job lands.
    routes = {("repository", app_id): "acme/app"}
    assert [routes.get(target(d)) for d in jobs_at(hooks, "/repo")] == ["acme/app"]


async def test_an_organisation_hook_hears_every_repository_of_its_organisation_only(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["workflow_job"])
    for full_name in ("acme/app", "acme/tool", "other/app"):
        await queue(api, full_name)
    await hooks.wait_for(3)

    ping, *jobs = hooks.received
    assert ping.event == "ping"
    assert [d.payload()["repository"]["full_name"] for d in jobs] == ["acme/app", "acme/tool"]
    org_id = jobs[0].payload()["organization"]["id"]
    for received in hooks.received:
        assert received.headers["x-github-hook-id"] == str(hook["id"])
        assert target(received) == ("organization", org_id)
        assert signed(received)
        assert "installation" not in received.payload()


async def test_the_apps_webhook_hears_every_installation(
    sim_options: SimulatorOptions, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    options = replace(sim_options, webhook_urls=(f"{url}/app",), webhook_secret=SECRET)
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as control,
    ):
        await repo(control, "octocat/dotfiles", "User")
        await queue(control, "acme/app")
        await queue(control, "octocat/dotfiles")
        await hooks.wait_for(2)
        world = server.simulator.world
        installations = [world.installation_for(world.owners[o]).id for o in ("acme", "octocat")]

    assert [d.event for d in hooks.received] == ["workflow_job"] * 2  # no ping from --webhook-url
    for delivery, installation_id in zip(hooks.received, installations, strict=True):
        assert target(delivery) == ("integration", APP_ID)
        assert parse_workflow_job_event(delivery.body).installation_id == installation_id
        assert signed(delivery)


async def test_without_an_app_the_webhook_url_is_an_org_hook_or_a_user_repository_hook(
    sim_options: SimulatorOptions, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    options = replace(
        sim_options, app_id=None, app_key=None, webhook_urls=(f"{url}/all",), webhook_secret=SECRET
    )
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as control,
    ):
        dotfiles_id = await repo(control, "octocat/dotfiles", "User")
        await queue(control, "acme/app")
        await queue(control, "octocat/dotfiles")
        await hooks.wait_for(2)

    org_job, user_job = hooks.received
    assert target(org_job) == ("organization", org_job.payload()["organization"]["id"])
    assert target(user_job) == ("repository", dotfiles_id)
    assert org_job.headers["x-github-hook-id"] == user_job.headers["x-github-hook-id"]
    assert all("installation" not in d.payload() for d in hooks.received)


async def test_each_hook_that_hears_an_event_gets_its_own_delivery(
    sim_options: SimulatorOptions, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    options = replace(sim_options, webhook_urls=(f"{url}/app",), webhook_secret="app-secret")
    transport = ValidatingTransport(contract=default_contract())
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(
            base_url=server.url, headers=AUTH, transport=transport, timeout=30
        ) as api,
    ):
        app_id = await repo(api, "acme/app")
        org_hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["*"])
        repo_hook = await create_hook(
            api, "/repos/acme/app", f"{url}/repo", events=["workflow_job"], config={"secret": ""}
        )
        await hooks.wait_for(2)  # the two pings
        await queue(api, "acme/app")
        await hooks.wait_for(5)
    transport.assert_clean()

    by_path = {path: jobs_at(hooks, path) for path in ("/app", "/org", "/repo")}
    assert all(len(deliveries) == 1 for deliveries in by_path.values())
    app_delivery, org_delivery, repo_delivery = (by_path[p][0] for p in ("/app", "/org", "/repo"))
    assert app_delivery.headers["x-github-hook-id"] == "1"
    assert org_delivery.headers["x-github-hook-id"] == str(org_hook["id"])
    assert repo_delivery.headers["x-github-hook-id"] == str(repo_hook["id"])
    assert target(app_delivery) == ("integration", APP_ID)
    assert target(org_delivery)[0] == "organization"
    assert target(repo_delivery) == ("repository", app_id)
    # One event: the deliveries share its GUID (GitHub's delivery ``guid`` "is shared with
    # all deliveries for all webhooks that subscribe to this event").
    guids = {d.headers["x-github-delivery"] for d in (app_delivery, org_delivery, repo_delivery)}
    assert len(guids) == 1
    assert "installation" in app_delivery.payload()
    assert "installation" not in org_delivery.payload()
    assert signed(app_delivery, "app-secret")
    assert signed(org_delivery)
    # A hook without a secret sends no signature.
    assert "x-hub-signature-256" not in repo_delivery.headers


async def test_a_hook_hears_only_the_events_it_subscribed_to(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    await create_hook(api, "/repos/acme/app", f"{url}/push")  # GitHub's default: push only
    await create_hook(api, "/repos/acme/app", f"{url}/all", events=["*"])
    quiet = await create_hook(api, "/repos/acme/app", f"{url}/off", events=["*"], active=False)
    assert (quiet["active"], quiet["events"]) == (False, ["*"])
    pinged = await api.post(f"/repos/acme/app/hooks/{quiet['id']}/pings")
    assert pinged.status_code == 204
    await queue(api, "acme/app")
    await hooks.wait_for(3)

    assert [d.event for d in hooks.at("/push")] == ["ping"]
    assert [d.event for d in hooks.at("/all")] == ["ping", "workflow_job"]
    assert hooks.at("/off") == []  # an inactive hook sends nothing, not even a ping


async def test_a_deleted_hook_hears_nothing_more(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str], simulator: SimulatorServer
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["workflow_job"])
    await hooks.wait_for(1)
    assert (await api.delete(f"/orgs/acme/hooks/{hook['id']}")).status_code == 204
    await queue(api, "acme/app")
    assert (await api.get("/orgs/acme/hooks")).json() == []
    assert [d.event for d in simulator.simulator.webhooks.log] == ["ping"]


# ---------------------------------------------------------------------- what a delivery carries


async def test_pings_carry_the_hook_and_parse_as_githubs_ping_event(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    repo_hook = await create_hook(api, "/repos/acme/app", f"{url}/repo", events=["push"])
    org_hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["workflow_job"])
    await hooks.wait_for(2)

    for hook, path, kind in (
        (repo_hook, "/repo", "Repository"),
        (org_hook, "/org", "Organization"),
    ):
        [ping] = hooks.at(path)
        assert signed(ping)
        event = parse_obj("ping", ping.payload())
        assert event.hook_id == hook["id"]
        assert event.zen
        assert event.hook is not None
        assert (event.hook.type, event.hook.id) == (kind, hook["id"])
        assert event.hook.config.secret == "********"
        assert event.hook.events == hook["events"]
        assert event.sender is not None
        assert event.sender.login == "acme"
    assert parse_obj("ping", hooks.at("/repo")[0].payload()).repository.full_name == "acme/app"
    org_ping = hooks.at("/org")[0].payload()
    assert "repository" not in org_ping
    assert org_ping["organization"]["login"] == "acme"


async def test_form_hooks_get_githubs_form_encoded_payload_signed_as_sent(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    response = await api.post(
        "/repos/acme/app/hooks",
        json={"config": {"url": f"{url}/form", "secret": SECRET}, "events": ["workflow_job"]},
    )
    assert response.json()["config"]["content_type"] == "form"  # GitHub's default
    await queue(api, "acme/app")
    await hooks.wait_for(2)

    for delivery in hooks.received:
        assert delivery.headers["content-type"] == "application/x-www-form-urlencoded"
        assert delivery.body.startswith(b"payload=")
        assert signed(delivery)
    event = parse_workflow_job_event(json.dumps(hooks.received[1].payload()))
    assert event.action == "queued"


async def test_jobs_waiting_on_an_environment_carry_their_deployment(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    await repo(api, "acme/app")
    await create_hook(api, "/repos/acme/app", f"{url}/repo", events=["workflow_job"])
    job = await queue(api, "acme/app", environment="production")
    assert job["status"] == "waiting"
    await api.post(f"/_sim/jobs/{job['id']}/approve")
    await hooks.wait_for(3)

    path = contract_dir() / "webhooks" / "workflow_job" / "workflow_job.bundled.schema.json"
    validator = jsonschema.Draft7Validator(json.loads(path.read_text()))
    deliveries = jobs_at(hooks, "/repo")
    assert [d.payload()["action"] for d in deliveries] == ["waiting", "queued"]
    deployments = [d.payload()["deployment"] for d in deliveries]
    for delivery in deliveries:
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(delivery.payload())]
        assert not errors, errors
    assert {d["environment"] for d in deployments} == {"production"}
    assert deployments[0]["id"] == deployments[1]["id"]


# ---------------------------------------------------------------------- deliveries over REST


async def test_failed_deliveries_are_listed_and_a_redelivery_succeeds(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str], simulator: SimulatorServer
) -> None:
    hooks, url = receiver
    hooks.status = 500
    await repo(api, "acme/app")
    hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["workflow_job"])
    base = f"/orgs/acme/hooks/{hook['id']}"
    await wait_attempted(simulator.simulator.webhooks, 1)
    failed = (await api.get(f"{base}/deliveries", params={"status": "failure"})).json()
    assert [(d["event"], d["status"], d["status_code"]) for d in failed] == [
        ("ping", "Invalid HTTP Response: 500", 500)
    ]
    assert (await api.get(f"{base}/deliveries", params={"status": "success"})).json() == []

    hooks.status = 200
    again = await api.post(f"{base}/deliveries/{failed[0]['id']}/attempts")
    assert (again.status_code, again.json()) == (202, {})
    await wait_attempted(simulator.simulator.webhooks, 2)
    listed = (await api.get(f"{base}/deliveries")).json()
    assert [(d["status_code"], d["redelivery"]) for d in listed] == [(200, True), (500, False)]
    assert listed[0]["guid"] == listed[1]["guid"]
    assert hooks.received[0].body == hooks.received[1].body

    bad_status = await api.get(f"{base}/deliveries", params={"status": "maybe"})
    assert bad_status.status_code == 422
    assert (await api.post(f"{base}/deliveries/999/attempts")).status_code == 404


async def test_an_unreachable_hook_is_a_failed_delivery(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await repo(api, "acme/app")
    hook = await create_hook(api, "/repos/acme/app", "http://127.0.0.1:9/hook")
    await wait_attempted(simulator.simulator.webhooks, 1)
    [delivery] = (await api.get(f"/repos/acme/app/hooks/{hook['id']}/deliveries")).json()
    assert (delivery["status"], delivery["status_code"]) == ("failed to connect", 502)
    last = (await api.get(f"/repos/acme/app/hooks/{hook['id']}")).json()["last_response"]
    assert (last["code"], last["status"]) == (None, "failed")


async def test_deliveries_are_paged_by_cursor_newest_first(
    api: httpx.AsyncClient, receiver: tuple[Receiver, str], simulator: SimulatorServer
) -> None:
    _, url = receiver
    await repo(api, "acme/app")
    hook = await create_hook(api, "/orgs/acme", f"{url}/org", events=["workflow_job"])
    base = f"/orgs/acme/hooks/{hook['id']}"
    for _ in range(4):
        await api.post(f"{base}/pings")
    await wait_attempted(simulator.simulator.webhooks, 5)

    every = [d["id"] for d in (await api.get(f"{base}/deliveries")).json()]
    assert every == sorted(every, reverse=True)
    seen: list[int] = []
    link: str | None = f"{base}/deliveries?per_page=2"
    while link:
        page = await api.get(link)
        seen += [d["id"] for d in page.json()]
        links = httpx.Response(200, headers={"link": page.headers.get("link", "")}).links
        link = links.get("next", {}).get("url")
        if seen != every[:2]:
            assert "prev" in links
    assert seen == every
    assert (await api.get(f"{base}/deliveries", params={"cursor": "bogus"})).status_code == 400


# ---------------------------------------------------------------------- bad input and access

OK_URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("where", "body", "field", "code"),
    [
        ("/repos/acme/app", {"config": {}}, "url", "missing_field"),
        ("/repos/acme/app", {"config": {"url": "ftp://example.com"}}, "url", "custom"),
        ("/repos/acme/app", {"name": "irc", "config": {"url": OK_URL}}, "name", "invalid"),
        ("/repos/acme/app", {"config": {"url": OK_URL}, "events": ["nope"]}, "events", "invalid"),
        (
            "/repos/acme/app",
            {"config": {"url": OK_URL, "content_type": "xml"}},
            "content_type",
            "invalid",
        ),
        (
            "/orgs/acme",
            {"name": "web", "config": {"url": OK_URL, "insecure_ssl": "2"}},
            "insecure_ssl",
            "invalid",
        ),
    ],
)
async def test_invalid_hooks_get_a_validation_failed(
    api: httpx.AsyncClient, where: str, body: dict[str, Any], field: str, code: str
) -> None:
    await repo(api, "acme/app")
    response = await api.post(f"{where}/hooks", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["message"] == "Validation Failed"
    assert [(e["resource"], e["field"], e["code"]) for e in error["errors"]] == [
        ("Hook", field, code)
    ]


@pytest.mark.parametrize(
    ("where", "body", "message"),
    [
        ("/repos/acme/app", {"config": {"url": OK_URL}, "bogus": 1}, '"bogus" is not a permitted'),
        ("/repos/acme/app", {"config": {"url": OK_URL}, "events": "push"}, "is not an array"),
        ("/repos/acme/app", {"config": {"url": OK_URL}, "active": "yes"}, "is not a boolean"),
        ("/orgs/acme", {"config": {"url": OK_URL}}, '"name" wasn\'t supplied'),
        ("/orgs/acme", {"name": "web", "config": {}}, '"url" wasn\'t supplied'),
    ],
)
async def test_malformed_hook_bodies_get_an_invalid_request(
    api: httpx.AsyncClient, where: str, body: dict[str, Any], message: str
) -> None:
    await repo(api, "acme/app")
    response = await api.post(f"{where}/hooks", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith("Invalid request.")
    assert message in response.json()["message"]


async def test_hooks_of_what_does_not_exist_are_not_found(api: httpx.AsyncClient) -> None:
    await repo(api, "octocat/dotfiles", "User")
    await repo(api, "acme/app")
    hook = await create_hook(api, "/repos/acme/app", OK_URL)
    assert (await api.get("/repos/acme/nope/hooks")).status_code == 404
    assert (await api.get("/orgs/octocat/hooks")).status_code == 404  # a user has no org hooks
    assert (await api.get(f"/orgs/acme/hooks/{hook['id']}")).status_code == 404
    assert (await api.get("/repos/acme/app/hooks/abc")).status_code == 404
    assert (await api.post("/repos/acme/app/hooks", content=b"[1]")).status_code == 400


async def test_installation_tokens_manage_their_own_owners_hooks_only(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await repo(api, "acme/app")
    await repo(api, "other/app")
    world = simulator.simulator.world
    installation = world.installation_for(world.owners["acme"])
    token = world.issue_installation_token(installation.id).token
    own = {"Authorization": f"token {token}"}
    body = {"config": {"url": OK_URL, "content_type": "json"}, "events": ["workflow_job"]}

    created = await api.post("/repos/acme/app/hooks", json=body, headers=own)
    assert created.status_code == 201
    assert (await api.get("/orgs/acme/hooks", headers=own)).status_code == 200
    refused = await api.post("/repos/other/app/hooks", json=body, headers=own)
    assert refused.status_code == 403
    assert (await api.get("/orgs/other/hooks", headers=own)).status_code == 403


async def test_the_control_api_lists_every_kind_of_hook_and_delivery(
    sim_options: SimulatorOptions, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    options = replace(sim_options, webhook_urls=(f"{url}/app",))
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as api,
    ):
        await repo(api, "acme/app")
        await create_hook(api, "/repos/acme/app", f"{url}/repo", events=["workflow_job"])
        listed = (await api.get("/_sim/hooks")).json()
        assert [(h["kind"], h["repo"], h["has_secret"]) for h in listed] == [
            ("app", None, False),
            ("repository", "acme/app", True),
        ]
        await queue(api, "acme/app")
        await hooks.wait_for(3)
        await wait_attempted(server.simulator.webhooks, 3)
        log = (await api.get("/_sim/deliveries", params={"payload": "1"})).json()

    assert [(d["event"], d["target_type"]) for d in log] == [
        ("ping", "repository"),
        ("workflow_job", "integration"),
        ("workflow_job", "repository"),
    ]
    assert "installation" in log[1]["payload"]
    assert "installation" not in log[2]["payload"]
