"""Two daemons, one state: one leads, the other stands by, takes webhooks into the shared
store and takes over when the leader goes.

In process, over real HTTP: the GitHub simulator, two :class:`Daemon` on one state (a SQLite
file, and a real Postgres database), the local backend running stand-in runners. Polling is
off, so jobs reach the leader only through the webhooks the standby stored. (Two real
``runnerscale run`` processes and a ``kill -9``: ``tests/e2e/test_two_daemons.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runnerscale.config import load_config
from runnerscale.config.schema import Config
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorServer
from tests.e2e.control import control_client
from tests.e2e.harness import (
    ENV,
    WEBHOOK_SECRET,
    all_done,
    leftovers,
    queue_jobs,
    simulator,
    wait_until,
    write_config,
)
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url", "simulator"]

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path, simulator: SimulatorServer) -> Config:
    state = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    path = write_config(tmp_path, simulator.url, poll_interval="1h", state=state)
    return load_config(path, env={**ENV, "HOME": str(tmp_path)})


@pytest.fixture
async def daemons(config: Config, tmp_path: Path) -> AsyncIterator[list[Daemon]]:
    """Two daemons of one deployment (one config, one state, but a control socket each: one
    path is one daemon's), started in turn."""
    started: list[Daemon] = []
    try:
        for name in ("first", "second"):
            server = config.server.model_copy(update={"control": f"unix://{tmp_path}/{name}.sock"})
            daemon = Daemon.build(config.model_copy(update={"server": server}), port=0)
            started.append(daemon)
            await daemon.start()
        yield started
    finally:
        for daemon in reversed(started):
            await daemon.stop()


async def test_the_standby_stores_webhooks_for_the_leader_and_takes_over(
    simulator: SimulatorServer, daemons: list[Daemon], tmp_path: Path
) -> None:
    leader, standby = daemons
    world = simulator.simulator.world
    assert leader.succession.leading
    assert not standby.succession.leading
    assert not standby.controller.running
    # One deployment: one controller id, from the state they share.
    assert leader.succession.controller_id == standby.succession.controller_id
    assert leader.succession.controller_id.startswith("rs-")

    async with (
        httpx.AsyncClient(base_url=standby.url) as public,
        control_client(standby) as http,
    ):
        ready = await public.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "role": "standby"})
        status = (await http.get("/api/v1/status")).json()
        leader_id = leader.succession.role().instance
        assert status["leading"] is False
        assert status["leader"]["id"] == leader_id
        assert status["instance"] == standby.succession.role().instance != leader_id
        refused = await http.post("/api/v1/pools/linux-x64/scale-up", json={"count": 1})
        assert refused.status_code == 409
        assert leader_id in refused.json()["message"]
    async with control_client(leader) as http:
        status = (await http.get("/api/v1/status")).json()
        assert (status["leading"], status["leader"]["id"]) == (True, leader_id)

    # Webhooks reach only the standby: it stores them, the leader serves the jobs.
    simulator.simulator.webhooks.add_hook(f"{standby.url}/webhook", WEBHOOK_SECRET)
    first = queue_jobs(simulator, 2)
    await wait_until(lambda: all_done(world, first), 60, "jobs served through the standby")
    assert not standby.controller.running
    made_by_leader = {r.name for r in leader.store.runners()}
    assert {world.jobs[j].runner_name for j in first} <= made_by_leader

    # The leader stops (gives the lead up): the standby takes over and serves the next ones.
    await leader.stop()
    daemons.remove(leader)
    await wait_until(lambda: standby.succession.leading, 15, "the standby to take the lead")
    assert standby.controller.running
    second = queue_jobs(simulator, 2)
    await wait_until(lambda: all_done(world, second), 60, "jobs served by the new leader")

    async def nothing_left() -> bool:
        left = await leftovers(simulator, tmp_path / "runners")
        live = [r for r in standby.store.runners() if r.state.live]
        return not any(left.values()) and not live

    await wait_until(nothing_left, 60, "clean-up")
    names = [r.name for r in standby.store.runners()]
    assert len(names) == len(set(names)) == 4  # one runner per job, none made twice
