"""A scale-set pool end to end over HTTP (issue 16): the real daemon (in process, or as a
``runnerscale run`` process where ``kill -9`` is needed) against fake-github's scale-set
protocol, with the local backend and stand-in runners, and short protocol settings (a 2 s
poll hold, a 5 s session lapse) so that the flows finish in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.entities import Job
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.scaleset_api import ScaleSetMessage
from tests.e2e.harness import (
    TOKEN,
    all_done,
    in_process_daemon,
    leftovers,
    nothing_left,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

SCALE_SET = "runnerscale-x64"
#: The short protocol settings: GitHub holds a poll about 50 s and lets a session lapse after
#: about a minute; the simulator does the same in seconds here.
SETTINGS = WorldSettings(
    runner_offline_after=30.0,
    scale_set_poll_hold=2.0,
    scale_set_session_lapse=5.0,
    scale_set_assign_timeout=20.0,
)


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,), world=SETTINGS)) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


def scale_set_pool(directory: Path, max_runners: int = 6, min_idle: int = 0) -> str:
    """The issue's pool shape on the local backend, running the stand-in runner."""
    return f"""\
  - name: scaleset-x64
    demand: scale_set
    scale_set:
      name: {SCALE_SET}
      runner_group: Default
      labels: [linux, x64]
    provider: local
    max_runners: {max_runners}
    min_idle: {min_idle}
    idle_timeout: 2s
    boot_timeout: 60s
    local:
      command: ["{sys.executable}", -m, runnerscale, sim-runner]
      capacity: {max_runners}
      work_root: {directory}/runners
      stop_grace: 3s
"""


def queue_scale_set_jobs(
    simulator: SimulatorServer, count: int, duration: float = 1.0
) -> list[int]:
    """``count`` jobs with ``runs-on: runnerscale-x64``."""
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec("acme/app", (SCALE_SET,), duration, None, f"ss-job-{i}") for i in range(count)]
    )
    simulator.simulator.notify()
    return [job.id for job in jobs]


def succeeded(jobs: list[Job]) -> bool:
    return all(job.conclusion is not None and job.conclusion.value == "success" for job in jobs)


def open_sessions(simulator: SimulatorServer) -> int:
    return len(simulator.simulator.scale_sets.sessions)


async def test_a_burst_on_a_scale_set_pool_is_served_and_nothing_is_left(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    world = simulator.simulator.world
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: open_sessions(simulator) == 1, 30, "the listener's session")
        job_ids = queue_scale_set_jobs(simulator, 12)
        await wait_until(lambda: all_done(world, job_ids), 120, "12 jobs to complete")
        assert succeeded([world.jobs[j] for j in job_ids])
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )
        created = [r for r in daemon.store.runners() if r.pool == "scaleset-x64"]
        assert 12 <= len(created) <= 12 + 6
    assert open_sessions(simulator) == 0
    assert await leftovers(simulator, tmp_path / "runners") == {"registered": 0, "instances": 0}


def kill_on_first_jobs_message(
    simulator: SimulatorServer, daemon: asyncio.subprocess.Process
) -> list[int]:
    """Make the simulator ``kill -9`` the daemon process the moment it hands it the first
    message with events: that message is then delivered and certainly not acknowledged.
    The ids of the messages so delivered."""
    scale_sets = simulator.simulator.scale_sets
    original = scale_sets.get_message
    delivered: list[int] = []

    def killing(*args: Any, **kwargs: Any) -> ScaleSetMessage | None:
        message = original(*args, **kwargs)
        if message is not None and message.events and not delivered:
            delivered.append(message.message_id)
            daemon.send_signal(signal.SIGKILL)
        return message

    scale_sets.get_message = killing  # type: ignore[method-assign]
    return delivered


async def test_kill_9_with_unacknowledged_messages_loses_no_job(
    simulator: SimulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, simulator.url, pools=scale_set_pool(tmp_path))
    process = await start_daemon_process(config, tmp_path / "daemon.log")
    try:
        await wait_until(lambda: open_sessions(simulator) == 1, 60, "the first daemon's session")
        delivered = kill_on_first_jobs_message(simulator, process)
        job_ids = queue_scale_set_jobs(simulator, 4)
        async with asyncio.timeout(60):
            await process.wait()
    finally:
        await stop_daemon_process(process)
    assert process.returncode == -signal.SIGKILL
    assert len(delivered) == 1
    # The old session is still open: the new daemon meets the 409 until it lapses.
    assert open_sessions(simulator) == 1
    world = simulator.simulator.world
    caplog.set_level(logging.INFO, logger="runnerscale")
    async with in_process_daemon(config) as daemon:
        await wait_until(lambda: all_done(world, job_ids), 120, "every job after the kill")
        assert succeeded([world.jobs[j] for j in job_ids])
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )
    assert "another listener holds its session (409" in caplog.text
    assert open_sessions(simulator) == 0
