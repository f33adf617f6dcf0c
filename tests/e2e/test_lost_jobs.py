"""A job whose runner is killed mid-job is re-run once, end to end over HTTP (issue 12, 6).

Simulator + in-process daemon + local backend + stand-in runners: the test kills a busy
runner's process (SIGKILL), the simulated GitHub fails its job for lost communication once
the runner has been silent for ``lost_runner_timeout``, and the daemon re-runs the job; a new
runner serves the new attempt, and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.model import RERUN
from tests.e2e.control import control_client
from tests.e2e.harness import (
    LINUX,
    TOKEN,
    WEBHOOK_SECRET,
    in_process_daemon,
    local_pool,
    nothing_left,
    rerun_after_loss,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

RERUN_OPERATION = "actions/re-run-job-for-workflow-run"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # The stand-in runner sends a heartbeat every 5 s while it runs a job: a runner silent for
    # 8 s is lost, and a live one never is.
    settings = WorldSettings(runner_offline_after=30.0, lost_runner_timeout=8.0)
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,), world=settings)) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


async def test_a_job_whose_runner_is_killed_is_rerun_once_and_served_by_a_new_runner(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    work_root = tmp_path / "runners"
    pool = local_pool(tmp_path, max_runners=2, idle_timeout="2s").replace(
        "    boot_timeout: 60s\n", "    boot_timeout: 60s\n    rerun_lost_jobs: true\n"
    )
    config = write_config(tmp_path, simulator.url, poll_interval="1s", pools=pool)
    world = simulator.simulator.world
    async with (
        in_process_daemon(config) as daemon,
        httpx.AsyncClient(base_url=daemon.url) as http,
        control_client(daemon) as control,
    ):
        simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
        # Long enough to be killed mid-job; the new attempt runs as long.
        (job,) = world.create_jobs([JobSpec("acme/app", tuple(LINUX), 10.0, None, "build")])
        simulator.simulator.notify()
        await wait_until(lambda: job.status.value == "in_progress", 60, "the job to start")

        runner = job.runner_name
        assert runner is not None
        record = json.loads((work_root / "linux-x64" / runner / "instance.json").read_text())
        os.kill(record["pid"], signal.SIGKILL)

        await rerun_after_loss(world, job, runner)
        await wait_until(lambda: nothing_left(simulator, daemon, work_root), 60, "clean-up")

        (loss,) = daemon.store.job_losses()
        assert (loss.job_id, loss.pool, loss.outcome) == (job.id, "linux-x64", RERUN)
        assert loss.reason == f"runner {runner} died mid-job: its instance exited with code -9"
        stats = (await http.get(f"{simulator.url}/_sim/stats")).json()["operations"]
        assert stats[RERUN_OPERATION]["requests"] == 1
        metrics = (await http.get("/metrics")).text
        assert 'runnerscale_jobs_rerun_total{pool="linux-x64"} 1.0' in metrics
        status = (await control.get("/api/v1/status")).json()
        assert [(lost["job_id"], lost["outcome"]) for lost in status["lost_jobs"]] == [
            (job.id, RERUN)
        ]
