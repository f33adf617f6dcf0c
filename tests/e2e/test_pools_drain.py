"""``runnerscale pools drain`` and ``pools resume`` as an operator runs them, against a real
daemon (in-process) serving the fake GitHub over HTTP, with the local backend's stand-in
runners: the idle runner goes at once, the busy one finishes its job (never killed), the
backend is swept, and ``--wait`` follows it to the end (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.fakegithub.entities import Conclusion, JobStatus
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.model import RunnerState
from tests.e2e.harness import (
    TOKEN,
    in_process_daemon,
    runnerscale_command,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(180)

POOL = "linux-x64"


async def test_drain_wait_and_resume(tmp_path: Path) -> None:
    async with SimulatorServer(SimulatorOptions(tokens=(TOKEN,))) as simulator:
        world = simulator.simulator.world
        world.ensure_repo("acme/app")
        config = write_config(tmp_path, simulator.url, poll_interval="1s", idle_timeout="1h")
        async with in_process_daemon(config) as daemon:
            env = {"HOME": str(tmp_path)}
            (job,) = world.create_jobs(
                [JobSpec("acme/app", ("self-hosted", "linux", "x64"), 15.0, None, "long")]
            )

            def states() -> list[RunnerState]:
                return sorted(r.state for r in daemon.store.runners() if r.state.live)

            await wait_until(lambda: states() == [RunnerState.BUSY], 60, "the job's runner")
            code, output = await runnerscale_command(
                "scale", "up", "-c", str(config), "--pool", POOL, env=env
            )
            assert code == 0, output
            await wait_until(
                lambda: RunnerState.IDLE in states(), 60, "an idle runner besides the busy one"
            )

            code, output = await runnerscale_command(
                "pools", "drain", POOL, "-c", str(config), env=env
            )
            assert code == 0, output
            assert f"pool {POOL} drained: it starts no runner" in output
            # The idle runner goes at once: by this call, or by the controller's loop, which
            # sees the pool drained as soon as it is marked (then this call removed none).
            assert "removed now: 1" in output or "removed now: 0" in output
            assert "left: 1" in output
            await wait_until(lambda: states() == [RunnerState.BUSY], 30, "the idle runner gone")

            code, output = await runnerscale_command(
                "scale", "up", "-c", str(config), "--pool", POOL, env=env
            )
            assert code == 1
            assert f"pool {POOL} is drained" in output

            code, output = await runnerscale_command(
                "pools", "drain", POOL, "-c", str(config), "--wait", "--timeout", "90s", env=env
            )
            assert code == 0, output
            assert f"pool {POOL} was drained already" in output
            assert f"pool {POOL}: drained, backend swept" in output
            # The busy runner ran its job to its end.
            assert (job.status, job.conclusion) == (JobStatus.COMPLETED, Conclusion.SUCCESS)
            assert states() == []

            code, output = await runnerscale_command("status", "-c", str(config), env=env)
            assert code == 0, output
            assert f"{POOL} (drained)" in output
            assert "drained, backend swept" in output

            code, output = await runnerscale_command(
                "pools", "resume", POOL, "-c", str(config), env=env
            )
            assert code == 0, output
            assert f"pool {POOL} resumed" in output
            code, output = await runnerscale_command(
                "scale", "up", "-c", str(config), "--pool", POOL, env=env
            )
            assert code == 0, output
            assert "created 1 of 1" in output

            code, output = await runnerscale_command(
                "pools", "drain", "nope", "-c", str(config), env=env
            )
            assert code == 1
            assert f"no pool named 'nope' (pools: {POOL})" in output
            code, output = await runnerscale_command(
                "pools", "drain", POOL, "-c", str(config), "--timeout", "soon", env=env
            )
            assert code == 2
            assert "--timeout soon: not a duration" in output
