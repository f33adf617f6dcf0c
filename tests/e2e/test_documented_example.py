"""The example configuration of docs/configuration.md, as a new user takes it: checked by
``config validate`` and run by ``runnerscale run`` the way the README runs things, with the
venv's ``runnerscale`` and nothing activated (no venv on PATH). Before, its runner command
``runnerscale sim-runner`` was not found when the first runner started, while ``config
validate`` had said ``valid``."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorServer
from tests.documented import documented_example, example_here
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    answers,
    free_port,
    queue_jobs,
    runnerscale_command,
    simulator,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
)

__all__ = ["simulator"]  # a fixture, imported

SECRETS = {"GITHUB_TOKEN": TOKEN, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.mark.timeout(120)
async def test_the_documented_example_validates_and_serves_a_job(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    port = free_port()
    config = example_here(documented_example(), tmp_path, simulator.url, port)
    env = {**SECRETS, "HOME": str(tmp_path)}
    code, output = await runnerscale_command("config", "validate", "-c", str(config), env=env)
    assert code == 0, output
    assert f"{config}: valid" in output
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(config, log, env=SECRETS)
    try:
        await wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "the daemon to listen"
        )
        simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
        world = simulator.simulator.world
        job_ids = queue_jobs(simulator, 1)
        await wait_until(lambda: all_done(world, job_ids), 60, "the job to be served")
    finally:
        await stop_daemon_process(daemon)
    assert daemon.returncode == 0, log.read_text()
    assert [world.jobs[j].conclusion.value for j in job_ids] == ["success"]  # type: ignore[union-attr]
