"""The operator's commands against a running daemon, and ``runnerscale demo`` as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.store import open_store
from tests.e2e.harness import (
    ENV,
    TOKEN,
    command_env,
    in_process_daemon,
    local_pool,
    runnerscale_command,
    wait_until,
    write_config,
)
from tests.processes import processes_showing

EXAMPLE = Path(__file__).parents[1] / "fixtures" / "config" / "example.yaml"


async def test_config_validate_and_schema(tmp_path: Path) -> None:
    env = {"GITHUB_TOKEN": "t0ken-value", "WEBHOOK_SECRET": "s3cret-value", "HOME": str(tmp_path)}
    code, output = await runnerscale_command("config", "validate", "-c", str(EXAMPLE), env=env)
    assert code == 0, output
    assert "valid" in output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("max_runners: 4", "max_runners: 0"))
    code, output = await runnerscale_command("config", "validate", "-c", str(bad), env=env)
    assert code == 2
    assert "bad.yaml:" in output
    assert "max_runners" in output
    assert "t0ken-value" not in output
    code, output = await runnerscale_command(
        "config", "validate", "-c", str(tmp_path / "missing.yaml"), env=env
    )
    assert code == 2
    code, output = await runnerscale_command("config", "schema")
    assert code == 0
    assert json.loads(output)["title"] == "runnerscale configuration"


async def test_run_refuses_the_state_of_a_newer_runnerscale(tmp_path: Path) -> None:
    """A rollback that did not restore the state: a clear refusal naming the way back."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    database = tmp_path / "state" / "state.db"
    open_store(f"sqlite:///{database}").engine.dispose()
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    env = {**ENV, "HOME": str(tmp_path)}
    code, output = await runnerscale_command("run", "-c", str(config), env=env)
    assert code == 2, output
    assert "the state was written by a newer runnerscale" in output
    assert "docs/deploy.md#rolling-back" in output
    assert "Traceback" not in output


async def test_status_and_scale_commands(tmp_path: Path) -> None:
    options = SimulatorOptions(tokens=(TOKEN,))
    async with SimulatorServer(options) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        config = write_config(tmp_path, simulator.url, poll_interval="1s", idle_timeout="1h")
        async with in_process_daemon(config) as daemon:
            # The daemon's GitHub token and webhook secret are not set: these commands need
            # only the control API's address and its credential.
            env = {"HOME": str(tmp_path)}
            code, output = await runnerscale_command(
                "scale", "up", "-c", str(config), "--pool", "linux-x64", "-n", "2", env=env
            )
            assert code == 0, output
            assert "created 2 of 2" in output
            await wait_until(
                lambda: (
                    len([r for r in simulator.simulator.world.runners.values() if r.connected]) == 2
                ),
                30,
                "two runners online",
            )
            simulator.simulator.world.create_jobs(
                [JobSpec("acme/app", ("self-hosted", "linux", "arm64"), 1.0, None, "arm")]
            )
            await daemon.controller.poll_once()
            await daemon.controller.reconcile_once()
            code, output = await runnerscale_command("status", "-c", str(config), env=env)
            assert code == 0, output
            assert "linux-x64" in output
            assert "GitHub core" in output
            assert "unmatched jobs (no pool serves them): 1" in output
            assert (
                "(self-hosted, linux, arm64): it needs arm64, but every pool here runs on x64"
                in (output)
            )
            idle = [r.name for r in daemon.store.runners() if r.state.value == "idle"]
            code, output = await runnerscale_command(
                "scale", "down", "-c", str(config), "--runner", idle[0], env=env
            )
            assert code == 0, output
            code, output = await runnerscale_command(
                "scale", "down", "-c", str(config), "--pool", "linux-x64", env=env
            )
            assert code == 0, output
            assert "removed 1" in output
            code, output = await runnerscale_command("scale", "down", "-c", str(config), env=env)
            assert code == 2
            code, output = await runnerscale_command(
                "scale", "up", "-c", str(config), "--pool", "nope", env=env
            )
            assert code == 1
            assert "no pool named 'nope'" in output
        code, output = await runnerscale_command("status", "-c", str(config), env=env)
        assert code == 1
        assert "cannot reach the daemon" in output


@pytest.mark.timeout(240)
async def test_the_demo_serves_everything_and_leaves_nothing(tmp_path: Path) -> None:
    code, output = await runnerscale_command(
        "demo", env={"HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    )
    assert code == 0, output
    assert "demo passed" in output
    assert "jobs no pool can serve" in output


def made_by_demo(temp: Path, below: str = "") -> list[Path]:
    """The demo's folders in ``temp`` (its TMPDIR), or what matches ``below`` in them."""
    return list(temp.glob(f"runnerscale-demo-*{below}"))


@pytest.mark.timeout(120)
async def test_ctrl_c_stops_the_demo_and_removes_what_it_made(tmp_path: Path) -> None:
    """Ctrl-C while runners run: the demo stops within seconds, exits 130, and leaves no
    runner process and no folder (its runners are in sessions of their own, out of reach of
    the terminal's Ctrl-C: the demo must stop them itself)."""
    log = tmp_path / "demo.log"
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            "demo",
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            env=command_env({"HOME": str(tmp_path), "TMPDIR": str(tmp_path)}),
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        await wait_until(
            lambda: len(made_by_demo(tmp_path, "/runners/*/rs-*")) >= 3, 60, "three runners"
        )
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
        async with asyncio.timeout(15):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text()
    assert processes_showing([str(tmp_path)], environ=True) == []
    assert made_by_demo(tmp_path) == []
    assert process.returncode == 130, text
    assert "demo interrupted" in text
    assert "Traceback" not in text


async def test_a_pool_capped_by_its_host_says_so_at_start_and_in_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """max_runners 3 on a local backend of capacity 1: the pool runs one runner at most, and
    the daemon's log and ``status`` say why (issue 13, 5)."""
    pool = local_pool(tmp_path, 3, "1h").replace("capacity: 3", "capacity: 1")
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,))) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        config = write_config(tmp_path, simulator.url, pools=pool)
        async with in_process_daemon(config) as daemon:
            await daemon.controller.reconcile_once()
            code, output = await runnerscale_command(
                "status", "-c", str(config), env={"HOME": str(tmp_path)}
            )
    said = "max_runners is 3, but the pool runs at most 1 runners: its local backend's capacity"
    assert f"pool linux-x64: {said}" in output, output
    assert code == 0
    assert said in caplog.text
