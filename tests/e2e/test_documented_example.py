"""The example configuration of docs/configuration.md, as a new user takes it: checked by
``config validate`` and run by ``runnerscale run`` the way the README runs things, with the
venv's ``runnerscale`` and nothing activated (no venv on PATH). Before, its runner command
``runnerscale sim-runner`` was not found when the first runner started, while ``config
validate`` had said ``valid``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorServer
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    free_port,
    queue_jobs,
    runnerscale_command,
    simulator,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
)
from tests.test_config_host import documented_example

__all__ = ["simulator"]  # a fixture, imported

SECRETS = {"GITHUB_TOKEN": TOKEN, "WEBHOOK_SECRET": WEBHOOK_SECRET}


def here(example: str, directory: Path, api_url: str, port: int) -> Path:
    """The example pointed at this test's simulator, port and folder (nothing else changed)."""
    text = example.replace("http://127.0.0.1:9000", api_url)
    text = text.replace("127.0.0.1:8787", f"127.0.0.1:{port}")
    text = re.sub(r"^state: \S+", f"state: sqlite:///{directory}/state.db", text, flags=re.M)
    assert text.count(api_url) == 1
    assert text.count(f":{port}") == 1
    assert str(directory) in text
    path = directory / "runnerscale.yaml"
    path.write_text(text)
    return path


async def _listening(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False


@pytest.mark.timeout(120)
async def test_the_documented_example_validates_and_serves_a_job(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    config = here(documented_example(), tmp_path, simulator.url, port)
    env = {**SECRETS, "HOME": str(tmp_path)}
    code, output = await runnerscale_command("config", "validate", "-c", str(config), env=env)
    assert code == 0, output
    assert f"{config}: valid" in output
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(config, log, env=SECRETS)
    try:
        await wait_until(
            lambda: _listening(f"http://127.0.0.1:{port}/healthz"), 30, "the daemon to listen"
        )
        simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
        world = simulator.simulator.world
        job_ids = queue_jobs(simulator, 1)
        await wait_until(lambda: all_done(world, job_ids), 60, "the job to be served")
    finally:
        await stop_daemon_process(daemon)
    assert daemon.returncode == 0, log.read_text()
    assert [world.jobs[j].conclusion.value for j in job_ids] == ["success"]  # type: ignore[union-attr]
