"""The control API lets in the operator only (issue 12, requirement 2).

The finding: as the unprivileged user ``nobody``, the status API was readable and scale-up,
scale-down and ``DELETE /api/v1/runners/NAME`` worked on ``server.listen``, and a
``text/plain`` POST with a foreign ``Origin`` and ``Host`` was taken, so any web page the
operator opened could scale the fleet. Now the control API is on a unix socket only the
daemon's user (and root) may open, or on a TCP listener that wants the bearer token, and
refuses what a browser sends; the webhook stays open (signed), ``/metrics`` and the health
endpoints are open by default and can be closed.

In process: the daemon over its real sockets, the simulated GitHub over HTTP. ``nobody``'s
requests run as ``nobody`` (``runuser``, the system's python3 with the standard library
only: the project's interpreter is under root's home), and its ``runnerscale status`` with
the right to read (not write) any file, so that it can start at all; the operator's through
the ``runnerscale`` command, as root, in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.config import load_config
from runnerscale.daemon import Daemon, StartupError
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.github.webhooks import sign
from tests.e2e.harness import (
    ENV,
    WEBHOOK_SECRET,
    free_port,
    in_process_daemon,
    runnerscale_command,
    write_config,
)
from tests.e2e.test_daemon import simulator
from tests.logcapture import daemon_log

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(120)

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="runs requests as the user nobody: the tests must run as root"
)

API_TOKEN = "rs-test-api-token-0123456789abcdef"
#: Every endpoint of the control API, as the finding used them.
CONTROL = [
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/pools/linux-x64/scale-up"),
    ("POST", "/api/v1/pools/linux-x64/scale-down"),
    ("DELETE", "/api/v1/runners/rs-linux-x64-someone"),
]
#: What ``nobody`` runs: one request over a unix socket or TCP; prints its uid and the
#: status, or the error (EACCES) that stopped it.
AS_NOBODY = r"""
import errno, http.client, json, os, socket, sys
kind, where, method, path, headers = sys.argv[1:6]
said = {"uid": os.geteuid()}
try:
    if kind == "unix":
        connection = http.client.HTTPConnection("localhost", timeout=10)
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.connect(where)
    else:
        host, port = where.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = b'{"count": 1}' if method == "POST" else None
    connection.request(method, path, body=body, headers=json.loads(headers))
    said["status"] = connection.getresponse().status
except OSError as error:
    said["error"] = errno.errorcode.get(error.errno, str(error))
print(json.dumps(said))
"""


async def as_nobody(
    kind: str, where: str, method: str, path: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One request sent by the user ``nobody``: its status, or the error that stopped it."""
    given = {"Content-Type": "application/json", **(headers or {})}
    process = await asyncio.create_subprocess_exec(
        *("runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", AS_NOBODY),
        *(kind, where, method, path, json.dumps(given)),
        stdout=asyncio.subprocess.PIPE,
        cwd="/",
    )
    output, _ = await process.communicate()
    said: dict[str, Any] = json.loads(output)
    assert said.pop("uid") == 65534, "not nobody"
    return said


