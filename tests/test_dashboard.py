"""``runnerscale dashboard``: the status page for a browser, through a read-only relay of the
control API on 127.0.0.1, for holders of its key (issue 13).

In process: the daemon over its real sockets (its control API on the unix socket, or on TCP
with its token), the relay on a loopback port, the simulated GitHub over HTTP. What a browser
sends is sent here by hand (the page itself runs in Chromium in
``tests/e2e/test_status_page.py``).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from runnerscale.dashboard import Dashboard
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.statuspage import HEADERS, PAGE
from tests.e2e.harness import (
    ENV,
    free_port,
    in_process_daemon,
    runnerscale_command,
    start_dashboard_process,
)
from tests.e2e.test_daemon import simulator
from tests.logcapture import daemon_log
from tests.test_control_api import API_TOKEN, configure

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(120)

#: What the control API can change, as a page (or anyone) would ask the relay for it.
CHANGES = [
    ("POST", "/api/v1/pools/linux-x64/scale-up"),
    ("POST", "/api/v1/pools/linux-x64/scale-down"),
    ("DELETE", "/api/v1/runners/rs-linux-x64-someone"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_the_relay_passes_on_the_page_and_the_status_for_its_key_only(
    simulator: SimulatorServer, tmp_path: Path, kind: str
) -> None:
    lines = [f"control: tcp://127.0.0.1:{free_port()}", f"api_token: {API_TOKEN}"]
    config = configure(tmp_path, simulator.url, *(lines if kind == "tcp" else []))
    with daemon_log() as log:
        async with (
            in_process_daemon(config) as daemon,
            Dashboard(daemon.config) as dashboard,
            httpx.AsyncClient(base_url=dashboard.url) as browser,
        ):
            assert dashboard.url.startswith("http://127.0.0.1:")
            assert dashboard.link == f"{dashboard.url}/#key={dashboard.key}"
            assert len(dashboard.key) >= 43  # 32 random bytes

            page = await browser.get("/", headers={"Sec-Fetch-Site": "none"})  # a link opened
            assert page.status_code == 200
            assert page.content == PAGE
            assert page.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
            assert page.headers["cache-control"] == "no-store"

            key = {"Authorization": f"Bearer {dashboard.key}", "Sec-Fetch-Site": "same-origin"}
            status = await browser.get("/api/v1/status", headers=key)
            assert status.status_code == 200
            assert [pool["name"] for pool in status.json()["pools"]] == ["linux-x64"]
            assert "queue_waits" in status.json()
            assert API_TOKEN not in status.text + str(status.headers)

            for given in ({}, {"Authorization": "Bearer not-the-key"}):
                refused = await browser.get("/api/v1/status", headers=given)
                assert refused.status_code == 401
                assert "open the link runnerscale dashboard printed" in refused.json()["message"]
            for method, path in CHANGES:  # not even with the key: nothing changes through it
                answer = await browser.request(method, path, headers=key, json={"count": 1})
                assert answer.status_code == 404, (method, path)
            assert (await browser.post("/api/v1/status", headers=key)).status_code == 405
            assert daemon.store.runners() == []

            listen = await browser.get(f"{daemon.url}/")  # server.listen: no page, but where
            assert listen.status_code == 404
            assert "for the status page runnerscale dashboard" in listen.json()["message"]
    assert dashboard.key not in log.getvalue()
    assert "not-the-key" not in log.getvalue()


@pytest.mark.slow
async def test_the_relay_refuses_other_sites_and_names(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = configure(tmp_path, simulator.url)
    async with (
        in_process_daemon(config) as daemon,
        Dashboard(daemon.config) as dashboard,
        httpx.AsyncClient(base_url=dashboard.url) as browser,
    ):
        key = {"Authorization": f"Bearer {dashboard.key}"}
        port = dashboard.url.rsplit(":", 1)[1]
        own = f"http://127.0.0.1:{port}"
        assert (await browser.get("/api/v1/status", headers={**key, "Origin": own})).is_success
        localhost = {**key, "Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
        assert (await browser.get("/api/v1/status", headers=localhost)).is_success
        for path in ("/", "/api/v1/status"):
            for headers in (
                {"Sec-Fetch-Site": "cross-site"},
                {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1, say
                {"Origin": "http://127.0.0.1:1"},
                {"Origin": "null"},
            ):
                answer = await browser.get(path, headers={**key, **headers})
                assert answer.status_code == 403, (path, headers)
                assert "its own page only" in answer.json()["message"]
            rebound = await browser.get(path, headers={**key, "Host": f"evil.example:{port}"})
            assert rebound.status_code == 403
            assert "DNS rebinding" in rebound.json()["message"]


async def test_a_daemon_that_does_not_answer_is_said_so_on_the_page(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = configure(tmp_path, simulator.url)
    async with in_process_daemon(config) as daemon:
        relay = Dashboard(daemon.config)
    socket = tmp_path / "state" / "control.sock"
    async with relay as dashboard, httpx.AsyncClient(base_url=dashboard.url) as browser:
        key = {"Authorization": f"Bearer {dashboard.key}"}
        status = await browser.get("/api/v1/status", headers=key)
        assert status.status_code == 502
        said = status.json()["message"]
        assert said == (
            f"cannot reach the daemon: its control socket {socket} is not there; is "
            "`runnerscale run` running with this config?"
        )
        page = await browser.get("/")
        assert (page.status_code, page.text) == (502, said)


@pytest.mark.slow
async def test_the_command_prints_its_link_and_ends_with_0_on_ctrl_c(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = configure(tmp_path, simulator.url)
    log = tmp_path / "dashboard.log"
    async with in_process_daemon(config):
        process, link = await start_dashboard_process(config, log)
        try:
            url, _, key = link.partition("/#key=")
            assert url.startswith("http://127.0.0.1:"), link
            async with httpx.AsyncClient(base_url=url) as browser:
                bearer = {"Authorization": f"Bearer {key}"}
                assert (await browser.get("/api/v1/status", headers=bearer)).is_success
                assert (await browser.get("/api/v1/status")).status_code == 401
        finally:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            async with asyncio.timeout(30):
                code = await process.wait()
    said = log.read_text()
    assert code == 0, said
    port = url.rsplit(":", 1)[1]
    assert f"ssh -L {port}:127.0.0.1:{port} THIS-HOST" in " ".join(said.split())
    assert key not in said


@pytest.mark.slow
async def test_the_command_says_why_it_cannot_start(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # A TCP control API whose token file was never made (no daemon ran): nothing to relay with.
    config = configure(tmp_path, simulator.url, f"control: tcp://127.0.0.1:{free_port()}")
    code, output = await runnerscale_command(
        "dashboard", "-c", str(config), env={**ENV, "HOME": str(tmp_path)}
    )
    assert code == 1, output
    assert "api-token" in output
    assert "Traceback" not in output
    # No daemon on the socket: said at once, instead of a link to a page that would say it.
    config = configure(tmp_path / "no-daemon", simulator.url)
    code, output = await runnerscale_command(
        "dashboard", "-c", str(config), env={**ENV, "HOME": str(tmp_path)}
    )
    assert code == 1, output
    assert "cannot reach the daemon" in output
    assert "#key=" not in output
