"""Two deployments on one host do not adopt (or remove) each other's runners.

Each state holds its own controller id, and the local backend tags every runner with it and
lists only its own. Here two deployments (two states) share even the backend's folder and the
pool's name: the second one's recovery, poll and janitor must leave the first one's runners
alone. In process, over real HTTP, with stand-in runners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runnerscale.config import load_config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.model import RunnerState
from tests.e2e.harness import ENV, local_pool, simulator, wait_until, write_config

__all__ = ["simulator"]

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def deployment(tmp_path: Path, name: str, api_url: str) -> Daemon:
    """A deployment of its own (its folder, its state), with the one shared runner folder.
    Its runner names differ: one GitHub organisation tells runners apart by name only."""
    pools = local_pool(tmp_path, 4, "1h").replace(
        "    provider: local", f"    runner_prefix: rs-{name}-\n    provider: local"
    )
    folder = tmp_path / name
    folder.mkdir()
    path = write_config(folder, api_url, poll_interval="1h", pools=pools)
    return Daemon.build(load_config(path, env={**ENV, "HOME": str(folder)}), port=0)


async def test_a_second_deployment_leaves_the_first_ones_runners_alone(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    first = deployment(tmp_path, "first", simulator.url)
    await first.start()
    try:
        created = await first.controller.scale_up("linux-x64", 2)
        world = simulator.simulator.world
        await wait_until(
            lambda: len([r for r in world.runners.values() if r.connected]) == 2,
            30,
            "the first deployment's runners online",
        )
        ours = first.succession.controller_id
        records = [
            json.loads(path.read_text())
            for path in (tmp_path / "runners").glob("linux-x64/*/instance.json")
        ]
        assert sorted(r["runner_name"] for r in records) == sorted(created)
        assert {r["controller_id"] for r in records} == {ours}

        second = deployment(tmp_path, "second", simulator.url)
        await second.start()
        try:
            assert second.succession.leading  # a state of its own: nobody to stand by for
            assert second.succession.controller_id != ours
            # Its recovery ran at start; now a poll and a janitor pass, as its loops make.
            await second.controller.poll_once()
            await second.controller.janitor.sweep()
            assert await second.controller.pools["linux-x64"].provider.list() == []
            assert second.store.runners() == []
        finally:
            await second.stop()

        await first.controller.poll_once()
        assert {r.name: r.state for r in first.store.runners()} == dict.fromkeys(
            created, RunnerState.IDLE
        )
        assert len([r for r in world.runners.values() if r.connected]) == 2
        # Its own operator can still remove them (the janitor may finish a removal first).
        await first.controller.scale_down("linux-x64")
        await wait_until(
            lambda: all(r.state is RunnerState.GONE for r in first.store.runners()),
            30,
            "the first deployment's runners removed by its operator",
        )
    finally:
        await first.stop()