async def command_as_nobody(*arguments: str, env: Mapping[str, str]) -> tuple[int, str]:
    """``runnerscale ARGUMENTS`` as the user ``nobody``, allowed to read (not write) any file
    so that it can run the project's interpreter from under root's home at all."""
    process = await asyncio.create_subprocess_exec(
        *("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
        *("--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"),
        *(sys.executable, "-m", "runnerscale", *arguments),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env},
        cwd="/",
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, " ".join(output.decode().split())


def configure(directory: Path, api_url: str, *server: str, port: int | None = None) -> Path:
    """The e2e config (one local pool, polling off) with these lines in its ``server:``."""
    directory.mkdir(exist_ok=True)
    config = write_config(directory, api_url, port=port, poll_interval="1h")
    text = config.read_text()
    config.write_text(text.replace("server:\n", "server:\n" + "".join(f"  {s}\n" for s in server)))
    return config


def listen_port(daemon: Daemon) -> int:
    return daemon.http.public.port


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may pass through (0755; tmp_path's parents are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="rs-control-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.slow
@as_root
@pytest.mark.parametrize("where", ["the state directory", "an open folder"])
async def test_nobody_is_refused_by_the_socket_and_finds_no_control_api_on_the_port(
    simulator: SimulatorServer, tmp_path: Path, open_folder: Path, where: str
) -> None:
    socket = (
        tmp_path / "state" / "control.sock"
        if where == "the state directory"
        else open_folder / "control.sock"
    )
    lines = [] if where == "the state directory" else [f"control: unix://{socket}"]
    config = configure(tmp_path, simulator.url, *lines)
    async with in_process_daemon(config) as daemon:
        info = socket.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0)
        public = f"127.0.0.1:{listen_port(daemon)}"
        for method, path in CONTROL:
            # The socket's mode (and in the state directory, its folder's) keeps nobody out.
            assert await as_nobody("unix", str(socket), method, path) == {"error": "EACCES"}
            # The public listener serves no control API (it used to: 200, runners made).
            assert await as_nobody("tcp", public, method, path) == {"status": 404}
        assert daemon.store.runners() == []

        # nobody's command line is turned away by the socket and says so.
        env = {**ENV, "HOME": str(tmp_path)}
        readable = open_folder / "runnerscale.yaml"  # (the check of -c uses access(2))
        shutil.copy(config, readable)
        readable.chmod(0o644)
        for command in (["status"], ["scale", "up", "--pool", "linux-x64"]):
            code, output = await command_as_nobody(*command, "-c", str(readable), env=env)
            assert code == 1, output
            assert (
                f"permission denied on the daemon's control socket {socket}: run as the "
                "daemon's user or root"
            ) in output
        assert daemon.store.runners() == []

        # The operator's commands, as root, go through the socket.
        code, output = await runnerscale_command("status", "-c", str(config), env=env)
        assert code == 0, output
        assert "linux-x64" in output
        code, output = await runnerscale_command(
            "scale", "down", "-c", str(config), "--pool", "linux-x64", env=env
        )
        assert (code, output.strip()) == (0, "removed 0: none idle")
    assert not socket.exists()  # removed when the daemon stops
    code, output = await runnerscale_command("status", "-c", str(config), env=env)
    assert code == 1
    assert f"its control socket {socket} is not there" in " ".join(output.split())


@pytest.mark.slow
@as_root
async def test_a_tcp_control_listener_wants_the_token_from_its_0600_file(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    config = configure(tmp_path, simulator.url, f"control: tcp://127.0.0.1:{port}")
    token_file = tmp_path / "state" / "api-token"
    with daemon_log() as log:
        async with in_process_daemon(config) as daemon:
            info = token_file.stat()
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0)
            token = token_file.read_text().strip()
            assert len(token) >= 43
            control = f"127.0.0.1:{port}"
            for method, path in CONTROL:
                assert await as_nobody("tcp", control, method, path) == {"status": 401}
                wrong = {"Authorization": "Bearer not-the-token"}
                assert await as_nobody("tcp", control, method, path, wrong) == {"status": 401}
                public = f"127.0.0.1:{listen_port(daemon)}"
                assert await as_nobody("tcp", public, method, path) == {"status": 404}
            assert daemon.store.runners() == []

            # With the token: served (a count of 0 and an unknown runner change nothing).
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=f"http://{control}", headers=headers) as http:
                assert (await http.get("/api/v1/status")).status_code == 200
                up = await http.post("/api/v1/pools/linux-x64/scale-up", json={"count": 0})
                assert up.status_code == 422
                down = await http.post("/api/v1/pools/linux-x64/scale-down", json={})
                assert (down.status_code, down.json()) == (200, {"removed": []})
                gone = await http.delete("/api/v1/runners/rs-linux-x64-someone")
                assert gone.status_code == 404
            # The command line reads the token file.
            env = {**ENV, "HOME": str(tmp_path)}
            code, output = await runnerscale_command("status", "-c", str(config), env=env)
            assert code == 0, output
            assert "linux-x64" in output
    text = log.getvalue()
    assert f"control API on http://{control} (bearer token: {token_file})" in text
    assert token not in text
    assert "refused 127.0.0.1" in text  # the 401s, without what was sent
    assert "not-the-token" not in text

    # A token file others could read is refused, by the daemon and the command line alike.
    token_file.chmod(0o644)
    code, output = await runnerscale_command("status", "-c", str(config), env=env)
    assert code == 1
    assert "open to other users" in output
    with pytest.raises(StartupError, match="open to other users"):
        Daemon.build(load_config(config, env={**ENV, "HOME": str(tmp_path)}))


