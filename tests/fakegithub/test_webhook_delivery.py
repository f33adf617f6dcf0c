"""workflow_job deliveries over real HTTP: shapes, headers, signatures, the delivery log,
redelivery, and dropped / duplicated / reordered deliveries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import jsonschema
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.github.webhooks import parse_workflow_job_event, verify_signature
from tests.contract.openapi import contract_dir
from tests.fakegithub.conftest import APP_ID
from tests.fakegithub.receiver import Receiver, serve_receiver

SECRET = "webhook-secret-for-tests"
LINUX = ["self-hosted", "linux"]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with serve_receiver() as (hook_receiver, url):
        yield hook_receiver, f"{url}/hook"


@pytest.fixture
def schema() -> dict[str, Any]:
    path = contract_dir() / "webhooks" / "workflow_job" / "workflow_job.bundled.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.fixture
async def hooked(
    sim_options: SimulatorOptions, receiver: tuple[Receiver, str]
) -> AsyncIterator[tuple[SimulatorServer, Receiver, httpx.AsyncClient]]:
    hook_receiver, url = receiver
    options = replace(sim_options, webhook_urls=(url,), webhook_secret=SECRET)
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as control,
    ):
        yield server, hook_receiver, control


async def run_one_job(server: SimulatorServer, control: httpx.AsyncClient, **job: Any) -> None:
    """Queue a job and let an in-process runner take and finish it."""
    world = server.simulator.world
    await control.post(
        "/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 0, **job}
    )
    runner, _ = world.generate_jitconfig(
        "acme/app", {"name": "r-1", "labels": LINUX, "runner_group_id": 1}, org_level=False
    )
    taken = world.runner_poll(runner.credential)
    assert taken is not None
    world.runner_complete(runner.credential, taken.id, taken.planned_conclusion)


async def test_every_transition_is_delivered_signed_and_valid(
    hooked: tuple[SimulatorServer, Receiver, httpx.AsyncClient], schema: dict[str, Any]
) -> None:
    server, receiver, control = hooked
    await run_one_job(server, control, conclusion="failure")
    await receiver.wait_for(3)
    assert receiver.actions() == ["queued", "in_progress", "completed"]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    guids = set()
    for headers, body, _ in receiver.received:
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(json.loads(body))]
        assert not errors, errors
        assert headers["x-github-event"] == "workflow_job"
        assert headers["user-agent"].startswith("GitHub-Hookshot/")
        assert headers["x-github-hook-id"] == "1"
        # In App mode --webhook-url is the App's webhook: addressed to the App, with the
        # installation in the payload.
        assert headers["x-github-hook-installation-target-type"] == "integration"
        assert headers["x-github-hook-installation-target-id"] == str(APP_ID)
        assert json.loads(body)["installation"]["id"]
        assert headers["content-type"] == "application/json"
        assert verify_signature(SECRET, body, headers["x-hub-signature-256"])
        assert not verify_signature("another-secret", body, headers["x-hub-signature-256"])
        guids.add(headers["x-github-delivery"])
        parse_workflow_job_event(body)
    assert len(guids) == 3
    completed = parse_workflow_job_event(receiver.received[-1][1])
    assert completed.workflow_job.conclusion == "failure"
    assert completed.workflow_job.runner_name == "r-1"
    queued = parse_workflow_job_event(receiver.received[0][1])
    assert queued.workflow_job.runner_name is None


async def test_waiting_jobs_are_delivered_as_waiting_then_queued(
    hooked: tuple[SimulatorServer, Receiver, httpx.AsyncClient],
) -> None:
    _, receiver, control = hooked
    job = (
        await control.post(
            "/_sim/jobs",
            json={"repo": "acme/app", "labels": LINUX, "duration": 1, "environment": "prod"},
        )
    ).json()
    assert job["status"] == "waiting"
    await control.post(f"/_sim/jobs/{job['id']}/approve")
    await receiver.wait_for(2)
    assert receiver.actions() == ["waiting", "queued"]


async def test_failed_deliveries_are_logged_not_retried_and_can_be_redelivered(
    hooked: tuple[SimulatorServer, Receiver, httpx.AsyncClient],
) -> None:
    _, receiver, control = hooked
    receiver.status = 500
    await control.post("/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 1})
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)  # a retry, if there were one, would arrive now
    assert len(receiver.received) == 1
    log = (await control.get("/_sim/deliveries")).json()
    assert [(d["status"], d["status_code"]) for d in log] == [("failed", 500)]

    receiver.status = 202
    again = await control.post(f"/_sim/deliveries/{log[0]['id']}/redeliver")
    assert again.status_code == 202
    await receiver.wait_for(2)
    first, second = receiver.received
    assert first[0]["x-github-delivery"] == second[0]["x-github-delivery"]
    assert first[1] == second[1]
    log = (await control.get("/_sim/deliveries")).json()
    assert [(d["status"], d["redelivery"]) for d in log] == [("failed", False), ("delivered", True)]
    assert (await control.post("/_sim/deliveries/99/redeliver")).status_code == 404


async def test_unreachable_receiver_is_a_failed_delivery(
    sim_options: SimulatorOptions,
) -> None:
    options = replace(sim_options, webhook_urls=("http://127.0.0.1:9/hook",))
    async with (
        SimulatorServer(options) as server,
        httpx.AsyncClient(base_url=server.url) as control,
    ):
        await control.post("/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 1})
        for _ in range(100):
            log = (await control.get("/_sim/deliveries")).json()
            if log and log[0]["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        assert log[0]["status"] == "failed"
        assert "ConnectError" in log[0]["error"]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"drop_rate": 1.0}, []),
        ({"duplicate_rate": 1.0}, ["queued", "queued", "in_progress", "in_progress"]),
        ({"reorder_rate": 1.0}, ["in_progress", "queued"]),
    ],
)
async def test_webhook_faults(
    hooked: tuple[SimulatorServer, Receiver, httpx.AsyncClient],
    faults: dict[str, float],
    expected: list[str],
) -> None:
    server, receiver, control = hooked
    await control.post("/_sim/faults", json={"webhooks": faults})
    world = server.simulator.world
    world.ensure_repo("acme/app")
    runner, _ = world.generate_jitconfig(
        "acme/app", {"name": "r-1", "labels": LINUX, "runner_group_id": 1}, org_level=False
    )
    world.runner_connect(runner.credential)
    await control.post("/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 60})
    if expected:
        await receiver.wait_for(len(expected))
    await asyncio.sleep(0.2)
    assert receiver.actions() == expected
    statuses = [d["status"] for d in (await control.get("/_sim/deliveries")).json()]
    if not expected:
        assert statuses == ["dropped", "dropped"]
