"""The scale-set protocol over real HTTP on loopback: the authentication chain, scale sets,
sessions, the long poll and its envelope, the 409 / 401 / 404 flows, and a job run end to end
by the stand-in runner from a scale set's JIT configuration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.runner import StandInRunner
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from tests.fakegithub.conftest import with_world
from tests.fakegithub.scaleset_wire import (
    PAT,
    Tenant,
    acknowledge,
    connect,
    create_scale_set,
    open_session,
    poll,
)

SCALE_SETS = "_apis/runtime/runnerscalesets"


@pytest.fixture
async def server(sim_options: SimulatorOptions) -> AsyncIterator[SimulatorServer]:
    """A simulator whose empty long polls are held only briefly."""
    async with SimulatorServer(with_world(sim_options, scale_set_poll_hold=0.3)) as live:
        yield live


@pytest.fixture
async def http(server: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{server.url}/_sim/repos", json={"repo": "acme/app"})
        yield client


@pytest.fixture
async def tenant(server: SimulatorServer, http: httpx.AsyncClient) -> Tenant:
    return await connect(http, server.url)


async def test_the_chain_gives_a_tenant_and_an_admin_jwt_at_root_and_api_v3(
    server: SimulatorServer, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert tenant.url.startswith(f"{server.url}/_services/pipelines/tenant-")
    assert tenant.url.endswith("/")
    claims = jwt.decode(tenant.token, options={"verify_signature": False})
    assert claims["exp"] > server.clock.now()
    minted = await http.post(
        f"{server.url}/api/v3/orgs/acme/actions/runners/registration-token", headers=PAT
    )
    ghes = await http.post(
        f"{server.url}/api/v3/actions/runner-registration",
        json={"url": f"{server.url}/acme", "runner_event": "register"},
        headers={"Authorization": f"RemoteAuth {minted.json()['token']}"},
    )
    assert ghes.status_code == 200
    assert ghes.json()["url"] == tenant.url
    refused = await http.post(
        f"{server.url}/actions/runner-registration",
        json={"url": f"{server.url}/acme", "runner_event": "register"},
        headers={"Authorization": "RemoteAuth not-a-token"},
    )
    assert refused.status_code == 401
    stats = (await http.get(f"{server.url}/_sim/stats")).json()
    assert stats["operations"]["actions/runner-registration"]["requests"] == 3


async def test_api_version_and_admin_token_are_required(tenant: Tenant) -> None:
    bare = await tenant.http.get(tenant.url + SCALE_SETS, headers=tenant.admin)
    assert bare.status_code == 400
    assert "api-version" in bare.json()["message"]
    forged = await tenant.http.get(
        tenant.url + SCALE_SETS,
        params={"api-version": "6.0-preview"},
        headers={"Authorization": "Bearer forged"},
    )
    assert forged.status_code == 401


async def test_find_create_update_delete_a_scale_set(tenant: Tenant) -> None:
    groups = await tenant.call(
        "GET", "_apis/runtime/runnergroups/", params={"groupName": "Default"}
    )
    assert groups.json()["count"] == 1
    group_id = groups.json()["value"][0]["id"]
    absent = await tenant.call(
        "GET", SCALE_SETS, params={"runnerGroupId": str(group_id), "name": "rs"}
    )
    assert absent.json() == {"count": 0, "value": []}
    created = await create_scale_set(tenant, "rs", ["linux"])
    assert [label["name"] for label in created["labels"]] == ["rs", "linux"]
    assert created["RunnerSetting"] == {"disableUpdate": True}
    found = await tenant.call(
        "GET", SCALE_SETS, params={"runnerGroupId": str(group_id), "name": "rs"}
    )
    assert found.json()["value"][0]["id"] == created["id"]
    patched = await tenant.call(
        "PATCH",
        f"{SCALE_SETS}/{created['id']}",
        json={"labels": [{"name": "rs", "type": "System"}, {"name": "x64", "type": ""}]},
    )
    assert [label["name"] for label in patched.json()["labels"]] == ["rs", "x64"]
    assert (await tenant.call("DELETE", f"{SCALE_SETS}/{created['id']}")).status_code == 204
    gone = await tenant.call("GET", f"{SCALE_SETS}/{created['id']}")
    assert (gone.status_code, gone.json()["typeName"]) == (404, "RunnerScaleSetNotFoundException")


async def test_session_conflict_long_poll_envelope_ack_and_redelivery(
    server: SimulatorServer, tenant: Tenant
) -> None:
    http = tenant.http
    scale_set = await create_scale_set(tenant, "rs", [])
    opened = await open_session(tenant, scale_set["id"])
    assert opened.status_code == 200
    session = opened.json()
    assert session["statistics"]["totalAssignedJobs"] == 0
    conflict = await open_session(tenant, scale_set["id"], "other")
    assert conflict.status_code == 409
    assert conflict.json()["typeName"] == "RunnerScaleSetSessionConflictException"
    empty = await poll(http, session)
    assert empty.status_code == 202
    await http.post(
        f"{server.url}/_sim/jobs", json={"repo": "acme/app", "labels": ["rs"], "duration": 1}
    )
    first = await poll(http, session)
    assert first.status_code == 200
    envelope = first.json()
    assert envelope["messageType"] == "RunnerScaleSetJobMessages"
    assert isinstance(envelope["body"], str)
    (inner,) = json.loads(envelope["body"])
    assert inner["messageType"] == "JobAssigned"
    assert (inner["ownerName"], inner["repositoryName"]) == ("acme", "app")
    assert envelope["statistics"]["totalAssignedJobs"] == 1
    redelivered = await poll(http, session)
    assert redelivered.json()["messageId"] == envelope["messageId"]
    assert (await acknowledge(http, session, envelope["messageId"])).status_code == 204
    assert (await poll(http, session, envelope["messageId"])).status_code == 202
    deleted = await tenant.call(
        "DELETE", f"{SCALE_SETS}/{scale_set['id']}/sessions/{session['sessionId']}"
    )
    assert deleted.status_code == 204
    again = await tenant.call(
        "DELETE", f"{SCALE_SETS}/{scale_set['id']}/sessions/{session['sessionId']}"
    )
    assert again.json()["typeName"] == "RunnerScaleSetSessionExpiredException"


async def test_an_expired_queue_token_is_401_and_a_refresh_cures_it(
    server: SimulatorServer, tenant: Tenant
) -> None:
    scale_set = await create_scale_set(tenant, "rs", [])
    session = (await open_session(tenant, scale_set["id"])).json()
    expired = await tenant.http.post(f"{server.url}/_sim/scale-sets/expire-queue-tokens")
    assert expired.json() == {"expired": 1}
    assert (await poll(tenant.http, session)).status_code == 401
    refreshed = await tenant.call(
        "PATCH", f"{SCALE_SETS}/{scale_set['id']}/sessions/{session['sessionId']}"
    )
    assert refreshed.status_code == 200
    assert (await poll(tenant.http, refreshed.json())).status_code == 202


async def test_a_dropped_session_is_401_then_404_on_refresh_and_can_be_recreated(
    server: SimulatorServer, tenant: Tenant
) -> None:
    scale_set = await create_scale_set(tenant, "rs", [])
    session = (await open_session(tenant, scale_set["id"])).json()
    await tenant.http.post(f"{server.url}/_sim/scale-sets/drop-sessions")
    assert (await poll(tenant.http, session)).status_code == 401
    refresh = await tenant.call(
        "PATCH", f"{SCALE_SETS}/{scale_set['id']}/sessions/{session['sessionId']}"
    )
    assert refresh.status_code == 404
    assert (await open_session(tenant, scale_set["id"])).status_code == 200


async def test_a_scale_set_deleted_behind_the_listener_is_404_on_the_poll(
    server: SimulatorServer, tenant: Tenant
) -> None:
    scale_set = await create_scale_set(tenant, "rs", [])
    session = (await open_session(tenant, scale_set["id"])).json()
    await tenant.http.delete(f"{server.url}/_sim/scale-sets/{scale_set['id']}")
    gone = await poll(tenant.http, session)
    assert (gone.status_code, gone.json()["typeName"]) == (404, "RunnerScaleSetNotFoundException")


async def test_a_job_runs_end_to_end_on_a_scale_set_runner(
    server: SimulatorServer, tenant: Tenant
) -> None:
    http = tenant.http
    scale_set = await create_scale_set(tenant, "rs", ["linux"])
    session = (await open_session(tenant, scale_set["id"])).json()
    jit = await tenant.call(
        "POST",
        f"{SCALE_SETS}/{scale_set['id']}/generatejitconfig",
        json={"name": "rs-runner-1", "workFolder": "_work"},
    )
    assert jit.status_code == 200
    runner = jit.json()["runner"]
    assert runner["runnerScaleSetId"] == scale_set["id"]
    listed = await http.get(f"{server.url}/orgs/acme/actions/runners", headers=PAT)
    (rest_runner,) = listed.json()["runners"]
    assert [label["name"] for label in rest_runner["labels"]] == ["rs", "linux"]
    await http.post(
        f"{server.url}/_sim/jobs",
        json={"repo": "acme/app", "labels": ["rs", "linux"], "duration": 0},
    )
    stand_in = StandInRunner(decode(jit.json()["encodedJITConfig"]), long_poll_seconds=5)
    assert await stand_in.run() == 0
    kinds: list[str] = []
    last = 0
    while (answer := await poll(http, session, last)).status_code == 200:
        message = answer.json()
        kinds += [
            m["messageType"] + (":" + m["result"] if "result" in m else "")
            for m in json.loads(message["body"])
        ]
        last = message["messageId"]
        await acknowledge(http, session, last)
    assert kinds == ["JobAssigned", "JobStarted", "JobCompleted:succeeded"]
    removed = await tenant.call("DELETE", f"_apis/distributedtask/pools/0/agents/{runner['id']}")
    assert (removed.status_code, removed.json()["typeName"]) == (404, "AgentNotFoundException")
    stats = (await http.get(f"{server.url}/_sim/stats")).json()
    assert stats["actions_service"]["operations"]["broker/get-message"]["requests"] >= 2
    assert "broker/get-message" not in stats["operations"]  # counted apart from REST


async def test_a_held_poll_wakes_when_a_message_arrives(
    sim_options: SimulatorOptions,
) -> None:
    async with (
        SimulatorServer(with_world(sim_options, scale_set_poll_hold=600)) as live,
        httpx.AsyncClient(timeout=60) as http,
    ):
        await http.post(f"{live.url}/_sim/repos", json={"repo": "acme/app"})
        tenant = await connect(http, live.url)
        scale_set = await create_scale_set(tenant, "rs", [])
        session = (await open_session(tenant, scale_set["id"])).json()
        held = asyncio.create_task(poll(http, session))  # held for 600 s unless woken
        asked = live.simulator.actions_stats.requests
        while asked["broker/get-message"] == 0:
            await asyncio.sleep(0.01)
        await http.post(
            f"{live.url}/_sim/jobs", json={"repo": "acme/app", "labels": ["rs"], "duration": 1}
        )
        assert (await held).status_code == 200


async def test_settings_change_at_run_time_and_unknown_ones_are_named(
    server: SimulatorServer, http: httpx.AsyncClient
) -> None:
    changed = await http.post(
        f"{server.url}/_sim/settings", json={"zero_capacity_is_forever": False}
    )
    assert changed.json()["zero_capacity_is_forever"] is False
    assert server.simulator.world.settings.zero_capacity_is_forever is False
    unknown = await http.post(f"{server.url}/_sim/settings", json={"poll_hold": 1})
    assert unknown.status_code == 422
    assert "poll_hold" in unknown.json()["message"]
    wrong = await http.post(f"{server.url}/_sim/settings", json={"scale_set_poll_hold": "x"})
    assert wrong.status_code == 422


async def test_removing_a_busy_scale_set_runner_is_job_still_running(
    server: SimulatorServer, tenant: Tenant
) -> None:
    http = tenant.http
    scale_set = await create_scale_set(tenant, "rs", [])
    jit = await tenant.call(
        "POST", f"{SCALE_SETS}/{scale_set['id']}/generatejitconfig", json={"name": "busy-1"}
    )
    config = decode(jit.json()["encodedJITConfig"])
    await http.post(
        f"{server.url}/_sim/jobs", json={"repo": "acme/app", "labels": ["rs"], "duration": 60}
    )
    runner_auth = {"Authorization": f"Bearer {config.credential}"}
    await http.post(f"{server.url}/_sim/runner/connect", headers=runner_auth)
    taken = await http.get(f"{server.url}/_sim/runner/job", headers=runner_auth)
    assert taken.json()["job"] is not None
    refused = await tenant.call(
        "DELETE", f"_apis/distributedtask/pools/0/agents/{config.runner_id}"
    )
    assert (refused.status_code, refused.json()["typeName"]) == (400, "JobStillRunningException")
