"""The zero-config start at work (issue 13): ``runnerscale run --repo acme/app
--max-runners 1`` as a real process, with the token in GH_TOKEN, against the simulator
(``--api-url``, as for a GitHub Enterprise Server that GH_HOST does not name), its runners the
stand-in runner behind a ``run.sh`` in ``--runner-dir``, as the official runner's folder has
it. It prints its config, serves a queued job, answers /healthz, and stops with 0 on SIGTERM;
the token is in no printed text, no process's command line, no runner's environment and no
file it leaves."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.hostlabels import normalize_arch
from tests.e2e.harness import (
    TOKEN,
    all_done,
    free_port,
    start_command_process,
    stop_daemon_process,
    wait_until,
)
from tests.e2e.test_daemon import _reachable, simulator
from tests.processes import processes_showing

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(180)


def official_runner_stand_in(folder: Path) -> Path:
    """A folder laid out as the official runner's (its ``run.sh``), whose ``run.sh`` starts
    the stand-in runner (which reads its JIT config where the official one does)."""
    folder.mkdir()
    script = folder / "run.sh"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m runnerscale sim-runner\n")
    script.chmod(0o755)
    return folder


async def test_a_zero_config_start_serves_a_job_and_shows_no_token(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    world = simulator.simulator.world
    arch = normalize_arch(platform.machine()) or "x64"
    [job] = world.create_jobs([JobSpec("acme/app", ("self-hosted", "linux", arch), 4.0)])
    simulator.simulator.notify()
    runner_dir = official_runner_stand_in(tmp_path / "actions-runner")
    port = free_port()
    log = tmp_path / "daemon.log"
    daemon = await start_command_process(
        *("run", "--repo", "acme/app", "--max-runners", "1", "--api-url", simulator.url),
        *("--runner-dir", str(runner_dir), "--listen", f"127.0.0.1:{port}"),
        *("--log-level", "debug"),
        log=log,
        env={"GH_TOKEN": TOKEN, "HOME": str(tmp_path)},
    )
    try:
        async with httpx.AsyncClient() as http:
            healthz = f"http://127.0.0.1:{port}/healthz"
            await wait_until(lambda: _reachable(http, healthz), 30, "the daemon to listen")
        await wait_until(
            lambda: world.jobs[job.id].status.value == "in_progress", 60, "a runner at work"
        )
        at_work = processes_showing(["sim-runner"])
        showing_the_token = processes_showing([TOKEN], environ=True, exclude=[daemon.pid])
        await wait_until(lambda: all_done(world, [job.id]), 60, "the job served")
    finally:
        await stop_daemon_process(daemon)
    assert daemon.returncode == 0
    assert world.jobs[job.id].conclusion.value == "success"  # type: ignore[union-attr]
    assert at_work, "no runner was at work when the processes were read"
    assert showing_the_token == [], "the token on a command line or in a runner's environment"
    output = log.read_text()
    assert output.startswith("# runnerscale's zero-config start runs this config: save it")
    assert "  token: ${GH_TOKEN}  # read from GH_TOKEN" in output
    assert f"  api_url: {simulator.url}\n" in output
    assert "  - repo: acme/app\n" in output
    assert "    provider: local  # --runner-dir" in output
    assert files_holding(tmp_path, TOKEN) == []


def files_holding(folder: Path, needle: str) -> list[str]:
    """The files under ``folder`` (the daemon's state and log, the runners' folders) whose
    bytes hold ``needle``."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "state.db" for path in files), "no state found where expected"
    return [str(path) for path in files if needle.encode() in path.read_bytes()]
