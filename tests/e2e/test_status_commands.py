"""``runnerscale status --json`` and ``--watch`` as an operator runs them, against a daemon
serving jobs from the simulated GitHub: the JSON for scripts, and the live view in a terminal
(a pseudo-terminal here) that Ctrl-C ends with exit code 0."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorServer
from tests.e2e.harness import (
    COMMAND_ENV,
    ENV,
    all_done,
    in_process_daemon,
    queue_jobs,
    runnerscale_command,
    simulator,
    wait_until,
    write_config,
)

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(180)


def read_until(fd: int, done: Callable[[str], bool], timeout: float) -> str:
    """What the terminal showed until ``done`` holds for it (or the time is up)."""
    shown = b""
    deadline = time.monotonic() + timeout
    while not done(shown.decode(errors="replace")) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                shown += os.read(fd, 65536)
            except OSError:  # the other end closed: the command ended
                break
    return shown.decode(errors="replace")


async def test_status_json_and_a_live_view_ended_by_ctrl_c(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="1s")
    env = {**ENV, "HOME": str(tmp_path)}
    async with in_process_daemon(config):
        jobs = queue_jobs(simulator, 3)
        world = simulator.simulator.world
        await wait_until(lambda: all_done(world, jobs), 90, "the jobs served")

        await wait_until(
            lambda: _waits_shown(config, env, len(jobs)), 30, "the queue waits in the status"
        )
        code, output = await runnerscale_command("status", "-c", str(config), "--json", env=env)
        assert code == 0, output
        body = json.loads(output)
        assert [pool["name"] for pool in body["pools"]] == ["linux-x64"]
        assert sorted(wait["id"] for wait in body["queue_waits"]) == sorted(jobs)
        assert body["github"]["rate_limit"]["core"]["limit"] > 0

        code, output = await runnerscale_command(
            "status", "-c", str(config), "--json", "--watch", env=env
        )
        assert code == 2
        assert "--json prints the status once" in output

        main, terminal = pty.openpty()
        watcher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            "status",
            "-c",
            str(config),
            "--watch",
            "--interval",
            "0.5",
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env={**env, **COMMAND_ENV, "TERM": "xterm-256color", "COLUMNS": "160"},
        )
        os.close(terminal)
        try:
            shown = await asyncio.to_thread(
                read_until, main, lambda text: text.count("Ctrl-C to stop") >= 3, 60
            )
            assert shown.count("Ctrl-C to stop") >= 3, shown  # the first frame and refreshes
            assert "linux-x64" in shown
            assert "queue waits of the last 3 jobs" in shown
            watcher.send_signal(signal.SIGINT)  # what Ctrl-C sends
            async with asyncio.timeout(30):
                code = await watcher.wait()
            shown += await asyncio.to_thread(read_until, main, lambda text: False, 1)
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
            os.close(main)
        assert code == 0, shown
        assert "Traceback" not in shown
        assert "\x1b[?25h" in shown  # the cursor shown again


async def _waits_shown(config: Path, env: dict[str, str], count: int) -> bool:
    code, output = await runnerscale_command("status", "-c", str(config), "--json", env=env)
    return code == 0 and len(json.loads(output)["queue_waits"]) >= count
