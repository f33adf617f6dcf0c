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

from runnerscale.controller.loops import (
    DrainingRunner,
    NodeStatus,
    PoolStatus,
    ScaleSetStatus,
    Status,
)
from runnerscale.controller.pooldrain import DrainStatus
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.httpserve import LoopbackServer
from runnerscale.statuspage import HEADERS, PAGE
from runnerscale.statusview import (
    draining_lines,
    node_lines,
    scale_set_lines,
    spend_lines,
    waiting_lines,
)
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


def section_rows(section: str, data: str) -> str:
    """A script reading a section's table from the page (null while it has no row): whether
    the section is hidden, each row's cells, and each row's ``data-`` attribute ``data``."""
    return f"""(() => {{
  const rows = [...document.querySelectorAll("#{section} tbody tr")];
  if (rows.length === 0) return null;
  return {{
    hidden: document.getElementById("{section}").hidden,
    rows: rows.map((row) => [...row.children].map((cell) => cell.textContent)),
    data: rows.map((row) => row.dataset.{data}),
  }};
}})()"""


async def shown_section(
    tmp_path: Path, body: dict[str, object], section: str, data: str
) -> dict[str, list[object]]:
    """The section's table as the page shows it (:func:`section_rows`), which must be shown."""
    shown = await shown_on_the_page(tmp_path, body, section_rows(section, data))
    assert isinstance(shown, dict)
    assert shown["hidden"] is False
    return shown


@pytest.mark.chromium
async def test_the_page_shows_each_nodes_state_as_runnerscale_status_does(tmp_path: Path) -> None:
    shown = await shown_section(tmp_path, NODES_STATUS, "nodes", "up")
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
    assert shown["data"] == ["true", "false"]  # data-up
    # The command line says the same of them.
    assert node_lines(NODES_STATUS["pools"], 1_300.0) == [
        "pool vps: node node1.example.net: up, 2 runners on 4 slots",
        "pool vps: node 10.0.0.12:2222 (deploy): down for 5m 00s: cannot connect: Connection "
        "refused; 1 runner",
    ]


#: A pool of EC2 runners whose budget is spent (its launches held back) and two of whose
#: instances drain, and a pool without prices, as the status API answers.
SPEND_STATUS = asdict(
    Status(
        pools=[
            PoolStatus(
                name="ec2-x64",
                max_runners=50,
                min_idle=0,
                busy=2,
                queued=3,
                held_back=3,
                held_back_by="budget",
                spend_today=50.4,
                cost_total=130.25,
                budget_per_day=50.0,
                draining=[
                    DrainingRunner("rs-ec2-a", "busy", "spot interruption notice"),
                    DrainingRunner("rs-ec2-b", "idle", "spot rebalance recommendation"),
                ],
            ),
            PoolStatus(
                name="ec2-arm",
                max_runners=4,
                min_idle=0,
                spend_today=1.5,
                cost_total=2.0,
                budget_per_day=10.0,
            ),
            PoolStatus(name="linux", max_runners=4, min_idle=0),
        ],
        updated_at=1_300.0,
    )
)

SPEND_ROWS = """(() => {
  const rows = (id) => [...document.querySelectorAll("#" + id + " tbody tr")];
  if (rows("spend").length === 0) return null;
  const cells = (row) => [...row.children].map((cell) => cell.textContent);
  return {
    hidden: [document.getElementById("spend").hidden, document.getElementById("draining").hidden],
    spend: rows("spend").map(cells),
    heldBackBy: rows("spend").map((row) => row.dataset.heldBackBy),
    over: document.querySelectorAll("#spend .bar .spent.over").length,
    draining: rows("draining").map(cells),
  };
})()"""


async def shown_on_the_page(tmp_path: Path, body: dict[str, object], script: str) -> object:
    """What ``script`` reads from the page once it is not null, the status API answering
    ``body``."""

    async def page(request: Request) -> Response:
        return Response(PAGE, media_type="text/html", headers=HEADERS)

    async def status(request: Request) -> Response:
        return JSONResponse(body)

    app = Starlette(routes=[Route("/", page), Route("/api/v1/status", status)])
    async with (
        LoopbackServer(app) as server,
        headless(tmp_path / "profile", tmp_path / "chromium.log") as browser,
    ):
        tab = await browser.open(f"{server.url}/")
        for _ in range(200):
            shown = await tab.evaluate(script)
            if shown is not None:
                return shown
            await asyncio.sleep(0.05)
    raise AssertionError("the page never showed it")


@pytest.mark.chromium
async def test_the_page_shows_spend_against_the_budget_and_draining_runners(
    tmp_path: Path,
) -> None:
    shown = await shown_on_the_page(tmp_path, SPEND_STATUS, SPEND_ROWS)
    assert isinstance(shown, dict)
    assert shown["hidden"] == [False, False]
    assert shown["spend"] == [
        [
            "ec2-x64",
            "$50.40 of $50.00",
            "$50.00",
            "$130.25",
            "3 runners held back by the budget, until the next day (UTC)",
        ],
        ["ec2-arm", "$1.50 of $10.00", "$10.00", "$2.00", "not held back"],
    ]  # (a pool with no price and no budget has no row)
    assert shown["heldBackBy"] == ["budget", ""]
    assert shown["over"] == 1
    assert shown["draining"] == [
        [
            "ec2-x64",
            "rs-ec2-a",
            "spot interruption notice",
            "it finishes its job and takes no other",
        ],
        ["ec2-x64", "rs-ec2-b", "spot rebalance recommendation", "idle, being removed"],
    ]
    # The command line says the same of them.
    pools = SPEND_STATUS["pools"]
    assert spend_lines(pools) == [
        "pool ec2-x64: $50.40 spent today (UTC) of a budget of $50.00 a day; $130.25 in all",
        "pool ec2-arm: $1.50 spent today (UTC) of a budget of $10.00 a day; $2.00 in all",
    ]
    assert draining_lines(pools) == [
        "pool ec2-x64: runner rs-ec2-a drains (spot interruption notice): it finishes its job "
        "and takes no other",
        "pool ec2-x64: runner rs-ec2-b drains (spot rebalance recommendation): idle, being removed",
    ]


