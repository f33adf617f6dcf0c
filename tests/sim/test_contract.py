"""Every operation of the OpenAPI subset, called through githubkit over real HTTP.

The transport under githubkit validates each answer against the contract; githubkit's own
models must parse it too. The last test checks that all 29 operations were exercised.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from runnerscale.sim.server import SimulatorServer
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.sim.conftest import APP_ID, github_client

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


# ---------------------------------------------------------------- repository and organisation hooks


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
