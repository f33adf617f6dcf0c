"""The scale-set client against fake-github over real HTTP: the auth chain at the root and at
/api/v3, ensure/create/update, sessions, the 202 after a short hold, a JIT config run by the
stand-in runner, the job events, queue-token expiry, a dropped session, the 409 wait, and the
scale set deleted (gone, then re-created)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.runner import StandInRunner
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings
from runnerscale.github.client import GitHubClient
from runnerscale.github.scaleset import ScaleSetClient
from runnerscale.model import Target
from runnerscale.protocols import DeleteOutcome
from runnerscale.scaleset_api import ScaleSetEventKind, ScaleSetGoneError, ScaleSetSpec
from tests.contract.scaleset_shapes import definitions, fixtures, request_problems, resolve

TOKEN = "ghp_simulator_test_token"
#: The scale set's name and the capacity the contract fixtures' requests use (literals there).
NAME, CAPACITY = "runnerscale-x64", 10


class Recorder:
    """The client's requests, as sent (method, URL, headers, JSON body)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    async def __call__(self, request: httpx.Request) -> None:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.method, str(request.url), dict(request.headers), body))

    def problems(self) -> dict[str, list[str]]:
        """Each recorded request to the Actions service checked against the contract fixtures'
        steps of its method and path: the problems of the closest step, by request; a request
        no step describes is a problem too."""
        defs = definitions()
        steps = [
            resolve(step["request"], defs)
            for _, fixture in fixtures()
            for step in fixture["steps"]
            if "request" in step  # (the others drive the simulator)
        ]
        found: dict[str, list[str]] = {}
        for method, sent_url, headers, body in self.sent:
            url, where = sent_url, f"{method} {sent_url.split('?', 1)[0]}"
            if "/actions/runners/registration-token" in url:
                continue  # REST, checked by the REST contract
            if method == "GET" and "/messages" in url and "lastMessageId=" not in url:
                # The first poll names no message: the Go client omits lastMessageId when it
                # is 0 (session_client.go getMessage), the fixtures write it out as 0.
                url += "&lastMessageId=0" if "?" in url else "?lastMessageId=0"
            verdicts = [request_problems(step, method, url, headers, body) for step in steps]
            same_route = [
                v for v in verdicts if not any(p.startswith(("method:", "url:")) for p in v)
            ]
            if not same_route:
                found[where] = ["no fixture step describes this request"]
            elif all(same_route):
                found[where] = min(same_route, key=len)
        return found


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(scale_set_poll_hold=0.3))
    async with SimulatorServer(options) as live:
        async with httpx.AsyncClient() as http:
            await http.post(f"{live.url}/_sim/repos", json={"repo": "acme/app"})
        yield live


@pytest.fixture
async def recorded() -> AsyncIterator[httpx.AsyncClient]:
    """The client's HTTP client, recording what it sends (``.recorder``)."""
    recorder = Recorder()
    async with httpx.AsyncClient(event_hooks={"request": [recorder]}) as http:
        http.recorder = recorder  # type: ignore[attr-defined]
        yield http


@pytest.mark.parametrize("suffix", ["", "/api/v3"])
async def test_the_client_serves_a_job_end_to_end(
    server: SimulatorServer, recorded: httpx.AsyncClient, suffix: str
) -> None:
    github = GitHubClient(server.url + suffix, TOKEN, clock=server.clock.now)
    recorder: Recorder = recorded.recorder  # type: ignore[attr-defined]
    client = ScaleSetClient(github, Target("org", "acme"), clock=server.clock, http=recorded)
    scale_set = await client.ensure_scale_set(ScaleSetSpec(NAME, labels=("linux",)))
    again = await client.ensure_scale_set(ScaleSetSpec(NAME, labels=("linux", "x64")))
    assert again.id == scale_set.id
    assert "x64" in again.labels
    session = await client.open_session(again, "ctl-1")
    assert await session.next_message(0, CAPACITY) is None
    jit = await client.generate_jitconfig(again, "rs-runner-1")
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{server.url}/_sim/jobs",
            json={"repo": "acme/app", "labels": [NAME, "linux"], "duration": 0},
        )
    stand_in = StandInRunner(decode(jit.encoded), long_poll_seconds=5)
    assert await stand_in.run() == 0
    kinds = []
    last = 0
    while (message := await session.next_message(last, CAPACITY)) is not None:
        kinds += [e.kind for e in message.events]
        last = message.message_id
        await session.acknowledge(last)
    assert kinds == [
        ScaleSetEventKind.JOB_ASSIGNED,
        ScaleSetEventKind.JOB_STARTED,
        ScaleSetEventKind.JOB_COMPLETED,
    ]
    assert await client.remove_runner(jit.runner_id) is DeleteOutcome.GONE
    await session.close()
    session2 = await client.open_session(again, "ctl-2")
    await client.delete_scale_set(again.id)
    with pytest.raises(ScaleSetGoneError):
        await session2.next_message(last, CAPACITY)
    await session2.close()
    await client.close()
    assert recorder.sent
    problems = recorder.problems()
    assert problems == {}


@pytest.mark.slow
async def test_expiry_drops_conflicts_and_a_deleted_scale_set(server: SimulatorServer) -> None:
    github = GitHubClient(server.url, TOKEN, clock=server.clock.now)
    client = ScaleSetClient(github, Target("org", "acme"), clock=server.clock)
    scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
    session = await client.open_session(scale_set, "ctl-1")
    async with httpx.AsyncClient() as http:
        await http.post(f"{server.url}/_sim/scale-sets/expire-queue-tokens")
        assert await session.next_message(0, 3) is None
        await http.post(f"{server.url}/_sim/scale-sets/drop-sessions")
        old = session.session_id
        assert await session.next_message(0, 3) is None
        assert session.session_id != old
        # a conflicting second session: waits, then opens once the first closes
        waiter = asyncio.create_task(client.open_session(scale_set, "ctl-2"))
        await asyncio.sleep(1.5)  # past the first 1 s backoff: it has met a 409
        assert not waiter.done()
        await session.close()
        second = await asyncio.wait_for(waiter, 10)
        await http.delete(f"{server.url}/_sim/scale-sets/{scale_set.id}")
        with pytest.raises(ScaleSetGoneError):
            await second.next_message(0, 3)
        again = await client.ensure_scale_set(ScaleSetSpec("rs"))
        assert again.id != scale_set.id
    await client.close()