#: A pool an operator drained, its busy runners finishing, and one in service.
DRAINED_STATUS = asdict(
    Status(
        pools=[
            PoolStatus(
                name="linux",
                max_runners=4,
                min_idle=0,
                busy=1,
                drain=DrainStatus(1_000.0, 1, 0, False, "draining: 1 busy runner left"),
            ),
            PoolStatus(name="gpu", max_runners=2, min_idle=0),
        ],
        updated_at=1_300.0,
    )
)

DRAINED_ROWS = """(() => {
  const rows = [...document.querySelectorAll("#pools tbody tr[data-pool]")];
  if (rows.length === 0) return null;
  return rows.map((row) => row.children[0].textContent);
})()"""


@pytest.mark.chromium
async def test_the_page_shows_a_drained_pool_and_how_far_its_drain_is(tmp_path: Path) -> None:
    shown = await shown_on_the_page(tmp_path, DRAINED_STATUS, DRAINED_ROWS)
    assert shown == ["linux draining: 1 busy runner left", "gpu"]


#: Two scale-set pools, one listening and one whose session failed before the listener found
#: its scale set, and a webhook pool, as the status API answers.
SCALE_SET_STATUS = asdict(
    Status(
        pools=[
            PoolStatus(
                name="linux",
                max_runners=10,
                min_idle=0,
                scale_set=ScaleSetStatus("rs-linux", 7, assigned_jobs=3, session="open"),
            ),
            PoolStatus(
                name="gpu",
                max_runners=2,
                min_idle=0,
                scale_set=ScaleSetStatus(
                    "rs-gpu",
                    None,
                    assigned_jobs=0,
                    session="backing off",
                    last_error="session conflict: another listener holds it",
                ),
            ),
            PoolStatus(name="webhooks", max_runners=4, min_idle=0),
        ],
        updated_at=1_300.0,
    )
)


@pytest.mark.chromium
async def test_the_page_shows_each_scale_set_as_runnerscale_status_does(tmp_path: Path) -> None:
    shown = await shown_section(tmp_path, SCALE_SET_STATUS, "scale-sets", "session")
    assert shown["rows"] == [
        ["linux", "rs-linux (id 7)", "3", "open", ""],
        ["gpu", "rs-gpu", "0", "backing off", "session conflict: another listener holds it"],
    ]  # (a webhook pool has no row)
    assert shown["data"] == ["open", "backing off"]  # data-session
    # The command line says the same of them.
    assert scale_set_lines(SCALE_SET_STATUS["pools"]) == [
        "pool linux: scale set rs-linux (id 7): 3 jobs assigned; session open",
        "pool gpu: scale set rs-gpu: 0 jobs assigned; session backing off (last error: session "
        "conflict: another listener holds it)",
    ]


#: A pool whose runners wait to be created (GitHub's registration budget is spent; one more
#: waits for a creation slot) beside one where none waits, as the status API answers (every
#: kind is counted, 0 included).
WAITING_STATUS = asdict(
    Status(
        [
            PoolStatus(
                "linux",
                10,
                0,
                desired=7,
                booting=5,
                busy=2,
                queued=4,
                reason="creates 4 runners for 4 queued jobs",
                waiting={"registration_budget": 3, "create_slot": 1},
            ),
            PoolStatus(
                "gpu", 2, 0, booting=1, waiting={"registration_budget": 0, "create_slot": 0}
            ),
        ],
        updated_at=1_300.0,
    )
)

WAITING_ROWS = """(() => {
  const rows = [...document.querySelectorAll("#pools tbody tr[data-pool]")];
  if (rows.length === 0) return null;
  return rows.map((row) => {
    const cell = row.querySelector('[data-field="waiting"]');
    const said = row.nextElementSibling.querySelector(".waiting");
    return {
      booting: row.querySelector('[data-field="booting"]').textContent,
      waiting: cell.textContent,
      for: cell.dataset.waitingFor,
      title: cell.title,
      bar: [...row.querySelectorAll(".bar span")].map((part) => part.title),
      said: said ? said.textContent : null,
    };
  });
})()"""


@pytest.mark.chromium
async def test_the_page_shows_the_runners_waiting_to_be_created_and_why(tmp_path: Path) -> None:
    shown = await shown_on_the_page(tmp_path, WAITING_STATUS, WAITING_ROWS)
    said = (
        "runners waiting to be created: 3 for GitHub's runner registration budget to reset, "
        "1 for a free creation slot"
    )
    assert shown == [
        {
            "booting": "5",  # the waiting ones are counted in booting, as everywhere
            "waiting": "4",
            "for": "registration_budget create_slot",
            "title": said,
            "bar": ["busy: 2", "idle: 0", "booting: 1", "waiting: 4"],
            "said": said,
        },
        {
            "booting": "1",
            "waiting": "0",
            "for": "",
            "title": "",
            "bar": ["busy: 0", "idle: 0", "booting: 1", "waiting: 0"],
            "said": None,
        },
    ]
    # The command line says the same of them.
    assert waiting_lines(WAITING_STATUS["pools"]) == [f"pool linux: {said}"]
