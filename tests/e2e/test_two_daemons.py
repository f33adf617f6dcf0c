"""Two daemons, one state, end to end: two real ``runnerscale run`` processes on one Postgres
database against one simulated GitHub, each with a webhook of its own; the leader is killed
with ``kill -9`` in the middle of a burst of jobs.

The standby must take the lead within 15 s, every job must be served, no runner name may be
registered twice (each JIT config the simulator issued names a runner of its own, and each is
one row of the store), and nothing may be left behind once the survivor stops."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.store import open_store
from tests.e2e.control import control_client
from tests.e2e.harness import (
    ENV,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    free_port,
    leftovers,
    live_runners,
    local_pool,
    queue_jobs,
    record_jit_configs,
    runnerscale_command,
    simulator,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)

__all__ = ["simulator"]

pytestmark = pytest.mark.timeout(300)

#: The requirement: the standby leads within this many seconds of the leader's death.
TAKEOVER_DEADLINE = 15.0


async def status(control: httpx.AsyncClient) -> dict[str, Any] | None:
    """The status of the daemon behind ``control``, or None while it does not answer."""
    try:
        answer = await control.get("/api/v1/status")
    except httpx.TransportError:
        return None
    body: dict[str, Any] = answer.json()
    return body


async def test_the_standby_takes_over_from_a_killed_leader_and_nothing_is_lost_or_doubled(
    simulator: SimulatorServer, postgres_url: str, tmp_path: Path
) -> None:
    world = simulator.simulator.world
    jit_configs = record_jit_configs(world)
    # One deployment: one state, one runner folder; two daemons, each its own port and log.
    pools = local_pool(tmp_path, 8, "2s")
    ports = {name: free_port() for name in ("a", "b")}
    configs = {}
    for name, port in ports.items():
        folder = tmp_path / name
        folder.mkdir()
        # A create the kill interrupts leaves a folder removed once create_timeout old.
        configs[name] = write_config(
            folder, simulator.url, port=port, state=postgres_url, pools=pools, create_timeout="20s"
        )
        simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)

    processes: dict[str, asyncio.subprocess.Process] = {}
    try:
        # Each daemon's control socket is in its own state directory (its HOME's).
        async with (
            control_client(configs["a"], timeout=10) as control_a,
            control_client(configs["b"], timeout=10) as control_b,
        ):
            controls = {"a": control_a, "b": control_b}

            async def leading(name: str) -> bool:
                body = await status(controls[name])
                return body is not None and body["leading"] is True

            async def standing_by(name: str) -> bool:
                body = await status(controls[name])
                return body is not None and body["leading"] is False and body["leader"]

            processes["a"] = await start_daemon_process(configs["a"], tmp_path / "a.log")
            await wait_until(lambda: leading("a"), 60, "the first daemon to lead")
            processes["b"] = await start_daemon_process(configs["b"], tmp_path / "b.log")
            await wait_until(lambda: standing_by("b"), 60, "the second daemon to stand by")
            first = await status(control_a)
            second = await status(control_b)
            assert first is not None
            assert second is not None
            assert second["leader"]["id"] == first["instance"] != second["instance"]
            assert second["controller_id"] == first["controller_id"]
            code, said = await runnerscale_command(
                "status", "-c", str(configs["b"]), env={**ENV, "HOME": str(tmp_path / "b")}
            )
            assert code == 0, said
            assert f"leader: {first['instance']}" in said
            assert f"this daemon ({second['instance']}) stands by" in said

            job_ids = queue_jobs(simulator, 24, duration=2.0)
            await wait_until(
                lambda: sum(world.jobs[j].status.value == "completed" for j in job_ids) >= 4,
                120,
                "the burst under way",
            )
            processes["a"].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await processes["a"].wait()
            await wait_until(lambda: leading("b"), TAKEOVER_DEADLINE, "the standby to lead")
            took = time.monotonic() - killed_at
            print(f"takeover after kill -9: {took:.1f} s")  # the figure docs/ quote

            await wait_until(lambda: all_done(world, job_ids), 180, "every job served")
            assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
            store = open_store(postgres_url)
            try:

                async def what_is_left() -> list[str]:
                    left = await leftovers(simulator, tmp_path / "runners")
                    return [f"{what}: {n}" for what, n in left.items() if n] + live_runners(store)

                async def nothing_left() -> bool:
                    return not await what_is_left()

                await wait_until(nothing_left, 90, "nothing left behind", explain=what_is_left)
                names = [r.name for r in store.runners()]
            finally:
                store.close()
    finally:
        for process in processes.values():
            await stop_daemon_process(process)

    # Each JIT config named a runner of its own (no name asked for twice, none refused), and
    # each of those is one row of the store: nothing was created twice, across the takeover.
    issued = [decode(encoded).runner_name for encoded in jit_configs]
    assert len(issued) == len(set(issued))
    assert set(issued) <= set(names)
    assert len(names) == len(set(names))
    assert len(issued) >= len(job_ids)
    assert processes["b"].returncode == 0
    for secret in [TOKEN, WEBHOOK_SECRET, postgres_url, *jit_configs]:
        for log in ("a.log", "b.log"):
            assert secret not in (tmp_path / log).read_text()
