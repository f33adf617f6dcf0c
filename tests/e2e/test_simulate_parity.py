"""``runnerscale simulate`` makes the API calls the daemon makes.

One short trace, two ways: replayed by ``runnerscale simulate`` (a process of its own, virtual
time, the in-process GitHub), and served in real time by the daemon over HTTP on the fake
GitHub (the local backend running stand-in runners). Both build their controller through
:func:`runnerscale.wiring.build_controller` and account for requests through the fake GitHub's
one :class:`~runnerscale.fakegithub.accounting.Ledger`, so the calls GitHub charged, by REST
operation, must agree: exactly for what the trace decides (one JIT configuration per job),
within a small tolerance for what the clock decides (polls and janitor sweeps: the daemon's
runners boot and finish on the wall clock, the simulation's on its model, so the run ends a
sweep or two apart).

The poll interval is 10 s, so the run's polls fall before and after the jobs: the fake GitHub
delivers a webhook at once, the simulation a second after the event, as GitHub does. With a
poll inside that second after a job ends, the simulated controller sees the runner's process
exit before the job's ``completed`` event and removes the runner from GitHub (a ``DELETE``
answered 404), where the daemon, told of the completion first, has nothing to remove: a
difference of the two GitHubs' delivery delays, not of the code.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from tests.e2e.harness import (
    ENV,
    LINUX,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    leftovers,
    local_pool,
    runnerscale_command,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

REPO = "acme/app"
DURATION = 3.0
#: Eight jobs (when each is queued, its name), one every 1.5 s, each running 3 s.
TRACE = [(0.5 + 1.5 * index, f"j{index}") for index in range(8)]
#: What the clock decides may differ by this many calls of one operation, or this share.
TOLERANCE_CALLS = 3
TOLERANCE_SHARE = 0.25


def _within_tolerance(daemon: int, simulated: int) -> bool:
    return abs(daemon - simulated) <= max(TOLERANCE_CALLS, TOLERANCE_SHARE * max(daemon, simulated))


async def test_simulate_and_the_daemon_make_the_same_api_calls(tmp_path: Path) -> None:
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(runner_offline_after=30.0))
    async with SimulatorServer(options) as server:
        world = server.simulator.world
        # As the simulation has it: the trace's repository exists, last pushed to an hour ago.
        world.ensure_repo(REPO, pushed_at=world.now - 3600.0)
        pools = local_pool(tmp_path, 8, "2s") + "    simulation:\n      boot_time: 1s\n"
        config = write_config(tmp_path, server.url, poll_interval="10s", pools=pools)
        trace = tmp_path / "trace.jsonl"
        lines = (
            {"at": at, "repo": REPO, "labels": LINUX, "duration": DURATION, "job": name}
            for at, name in TRACE
        )
        trace.write_text("".join(json.dumps(line) + "\n" for line in lines))

        result = tmp_path / "simulated.json"
        code, output = await runnerscale_command(
            "simulate", "--trace", str(trace), "-c", str(config), "--json", str(result),
            env={**ENV, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert code == 0, output
        simulated: dict[str, int] = json.loads(result.read_text())["api_calls_by_operation"]

        async with in_process_daemon(config) as daemon:
            server.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
            loop = asyncio.get_running_loop()
            start = loop.time()
            job_ids: list[int] = []
            for at, name in TRACE:
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                spec = JobSpec(REPO, tuple(LINUX), DURATION, None, name)
                job_ids += [created.id for created in world.create_jobs([spec])]
                server.simulator.notify()
            await wait_until(lambda: all_done(world, job_ids), 120, "the trace's jobs to finish")

            async def drained() -> bool:
                left = await leftovers(server, tmp_path / "runners")
                return not any(left.values()) and not any(
                    r.state.live for r in daemon.store.runners()
                )

            await wait_until(drained, 60, "every runner to be gone")
            served = dict(server.simulator.stats.charged)

    print(f"charged by operation: simulate {simulated}, daemon {served}")
    # What the trace decides: one runner, so one JIT configuration, per job.
    jit = "actions/generate-runner-jitconfig-for-org"
    assert simulated[jit] == served[jit] == len(TRACE)
    # Every operation the controller sends, both ways alike (the daemon's start-up checks of
    # its credential are its own: the simulation has no credential to check).
    start_up = {"meta/root", "rate-limit/get", "users/get-authenticated", "orgs/get"}
    operations = set(simulated) | (set(served) - start_up)
    differing = {
        op: (served.get(op, 0), simulated.get(op, 0))
        for op in sorted(operations)
        if not _within_tolerance(served.get(op, 0), simulated.get(op, 0))
    }
    assert not differing, f"(daemon, simulate) calls differ beyond the tolerance: {differing}"
