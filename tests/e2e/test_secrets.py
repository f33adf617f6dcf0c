"""No secret where other local users can read it (issue 12), with the daemon as a real
``runnerscale run`` process, the local backend and stand-in runners at work: no process's
command line, the daemon's log, ``/metrics``, the status API, nor any file of the state (the
SQLite database and its side files, the runners' folders and kept logs) holds the token, the
webhook secret, a JIT config the simulator issued or the runner credential inside one. And a
``{jitconfig}`` on a runner's command line still works, with ``config validate``'s warning.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.world import World
from tests.e2e.control import control_client
from tests.e2e.harness import (
    ENV,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    local_pool,
    queue_jobs,
    record_jit_configs,
    runnerscale_command,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)
from tests.e2e.test_daemon import _clean, _reachable, simulator
from tests.processes import processes_showing

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(300)


def secrets(jit_configs: Iterable[str]) -> list[str]:
    """The token, the webhook secret, every JIT config and the credential inside each."""
    configs = list(jit_configs)
    return [TOKEN, WEBHOOK_SECRET, *configs, *(decode(config).credential for config in configs)]


def state_files(directory: Path) -> dict[str, str]:
    """Every file of the daemon's state and of its runners, by path, and the database's rows as
    SQL (a value split across pages would hide from a search of the file's bytes)."""
    files = {
        str(path): path.read_bytes().decode(errors="replace")
        for folder in ("state", "runners")
        for path in (directory / folder).rglob("*")
        if path.is_file()
    }
    with sqlite3.connect(directory / "state" / "state.db") as connection:
        files["the database's rows"] = "\n".join(connection.iterdump())
    return files


def daemon_url(config: Path) -> str:
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    return f"http://127.0.0.1:{port}"


@asynccontextmanager
async def daemon_at_work(simulator: SimulatorServer, config: Path) -> AsyncIterator[str]:
    """``runnerscale run -c CONFIG`` (logging at debug to ``daemon.log`` next to it) with the
    simulator's webhooks; its URL. Stopped with SIGTERM at the end, which must exit 0."""
    url = daemon_url(config)
    simulator.simulator.webhooks.add_hook(f"{url}/webhook", WEBHOOK_SECRET)
    daemon = await start_daemon_process(config, config.parent / "daemon.log")
    try:
        async with httpx.AsyncClient() as http:
            await wait_until(lambda: _reachable(http, f"{url}/healthz"), 30, "the daemon to listen")
        yield url
    finally:
        await stop_daemon_process(daemon)
    assert daemon.returncode == 0


async def runners_at_work(world: World, job_ids: list[int]) -> None:
    await wait_until(
        lambda: sum(world.jobs[j].status.value == "in_progress" for j in job_ids) >= 2,
        60,
        "runners at work",
    )


async def test_no_secret_on_a_command_line_in_a_log_an_answer_or_the_state(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    world = simulator.simulator.world
    jit_configs = record_jit_configs(world)
    config = write_config(tmp_path, simulator.url, poll_interval="2s", max_runners=4)
    async with (
        daemon_at_work(simulator, config) as url,
        httpx.AsyncClient(base_url=url) as http,
        control_client(config) as control,
    ):
        job_ids = queue_jobs(simulator, 6, duration=4.0)
        await runners_at_work(world, job_ids)
        # While runners run: the command line of every process on this host, the answers.
        at_work = processes_showing(["sim-runner"])
        on_command_lines = processes_showing(secrets(jit_configs))
        texts = {
            "status while runners run": (await control.get("/api/v1/status")).text,
            "metrics while runners run": (await http.get("/metrics")).text,
        }
        await wait_until(lambda: all_done(world, job_ids), 120, "every job")
        await wait_until(lambda: _clean(simulator, tmp_path / "runners"), 60, "clean-up")
        texts["status"] = (await control.get("/api/v1/status")).text
        texts["metrics"] = (await http.get("/metrics")).text
    assert at_work, "no runner was at work when the command lines were read"
    assert on_command_lines == [], "a secret on these command lines"
    assert len(jit_configs) >= 6
    texts["the daemon's log"] = (tmp_path / "daemon.log").read_text()
    texts.update(state_files(tmp_path))
    needles = secrets(jit_configs)
    found = {
        where: [f"secret {number}" for number, needle in enumerate(needles) if needle in text]
        for where, text in texts.items()
    }
    assert {where: which for where, which in found.items() if which} == {}


async def test_a_jitconfig_on_the_command_line_still_works_with_a_warning(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    world = simulator.simulator.world
    jit_configs = record_jit_configs(world)
    pools = local_pool(tmp_path, 2, "2s").replace(
        "sim-runner]", 'sim-runner, --jitconfig, "{jitconfig}"]'
    )
    config = write_config(tmp_path, simulator.url, poll_interval="2s", pools=pools)
    code, output = await runnerscale_command(
        "config", "validate", "-c", str(config), env={**ENV, "HOME": str(tmp_path)}
    )
    assert code == 0, output
    warning = "pools[0].local.command[5]: puts the JIT config on the runner's command line"
    assert f"warning: {config}:" in output
    assert warning in output
    async with daemon_at_work(simulator, config):
        job_ids = queue_jobs(simulator, 2, duration=4.0)
        await runners_at_work(world, job_ids)
        on_command_lines = processes_showing(jit_configs)
        await wait_until(lambda: all_done(world, job_ids), 60, "both jobs")
        await wait_until(lambda: _clean(simulator, tmp_path / "runners"), 60, "clean-up")
    assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
    assert len(on_command_lines) >= 2  # where the warning says it is
    log = (tmp_path / "daemon.log").read_text()
    assert f"configuration: {config}:" in log
    assert warning in log
    assert not any(jit_config in log for jit_config in jit_configs)
