"""Every operation of the OpenAPI subset, called through githubkit over real HTTP.

The transport under githubkit validates each answer against the contract; githubkit's own
models must parse it too. The last test checks that every operation was exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import QUEUE_TIMEOUT_REASON
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.fakegithub.conftest import APP_ID, github_client
from tests.fakegithub.receiver import serve_receiver, wait_attempted

LINUX = ["self-hosted", "linux", "x64"]


async def queue(control: httpx.AsyncClient, repo: str, labels: list[str], **extra: object) -> dict:
    response = await control.post(
        "/_sim/jobs", json={"repo": repo, "labels": labels, "duration": 30, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_repository_runner_operations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    await queue(control, "acme/app", LINUX)
    actions = github.rest.actions

    jit = await actions.async_generate_runner_jitconfig_for_repo(
        "acme", "app", data={"name": "r-1", "runner_group_id": 1, "labels": LINUX}
    )
    runner = jit.parsed_data.runner
    assert runner.name == "r-1"
    assert jit.parsed_data.encoded_jit_config

    listed = await actions.async_list_self_hosted_runners_for_repo("acme", "app")
    assert [r.name for r in listed.parsed_data.runners] == ["r-1"]
    got = await actions.async_get_self_hosted_runner_for_repo("acme", "app", runner.id)
    assert got.parsed_data.status == "offline"

    labels = await actions.async_list_labels_for_self_hosted_runner_for_repo(
        "acme", "app", runner.id
    )
    assert {label.name for label in labels.parsed_data.labels} == set(LINUX)
    added = await actions.async_add_custom_labels_to_self_hosted_runner_for_repo(
        "acme", "app", runner.id, data={"labels": ["gpu"]}
    )
    assert "gpu" in {label.name for label in added.parsed_data.labels}

    registration = await actions.async_create_registration_token_for_repo("acme", "app")
    assert registration.parsed_data.token
    remove = await actions.async_create_remove_token_for_repo("acme", "app")
    assert remove.parsed_data.token

    deleted = await actions.async_delete_self_hosted_runner_from_repo("acme", "app", runner.id)
    assert deleted.status_code == 204
    with pytest.raises(RequestFailed) as missing:
        await actions.async_get_self_hosted_runner_for_repo("acme", "app", runner.id)
    assert missing.value.response.status_code == 404


async def test_organisation_runner_operations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    await queue(control, "acme/app", LINUX)
    await control.post("/_sim/runner-groups", json={"org": "acme", "name": "gpu"})
    actions = github.rest.actions

    groups = await actions.async_list_self_hosted_runner_groups_for_org("acme")
    names = {group.name: group.id for group in groups.parsed_data.runner_groups}
    assert set(names) == {"Default", "gpu"}

    jit = await actions.async_generate_runner_jitconfig_for_org(
        "acme", data={"name": "org-1", "runner_group_id": int(names["gpu"]), "labels": LINUX}
    )
    runner = jit.parsed_data.runner
    assert runner.runner_group_id == names["gpu"]
    listed = await actions.async_list_self_hosted_runners_for_org("acme")
    assert [r.name for r in listed.parsed_data.runners] == ["org-1"]
    await actions.async_get_self_hosted_runner_for_org("acme", runner.id)
    await actions.async_list_labels_for_self_hosted_runner_for_org("acme", runner.id)
    await actions.async_add_custom_labels_to_self_hosted_runner_for_org(
        "acme", runner.id, data={"labels": ["big"]}
    )
    await actions.async_create_registration_token_for_org("acme")
    await actions.async_create_remove_token_for_org("acme")
    await actions.async_delete_self_hosted_runner_from_org("acme", runner.id)

    repos = await github.rest.repos.async_list_for_org("acme")
    assert [repo.full_name for repo in repos.parsed_data] == ["acme/app"]


async def test_workflow_run_and_job_operations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    first = await queue(control, "acme/app", LINUX, run_id=500, name="build")
    await queue(control, "acme/app", LINUX, run_id=500, name="test")
    actions = github.rest.actions

    runs = await actions.async_list_workflow_runs_for_repo("acme", "app", status="queued")
    assert [run.id for run in runs.parsed_data.workflow_runs] == [500]
    jobs = await actions.async_list_jobs_for_workflow_run("acme", "app", 500)
    assert [job.name for job in jobs.parsed_data.jobs] == ["build", "test"]
    job = await actions.async_get_job_for_workflow_run("acme", "app", first["id"])
    assert job.parsed_data.status == "queued"
    assert job.parsed_data.labels == LINUX

    cancelled = await actions.async_cancel_workflow_run("acme", "app", 500)
    assert cancelled.status_code == 202
    after = await actions.async_get_job_for_workflow_run("acme", "app", first["id"])
    assert (after.parsed_data.status, after.parsed_data.conclusion) == ("completed", "cancelled")
    with pytest.raises(RequestFailed) as again:
        await actions.async_cancel_workflow_run("acme", "app", 500)
    assert again.value.response.status_code == 409

    rerun = await actions.async_re_run_job_for_workflow_run("acme", "app", first["id"])
    assert rerun.status_code == 201
    latest = await actions.async_list_jobs_for_workflow_run("acme", "app", 500)
    assert [(j.name, j.status, j.run_attempt) for j in latest.parsed_data.jobs] == [
        ("build", "queued", 2)
    ]
    every = await actions.async_list_jobs_for_workflow_run("acme", "app", 500, filter_="all")
    assert len(every.parsed_data.jobs) == 3


async def test_a_failed_jobs_check_run_annotations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    """A job's check run is the job (``check_run_url``); why GitHub failed it other than by
    its steps is its one annotation."""
    waiting = await queue(control, "acme/app", LINUX)
    expired = await queue(control, "acme/app", ["self-hosted", "gpu"])
    world = simulator.simulator.world
    world.settings = replace(world.settings, queue_timeout=0.0)
    world.jobs[waiting["id"]].created_at = world.now + 1  # not expired yet
    world.tick()
    checks = github.rest.checks
    none = await checks.async_list_annotations("acme", "app", waiting["id"])
    assert none.parsed_data == []
    found = await checks.async_list_annotations("acme", "app", expired["id"], per_page=10)
    [annotation] = found.parsed_data
    assert (annotation.annotation_level, annotation.message) == ("failure", QUEUE_TIMEOUT_REASON)
    job = await github.rest.actions.async_get_job_for_workflow_run("acme", "app", expired["id"])
    assert job.parsed_data.check_run_url.endswith(f"/check-runs/{expired['id']}")
    with pytest.raises(RequestFailed) as missing:
        await checks.async_list_annotations("acme", "app", 999_999)
    assert missing.value.response.status_code == 404


async def test_app_and_installation_operations(
    simulator: SimulatorServer,
    transport: ValidatingTransport,
    control: httpx.AsyncClient,
    app_private_key: str,
) -> None:
    await queue(control, "acme/app", LINUX)
    await queue(control, "other/tool", LINUX)
    app = github_client(simulator, transport, AppAuthStrategy(APP_ID, app_private_key))
    installations = await app.rest.apps.async_list_installations()
    assert {i.account.login for i in installations.parsed_data if i.account} == {"acme", "other"}
    by_org = await app.rest.apps.async_get_org_installation("acme")
    by_repo = await app.rest.apps.async_get_repo_installation("acme", "app")
    assert by_org.parsed_data.id == by_repo.parsed_data.id
    token = await app.rest.apps.async_create_installation_access_token(by_org.parsed_data.id)
    assert token.parsed_data.token.startswith("ghs_")

    installation = github_client(simulator, transport, token.parsed_data.token)
    repos = await installation.rest.apps.async_list_repos_accessible_to_installation()
    assert [r.full_name for r in repos.parsed_data.repositories] == ["acme/app"]
    runners = await installation.rest.actions.async_list_self_hosted_runners_for_org("acme")
    assert runners.parsed_data.total_count == 0
    limits = await installation.rest.rate_limit.async_get()
    assert limits.parsed_data.resources.core.limit == 5000
    transport.assert_clean()


# ---------------------------------------------------------------- the reads clients make first


async def test_first_reads_of_a_token_client(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await queue(control, "acme/app", LINUX, run_id=700)

    root = await github.rest.meta.async_root()
    assert root.parsed_data.repository_url == f"{simulator.url}/repos/{{owner}}/{{repo}}"

    me = await github.rest.users.async_get_authenticated()
    assert (me.parsed_data.login, me.parsed_data.user_view_type) == ("octocat", "private")
    user = await github.rest.users.async_get_by_username("octocat")
    assert user.parsed_data.id == me.parsed_data.id
    assert user.parsed_data.user_view_type == "public"

    org = await github.rest.orgs.async_get("acme")
    assert (org.parsed_data.login, org.parsed_data.owned_private_repos) == ("acme", 1)
    repo = await github.rest.repos.async_get("acme", "app")
    assert repo.parsed_data.full_name == "acme/app"
    assert repo.parsed_data.permissions is not None
    assert repo.parsed_data.permissions.admin

    run = await github.rest.actions.async_get_workflow_run("acme", "app", 700)
    assert (run.parsed_data.id, run.parsed_data.status) == (700, "queued")


async def test_runner_downloads_and_groups(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient
) -> None:
    await queue(control, "acme/app", LINUX)
    group = (await control.post("/_sim/runner-groups", json={"org": "acme", "name": "gpu"})).json()
    actions = github.rest.actions

    for response in (
        await actions.async_list_runner_applications_for_repo("acme", "app"),
        await actions.async_list_runner_applications_for_org("acme"),
    ):
        platforms = {(a.os, a.architecture) for a in response.parsed_data}
        assert {("linux", "x64"), ("linux", "arm64"), ("win", "x64")} <= platforms

    await actions.async_generate_runner_jitconfig_for_org(
        "acme", data={"name": "in-gpu", "runner_group_id": group["id"], "labels": LINUX}
    )
    got = await actions.async_get_self_hosted_runner_group_for_org("acme", group["id"])
    assert (got.parsed_data.name, got.parsed_data.default) == ("gpu", False)
    members = await actions.async_list_self_hosted_runners_in_group_for_org("acme", group["id"])
    assert [r.name for r in members.parsed_data.runners] == ["in-gpu"]
    default = await actions.async_list_self_hosted_runners_in_group_for_org("acme", 1)
    assert default.parsed_data.total_count == 0


async def test_the_app_reads_itself(
    simulator: SimulatorServer,
    transport: ValidatingTransport,
    control: httpx.AsyncClient,
    app_private_key: str,
) -> None:
    await queue(control, "acme/app", LINUX)
    app = github_client(simulator, transport, AppAuthStrategy(APP_ID, app_private_key))
    me = await app.rest.apps.async_get_authenticated()
    assert me.parsed_data is not None
    assert (me.parsed_data.id, me.parsed_data.installations_count) == (APP_ID, 1)
    installation = await app.rest.apps.async_get_org_installation("acme")
    assert installation.parsed_data.client_id == me.parsed_data.client_id
    transport.assert_clean()


# ---------------------------------------------------------------- repository and organisation hooks


async def test_repository_hook_operations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await queue(control, "acme/app", LINUX)
    repos = github.rest.repos
    async with serve_receiver() as (receiver, url):
        config = {"url": f"{url}/repo", "content_type": "json", "secret": "s3cret"}
        created = await repos.async_create_webhook(
            "acme", "app", data={"name": "web", "events": ["workflow_job"], "config": config}
        )
        hook = created.parsed_data
        assert created.status_code == 201
        assert created.headers["location"] == hook.url
        assert (hook.type, hook.name, hook.active, hook.events) == (
            "Repository",
            "web",
            True,
            ["workflow_job"],
        )
        assert hook.config.secret == "********"  # write-only
        assert hook.last_response.status == "unused"
        listed = await repos.async_list_webhooks("acme", "app")
        assert [h.id for h in listed.parsed_data] == [hook.id]
        got = await repos.async_get_webhook("acme", "app", hook.id)
        assert got.parsed_data.config.url == f"{url}/repo"

        pinged = await repos.async_ping_webhook("acme", "app", hook.id)
        assert pinged.status_code == 204
        await receiver.wait_for(2)  # one ping on creation, one asked for
        await wait_attempted(simulator.simulator.webhooks, 2)
        deliveries = await repos.async_list_webhook_deliveries("acme", "app", hook.id)
        items = deliveries.parsed_data
        assert [(d.event, d.action, d.status, d.status_code) for d in items] == [
            ("ping", None, "OK", 200)
        ] * 2
        assert items[0].id > items[1].id  # newest first
        redone = await repos.async_redeliver_webhook_delivery("acme", "app", hook.id, items[1].id)
        assert redone.status_code == 202
        await receiver.wait_for(3)
        first, _, again = receiver.received
        assert again.headers["x-github-delivery"] == first.headers["x-github-delivery"]

        with pytest.raises(RequestFailed) as refused:
            await repos.async_create_webhook(
                "acme", "app", data={"config": {"url": f"{url}/repo"}, "events": ["no_such"]}
            )
        assert refused.value.response.status_code == 422
        deleted = await repos.async_delete_webhook("acme", "app", hook.id)
        assert deleted.status_code == 204
        with pytest.raises(RequestFailed) as gone:
            await repos.async_get_webhook("acme", "app", hook.id)
        assert gone.value.response.status_code == 404


async def test_organisation_hook_operations(
    github: GitHub[TokenAuthStrategy], control: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    await queue(control, "acme/app", LINUX)
    orgs = github.rest.orgs
    async with serve_receiver() as (receiver, url):
        created = await orgs.async_create_webhook(
            "acme",
            data={
                "name": "web",
                "events": ["*"],
                "config": {"url": f"{url}/org", "content_type": "json", "insecure_ssl": "0"},
            },
        )
        hook = created.parsed_data
        assert created.status_code == 201
        assert created.headers["location"] == hook.url
        assert (hook.type, hook.events) == ("Organization", ["*"])
        listed = await orgs.async_list_webhooks("acme")
        assert [h.id for h in listed.parsed_data] == [hook.id]
        got = await orgs.async_get_webhook("acme", hook.id)
        assert got.parsed_data.ping_url == f"{hook.url}/pings"

        await queue(control, "acme/app", LINUX)  # the organisation's repositories are heard
        assert (await orgs.async_ping_webhook("acme", hook.id)).status_code == 204
        await receiver.wait_for(3)
        assert [r.event for r in receiver.received] == ["ping", "workflow_job", "ping"]
        await wait_attempted(simulator.simulator.webhooks, 3)
        jobs = await orgs.async_list_webhook_deliveries("acme", hook.id, per_page=1)
        assert len(jobs.parsed_data) == 1
        assert 'rel="next"' in jobs.headers["link"]
        succeeded = await orgs.async_list_webhook_deliveries("acme", hook.id, status="success")
        items = succeeded.parsed_data
        assert [d.event for d in items] == ["ping", "workflow_job", "ping"]
        assert items[1].action == "queued"
        assert items[1].repository_id is not None
        redone = await orgs.async_redeliver_webhook_delivery("acme", hook.id, items[1].id)
        assert redone.status_code == 202

        with pytest.raises(RequestFailed) as refused:
            await orgs.async_create_webhook(
                "acme", data={"name": "web", "config": {"url": f"{url}/org"}}
            )
        assert refused.value.response.status_code == 422  # the same URL, overlapping events
        assert (await orgs.async_delete_webhook("acme", hook.id)).status_code == 204
        with pytest.raises(RequestFailed) as gone:
            await orgs.async_ping_webhook("acme", hook.id)
        assert gone.value.response.status_code == 404


@pytest.fixture(scope="module")
def exercised() -> set[str]:
    """Operation ids answered (validated) over the whole module."""
    return set()


@pytest.fixture(autouse=True)
def _record_exercised(transport: ValidatingTransport, exercised: set[str]) -> Iterator[None]:
    yield
    exercised.update(operation_id for operation_id, _status in transport.seen)


def test_every_operation_was_exercised(exercised: set[str]) -> None:
    """Runs last in this module: what the tests above called is the whole contract."""
    missing = default_contract().operation_ids() - exercised
    assert not missing, f"operations never exercised: {sorted(missing)}"
