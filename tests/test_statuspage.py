"""The status page the control API serves at ``/``: self-contained, under a policy that lets
only its own style and script run, and served like the rest of the control API (to the
operator, never to a browser straight)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.controller.loops import NodeStatus, PoolStatus, Status
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.httpserve import LoopbackServer
from runnerscale.statuspage import HEADERS, PAGE
from runnerscale.statusview import node_lines
from tests.chromium import headless
from tests.e2e.control import control_client
from tests.e2e.harness import in_process_daemon
from tests.e2e.test_daemon import simulator
from tests.test_control_api import configure

__all__ = ["simulator"]  # a fixture, imported


def test_the_page_loads_nothing_from_elsewhere_and_allows_only_its_own_script() -> None:
    html = PAGE.decode()
    # The only URL in it is SVG's namespace, a name that is never fetched.
    assert set(re.findall(r"[a-z]+://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "innerHTML" not in html
    policy = HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'$", policy.split(";")[1].strip())
    assert "unsafe" not in policy


async def test_the_control_api_serves_it_to_the_operator_and_not_to_a_browser(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = configure(tmp_path, simulator.url)
    async with in_process_daemon(config) as daemon, control_client(daemon) as control:
        page = await control.get("/")  # as curl --unix-socket STATE_DIR/control.sock would
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.content == PAGE
        for name, value in HEADERS.items():
            assert page.headers[name] == value
        browser = await control.get("/", headers={"Sec-Fetch-Site": "none"})
        assert browser.status_code == 403
        assert "runnerscale dashboard" in browser.json()["message"]


#: A pool over two hosts, one up and one down for 5 minutes, as the status API answers.
NODES_STATUS = asdict(
    Status(
        pools=[
            PoolStatus(
                name="vps",
                max_runners=12,
                min_idle=0,
                busy=2,
                nodes=[
                    NodeStatus("node1.example.net", up=True, slots=4, labels=(), runners=2),
                    NodeStatus(
                        "10.0.0.12:2222",
                        up=False,
                        slots=2,
                        labels=("deploy",),
                        reason="cannot connect: Connection refused",
                        since=1_000.0,
                        runners=1,
                    ),
                ],
            )
        ],
        updated_at=1_300.0,
    )
)

NODE_ROWS = """(() => {
  const rows = [...document.querySelectorAll("#nodes tbody tr")];
  if (rows.length === 0) return null;
  return {
    hidden: document.getElementById("nodes").hidden,
    rows: rows.map((row) => [...row.children].map((cell) => cell.textContent)),
    up: rows.map((row) => row.dataset.up),
  };
})()"""


@pytest.mark.chromium
async def test_the_page_shows_each_nodes_state_as_runnerscale_status_does(tmp_path: Path) -> None:
    async def page(request: Request) -> Response:
        return Response(PAGE, media_type="text/html", headers=HEADERS)

    async def status(request: Request) -> Response:
        return JSONResponse(NODES_STATUS)

    app = Starlette(routes=[Route("/", page), Route("/api/v1/status", status)])
    async with (
        LoopbackServer(app) as server,
        headless(tmp_path / "profile", tmp_path / "chromium.log") as browser,
    ):
        tab = await browser.open(f"{server.url}/")
        shown = None
        for _ in range(200):
            shown = await tab.evaluate(NODE_ROWS)
            if shown is not None:
                break
            await asyncio.sleep(0.05)
    assert shown is not None, "the page showed no node"
    assert shown["hidden"] is False
    assert shown["rows"] == [
        ["vps", "node1.example.net", "", "up", "2 runners on 4 slots", ""],
        [
            "vps",
            "10.0.0.12:2222",
            "deploy",
            "down for 5m 00s",
            "1 runner",
            "cannot connect: Connection refused",
        ],
    ]
    assert shown["up"] == ["true", "false"]
    # The command line says the same of them.
    assert node_lines(NODES_STATUS["pools"], 1_300.0) == [
        "pool vps: node node1.example.net: up, 2 runners on 4 slots",
        "pool vps: node 10.0.0.12:2222 (deploy): down for 5m 00s: cannot connect: Connection "
        "refused; 1 runner",
    ]
