"""The operator's commands against a running daemon, and ``runnerscale demo`` as a user runs it."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.store import open_store
from tests.e2e.harness import (
    ENV,
    TOKEN,
    in_process_daemon,
    runnerscale_command,
    wait_until,
    write_config,
)

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
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    env = {**ENV, "HOME": str(tmp_path), **path}
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
            env = {**ENV, "HOME": str(tmp_path)}
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
        code, output = await runnerscale_command(
            "status", "-c", str(config), env={**ENV, "HOME": str(tmp_path)}
        )
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
