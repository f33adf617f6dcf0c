"""The simulator's scale-set answers checked against the contract fixtures
(``tests/contract/scaleset/*.json``), over real HTTP on loopback.

Each fixture is a flow of steps (a fixture may first run the one it ``requires``): a request
as the Go client sends it, with ``{name}`` placeholders filled from earlier answers, and the
expected status and body shape (:mod:`tests.contract.scaleset_shapes`); ``sim`` steps act on
the simulator's control API (queue a job, expire tokens, delete a scale set).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings
from tests.contract.scaleset_shapes import (
    check,
    definitions,
    fixtures,
    pick,
    request_problems,
    resolve,
)

PAT = "ghp_contract_token"
FIXTURES = dict(fixtures())
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: Any, context: dict[str, Any]) -> Any:
    """Placeholders replaced from ``context``; a string that is one placeholder takes the
    saved value's own type (an id stays an int)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return context[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(context[m.group(1)]), template)
    if isinstance(template, list):
        return [fill(item, context) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, context) for key, value in template.items()}
    return template


def flow(name: str) -> list[dict[str, Any]]:
    """A fixture's steps after those of the fixture it requires."""
    fixture = FIXTURES[name]
    before = flow(fixture["requires"]) if "requires" in fixture else []
    return [*before, *fixture["steps"]]


async def send(http: httpx.AsyncClient, request: dict[str, Any]) -> httpx.Response:
    url = httpx.URL(request["url"])
    if "path_suffix" in request:
        url = url.copy_with(path=url.path + request["path_suffix"])
    url = url.copy_merge_params(request.get("query", {}))
    return await http.request(
        request["method"],
        url,
        headers=request.get("headers", {}),
        json=request.get("body"),
    )


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    options = SimulatorOptions(tokens=(PAT,), world=WorldSettings(scale_set_poll_hold=0.2))
    async with SimulatorServer(options) as live:
        yield live


@pytest.mark.parametrize("name", sorted(FIXTURES))
async def test_the_simulator_answers_as_the_fixture_says(
    server: SimulatorServer, name: str
) -> None:
    defs = definitions()
    context: dict[str, Any] = {"base": server.url, "pat": PAT}
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"{server.url}/_sim/repos", json={"repo": "acme/app"})
        for index, step in enumerate(flow(name)):
            if "sim" in step:
                sim = fill(step["sim"], context)
                done = await http.request(
                    sim["method"], server.url + sim["path"], json=sim.get("body")
                )
                assert done.status_code < 300, f"step {index}: {done.text}"
                continue
            template = resolve(step["request"], defs)
            request = fill(template, context)
            answer = await send(http, request)
            sent = answer.request
            sent_body = json.loads(sent.content) if sent.content else None
            # The checker the client's tests use passes the fixture's own requests.
            problems = request_problems(
                template, sent.method, str(sent.url), dict(sent.headers), sent_body
            )
            assert problems == [], f"step {index}"
            expected = step["response"]
            assert answer.status_code == expected["status"], f"step {index}: {answer.text}"
            if "body" in expected:
                shape = fill(resolve(expected["body"], defs), context)
                assert check(shape, answer.json()) == [], f"step {index}"
            for key, path in step.get("save", {}).items():
                context[key] = pick(answer.json(), path)


def test_every_fixture_names_its_source() -> None:
    for name, fixture in FIXTURES.items():
        assert fixture.get("source"), f"{name}.json names no source"
        assert fixture.get("steps"), f"{name}.json has no steps"


def test_the_checker_refuses_an_envelope_whose_body_is_not_a_string() -> None:
    shape = resolve(
        {"messageId": "$int", "body": {"$json": {"$each": {"$def": "jobMessageBase"}}}},
        definitions(),
    )
    assert check(shape, {"messageId": 1, "body": []}) == [
        "$.body: expected a JSON string, got list"
    ]
    assert check(shape, {"messageId": "1", "body": "[]"}) == ["$.messageId: expected $int, got '1'"]
    assert check(shape, {"messageId": 1, "body": '[{"jobId": 7}]'})  # jobId is a string


def test_the_request_checker_names_what_differs() -> None:
    template = resolve(FIXTURES["session-conflict-409"]["steps"][0]["request"], definitions())
    problems = request_problems(
        template,
        "PUT",
        "http://h/_services/pipelines/tenant-1/_apis/runtime/runnerscalesets/7/session",
        {"Authorization": "token x"},
        {"owner": "x"},
    )
    assert problems == [
        "method: expected POST, sent PUT",
        "url: http://h/_services/pipelines/tenant-1/_apis/runtime/runnerscalesets/7/session "
        "does not match {tenant}_apis/runtime/runnerscalesets/{scale_set_id}/sessions",
        "query: api-version missing",
        "header: Authorization does not match Bearer {admin_token}",
        "body.ownerName: missing",
    ]
