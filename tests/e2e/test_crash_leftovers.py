"""The daemon killed with ``kill -9`` in the middle of a runner's creation, after each step of
the local backend's create (issue 12, 5): after a restart the job is served, what the killed
create left is adopted (a process that started, while it runs) or removed once older than
``timeouts.create`` (a folder without its record, a record without a process), and the runner
of another deployment in the same folder is not touched.

``runnerscale run`` runs as a process of its own with ``RUNNERSCALE_PAUSE_CREATE`` set, so its
first create stands still right after the step (:mod:`runnerscale.providers.pause`) until the
test kills it there; the restarted daemon runs without it.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.model import InstanceSpec
from runnerscale.providers.local import LocalProvider, LocalSettings
from runnerscale.providers.pause import PAUSE_ENV
from tests.e2e.harness import (
    WEBHOOK_SECRET,
    all_done,
    leftovers,
    queue_jobs,
    runner_directories,
    simulator,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)

__all__ = ["simulator"]

pytestmark = pytest.mark.timeout(300)

POOL = "linux-x64"
#: A runner of another deployment sharing the pool's folder: it sleeps until it is stopped.
SLEEPER = (sys.executable, "-c", "import time\nwhile True:\n    time.sleep(1)\n")
#: The steps of the local backend's create, and whether a kill -9 right after one leaves
#: something that never runs (removed after the grace) rather than a runner (adopted). After
#: ``process`` it depends: a runner whose pid was never recorded is found while it runs, but
#: once it has served its job and exited, nothing says it ever ran.
STEPS: dict[str, bool | None] = {"folder": True, "record": True, "process": None, "recorded": False}


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_daemon_killed_mid_create_leaves_nothing_after_a_restart(
    simulator: SimulatorServer, tmp_path: Path, step: str
) -> None:
    config = write_config(
        tmp_path, simulator.url, poll_interval="2s", max_runners=2, create_timeout="4s"
    )
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    world = simulator.simulator.world
    work_root = tmp_path / "runners"
    neighbour = LocalProvider(
        LocalSettings(
            pool=POOL,
            command=SLEEPER,
            work_root=work_root / POOL,
            controller_id="another-deployment",
        )
    )
    theirs = await neighbour.create(InstanceSpec("rs-theirs", POOL, jitconfig="theirs"))
    marker = tmp_path / "paused"
    log = tmp_path / "daemon.log"

    daemon = await start_daemon_process(config, log, env={PAUSE_ENV: f"{step} {marker}"})
    try:
        job_ids = queue_jobs(simulator, 1, duration=1.0)
        await wait_until(marker.exists, 60, f"the daemon's create to stop after {step!r}")
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        killed = [path.name for path in runner_directories(work_root) if path.name != theirs.id]
        assert len(killed) == 1, killed

        daemon = await start_daemon_process(config, log)
        await wait_until(lambda: all_done(world, job_ids), 120, "the job, after the restart")

        async def only_theirs_left() -> bool:
            left = await leftovers(simulator, work_root)
            return left == {"registered": 0, "instances": 1}

        await wait_until(only_theirs_left, 60, "nothing of ours left")
    finally:
        await stop_daemon_process(daemon)
    assert [path.name for path in runner_directories(work_root)] == [theirs.id]
    still = await neighbour.get(theirs.id)
    assert still is not None
    assert still.running
    await neighbour.delete(theirs.id)
    swept = f"janitor: instance {killed[0]} ({killed[0]}) has no live runner, incomplete:"
    if STEPS[step] is not None:
        assert (swept in log.read_text()) is STEPS[step]
