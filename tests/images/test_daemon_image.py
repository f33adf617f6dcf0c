"""The daemon's image runs ``runnerscale run`` as its own user and serves a job.

The image (``tests/daemon_image.py``: the Dockerfile's settings on the locally made Debian)
runs on the session's engine, which has no bridge: the container shares the host's network,
as the runner containers of the Docker backend's tests do, and reaches the simulator on
loopback. The config is mounted read-only, the state directory is a folder of the test's own
(the image's volume), the token comes in the environment. The test reaches ``/healthz`` on the
port the config names and the control API through the socket in the mounted state directory,
and the daemon's local pool (stand-in runners, processes in the container) serves a job.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
from docker.models.containers import Container

from runnerscale.fakegithub.server import SimulatorServer
from tests.daemon_image import DAEMON_UID
from tests.docker_engine import Engine
from tests.e2e.harness import TOKEN, all_done, free_port, queue_jobs, simulator, wait_until

__all__ = ["simulator"]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def engine_client(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_engine.url, version="auto")
    yield client
    client.close()


def write_config(folder: Path, api_url: str, port: int) -> Path:
    path = folder / "runnerscale.yaml"
    path.write_text(
        f"""\
github:
  api_url: {api_url}
  token: ${{GITHUB_TOKEN}}
targets:
  - repo: acme/app
server:
  listen: 127.0.0.1:{port}
poll_interval: 1s
pools:
  - name: linux-x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: 2
    idle_timeout: 2s
    local:
      command: [runnerscale, sim-runner]
      stop_grace: 2s
"""
    )
    path.chmod(0o644)
    return path


@pytest.fixture
async def daemon_container(
    simulator: SimulatorServer,
    daemon_image: str,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> AsyncIterator[tuple[Container, Path, int]]:
    """The daemon's container, started: (container, state folder, HTTP port)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, DAEMON_UID, DAEMON_UID)
    port = free_port()
    config = write_config(tmp_path, simulator.url, port)
    container = await asyncio.to_thread(
        engine_client.containers.run,
        daemon_image,
        detach=True,
        network_mode="host",
        environment={"GITHUB_TOKEN": TOKEN},
        volumes={
            str(config): {"bind": "/etc/runnerscale/config.yaml", "mode": "ro"},
            str(state): {"bind": "/var/lib/runnerscale", "mode": "rw"},
        },
    )
    try:
        yield container, state, port
    finally:
        await asyncio.to_thread(container.remove, force=True)


async def answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.TransportError:
            return False


async def test_the_daemon_image_serves_a_job_and_answers_on_healthz_and_its_control_socket(
    simulator: SimulatorServer, daemon_container: tuple[Container, Path, int]
) -> None:
    container, state, port = daemon_container
    logs = container.logs
    try:
        await wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "/healthz")
    except AssertionError:
        raise AssertionError(logs().decode(errors="replace")) from None
    await asyncio.to_thread(container.reload)
    assert container.attrs["Config"]["User"] == "runnerscale"

    socket = state / "control.sock"
    assert socket.stat().st_uid == DAEMON_UID
    assert socket.stat().st_mode & 0o777 == 0o600
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as control:
        body = (await control.get("/api/v1/status")).json()
    assert [pool["name"] for pool in body["pools"]] == ["linux-x64"]

    world = simulator.simulator.world
    job_ids = queue_jobs(simulator, 1)
    await wait_until(lambda: all_done(world, job_ids), 90, "the job to be served")
    assert world.jobs[job_ids[0]].conclusion.value == "success"  # type: ignore[union-attr]
    # What an operator runs: `docker exec CONTAINER runnerscale status -c CONFIG`.
    code, shown = await asyncio.to_thread(
        container.exec_run,
        ["runnerscale", "status", "-c", "/etc/runnerscale/config.yaml"],
    )
    assert code == 0, shown.decode(errors="replace")
    assert "linux-x64" in shown.decode()
    assert (state / "state.db").stat().st_uid == DAEMON_UID

    await asyncio.to_thread(container.stop, timeout=20)
    result = await asyncio.to_thread(container.wait, timeout=30)
    output = logs().decode(errors="replace")
    assert result["StatusCode"] == 0, output
    assert TOKEN not in output
