"""A backend that lives outside ``src/`` (``tests/plugins/memory_backend.py``), installed as a
distribution declaring a ``runnerscale.providers`` entry point, works end to end: a config
naming it validates (its block's errors name the line and the path), ``config schema`` shows
it, and ``runnerscale run`` builds it and serves jobs through it against the simulator. A
process without the distribution on its path does not know it, and says which ones it knows.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings
from tests.e2e.harness import (
    ENV,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    queue_jobs,
    runnerscale_command,
    start_daemon_process,
    wait_until,
    write_config,
)
from tests.plugins.entry_points import install, python_path

pytestmark = pytest.mark.timeout(300)

MEMORY_POOL = """\
  - name: mem
    labels: [self-hosted, linux, x64]
    provider: memory
    max_runners: 4
    idle_timeout: 2s
    boot_timeout: 60s
    memory:
      space: e2e
      runner: sim
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that has the test backends' distribution installed."""
    site = install(tmp_path / "site", {"memory": "tests.plugins.memory_backend:BACKEND"})
    return {"PYTHONPATH": python_path(site)}


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(runner_offline_after=30.0))
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


async def test_a_config_naming_the_plugin_validates_and_the_schema_shows_it(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", pools=MEMORY_POOL)
    env = {**ENV, "HOME": str(tmp_path)}
    code, output = await runnerscale_command(
        "config", "validate", "-c", str(config), env={**env, **plugin_env}
    )
    assert code == 0, output
    assert "valid" in output

    # An error inside the plug-in's block names the file, the line and the path.
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("runner: sim", "runer: sim"))
    code, output = await runnerscale_command(
        "config", "validate", "-c", str(bad), env={**env, **plugin_env}
    )
    assert code == 2, output
    line = bad.read_text().splitlines().index("      runer: sim") + 1
    assert f"bad.yaml:{line}" in output
    assert "pools[0].memory.runer" in output
    assert "'runner'" in output  # the nearest key of the plug-in's own model

    code, output = await runnerscale_command("config", "schema", env=plugin_env)
    assert code == 0, output
    pool = json.loads(output)["$defs"]["PoolConfig"]["properties"]
    assert {"local", "docker", "memory"} <= set(pool)
    assert pool["provider"]["enum"] == ["local", "docker", "ssh", "ec2", "external", "memory"]

    # Without the distribution, the name is unknown and the installed ones are listed.
    code, output = await runnerscale_command("config", "validate", "-c", str(config), env=env)
    assert code == 2, output
    assert "provider 'memory' is not available" in output
    assert "local, docker" in output


async def test_the_daemon_serves_jobs_through_the_plugin(
    simulator: SimulatorServer, tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=MEMORY_POOL)
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(config, log, plugin_env)
    world = simulator.simulator.world
    try:
        # The control API on its socket in the state directory (this process cannot load the
        # config: the plug-in is installed for the daemon's process only).
        socket = tmp_path / "state" / "control.sock"
        async with (
            httpx.AsyncClient() as http,
            httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://localhost"
            ) as control,
        ):
            await wait_until(lambda: _status(http, port), 90, "the daemon to listen")

            async def pools() -> list[str]:
                status = (await control.get("/api/v1/status")).json()
                return [pool["name"] for pool in status["pools"]]

            async def reconciled() -> bool:
                return bool(await pools())

            # The status lists the pools from the first reconcile on, which may come just
            # after the daemon answers.
            await wait_until(reconciled, 30, "the first reconcile")
            assert await pools() == ["mem"]
        job_ids = queue_jobs(simulator, 3, duration=1.0)
        await wait_until(lambda: all_done(world, job_ids), 120, "the jobs served by the plug-in")
        assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
        assert all((world.jobs[j].runner_name or "").startswith("rs-mem-") for j in job_ids)
        await wait_until(lambda: not world.runners, 60, "no runner left registered")
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await daemon.wait()
    assert daemon.returncode == 0, log.read_text()
    assert TOKEN not in log.read_text()


async def _status(http: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.TransportError:
        return False