@pytest.mark.slow
async def test_the_token_may_come_from_the_config_and_the_control_api_share_the_port(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    shared = f"control: tcp://127.0.0.1:{port}"
    config = configure(tmp_path, simulator.url, shared, "api_token: ${RS_API_TOKEN}", port=port)
    env = {"RS_API_TOKEN": API_TOKEN}
    with daemon_log() as log:
        async with in_process_daemon(config, env) as daemon, httpx.AsyncClient() as http:
            assert daemon.http.control is None  # one listener for both
            base = f"http://127.0.0.1:{port}"
            assert daemon.url == base
            assert (await http.get(f"{base}/api/v1/status")).status_code == 401
            bearer = {"Authorization": f"Bearer {API_TOKEN}"}
            assert (await http.get(f"{base}/api/v1/status", headers=bearer)).status_code == 200
            assert (await http.get(f"{base}/healthz")).status_code == 200  # open, as before
            body = b"{}"
            ping = {
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "d-1",
                "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
            }
            answer = await http.post(f"{base}/webhook", content=body, headers=ping)
            assert (answer.status_code, answer.json()) == (200, {"message": "pong"})
            code, output = await runnerscale_command(
                "status", "-c", str(config), env={**ENV, **env, "HOME": str(tmp_path)}
            )
            assert code == 0, output
    assert not (tmp_path / "state" / "api-token").exists()  # none made: the config gives it
    assert API_TOKEN not in log.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_what_a_browser_page_sends_is_refused(
    simulator: SimulatorServer, tmp_path: Path, kind: str
) -> None:
    port = free_port()
    tcp = [f"control: tcp://127.0.0.1:{port}", f"api_token: {API_TOKEN}"]
    lines = tcp if kind == "tcp" else []
    config = configure(tmp_path, simulator.url, *lines)
    socket = tmp_path / "state" / "control.sock"
    async with in_process_daemon(config) as daemon:
        if kind == "unix":
            transport = httpx.AsyncHTTPTransport(uds=str(socket))
            client = httpx.AsyncClient(transport=transport, base_url="http://localhost")
            host = "localhost"
        else:
            bearer = {"Authorization": f"Bearer {API_TOKEN}"}  # even with the token
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer)
            host = f"127.0.0.1:{port}"
        rebound = f"rebind.evil.example:{port}"
        async with client as http:
            # A page's "simple" POST (no preflight), as DNS rebinding delivers it to the daemon.
            page = {
                "Host": rebound,
                "Origin": f"http://{rebound}",
                "Content-Type": "text/plain",
                "Sec-Fetch-Site": "same-origin",
            }
            for method, path in CONTROL:
                answer = await http.request(method, path, content=b'{"count": 5}', headers=page)
                assert answer.status_code == 403, (method, path, answer.text)
            up = "/api/v1/pools/linux-x64/scale-up"
            cross_site = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
            answer = await http.post(up, content=b'{"count": 5}', headers=cross_site)
            assert answer.status_code == 403
            assert "does not answer web browsers" in answer.json()["message"]
            answer = await http.get("/api/v1/status", headers={"Host": rebound})
            assert answer.status_code == 403
            assert "DNS rebinding" in answer.json()["message"]
            # Without the browser's marks, the body's type still has to be JSON.
            plain = {"Content-Type": "text/plain"}
            answer = await http.post(up, content=b'{"count": 5}', headers=plain)
            assert answer.status_code == 415
            assert (await http.get("/api/v1/status", headers={"Host": host})).status_code == 200
        assert daemon.store.runners() == []


@pytest.mark.slow
async def test_the_webhook_stays_open_and_metrics_and_health_can_be_closed(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    ping = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
    }
    config = configure(tmp_path / "open", simulator.url)
    async with in_process_daemon(config) as daemon, httpx.AsyncClient(base_url=daemon.url) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code in (200, 503)
        assert (await http.post("/webhook", content=body, headers=ping)).status_code == 200
        unsigned = {**ping, "X-Hub-Signature-256": "sha256=00"}
        assert (await http.post("/webhook", content=body, headers=unsigned)).status_code == 401

    config = configure(tmp_path / "closed", simulator.url, "metrics: token", "health: off")
    async with in_process_daemon(config) as daemon, httpx.AsyncClient(base_url=daemon.url) as http:
        token = (tmp_path / "closed" / "state" / "api-token").read_text().strip()
        assert (await http.get("/metrics")).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        metrics = await http.get("/metrics", headers=bearer)
        assert metrics.status_code == 200
        assert "runnerscale_" in metrics.text
        assert (await http.get("/healthz", headers=bearer)).status_code == 404
        assert (await http.get("/readyz", headers=bearer)).status_code == 404
        assert (await http.post("/webhook", content=body, headers=ping)).status_code == 200


async def test_a_second_daemon_on_the_same_control_socket_is_refused(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = configure(tmp_path, simulator.url)
    async with in_process_daemon(config):
        loaded = load_config(config, env={**ENV, "HOME": str(tmp_path)})
        with pytest.raises(StartupError, match="is served by another daemon"):
            Daemon.build(loaded, port=0)
        assert (tmp_path / "state" / "control.sock").exists()  # the first one's, untouched
