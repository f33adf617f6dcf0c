"""The status page the control API serves at ``/``: self-contained, under a policy that lets
only its own style and script run, and served like the rest of the control API (to the
operator, never to a browser straight)."""

from __future__ import annotations

import re
from pathlib import Path

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.statuspage import HEADERS, PAGE
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
