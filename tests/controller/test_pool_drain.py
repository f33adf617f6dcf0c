"""A pool an operator takes out of service (``runnerscale pools drain``): its runners without a
job go at once (GitHub first), busy ones finish their job, then its backend is swept once;
it stays drained across a restart until resumed (issue 17)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from starlette.applications import Starlette

from runnerscale.controller.loops import ScaleUpRefusedError
from runnerscale.controller.pooldrain import key
from runnerscale.metrics import Metrics
from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import DeleteOutcome
from runnerscale.server import DaemonHTTP
from runnerscale.succession import Role
from tests.controller.conftest import MakeRig, Rig
from tests.controller.test_reruns import running


async def finish(world: Rig, job_id: int, name: str) -> None:
    """The job ends; the JIT runner leaves GitHub and its process exits."""
    await world.deliver(
        world.github.update_job(
            job_id, state=JobState.COMPLETED, conclusion="success", completed_at=9.0
        )
    )
    world.github.deregister(name)
    world.provider.exit(name, 0)


def drain_state(world: Rig) -> str:
    (pool,) = world.controller.status.pools
    assert pool.drain is not None
    return pool.drain.state


async def test_idle_and_booting_go_now_busy_finishes_its_job_then_the_backend_is_swept_once(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    busy = await running(world, 7)
    idle = await world.idle_runner()
    booting = await world.booting_runner()
    leftover = world.provider.add_instance("rs-linux-leftover")  # nothing tracks it
    world.journal.clear()

    with caplog.at_level(logging.INFO, logger="runnerscale"):
        report = await world.controller.drain_pool("linux")
    assert (set(report.removed), report.left, report.already) == ({idle, booting}, [busy], False)
    for name in (idle, booting):
        assert world.runner(name).state is RunnerState.GONE
        assert [op for op in world.journal.ops(subject=name) if op.startswith("delete")] == [
            "delete_runner",  # GitHub first: it takes no job meanwhile
            "delete",
        ]
    assert "pool linux: drained by an operator" in caplog.text

    # Demand, min_idle or not, creates nothing; the queued job is reported, not lost.
    await world.queue(8)
    await world.reconcile()
    assert world.runners(RunnerState.PENDING, RunnerState.BOOTING) == []
    (pool,) = world.controller.status.pools
    assert pool.queued == 1
    assert "drained (1 queued wait, 1 busy finishes its job)" in pool.reason
    assert drain_state(world) == "draining: 1 busy runner left"

    # While the busy runner runs its job, the backend is not swept.
    await world.poll()
    assert world.runner(busy).state is RunnerState.BUSY
    assert "remove_all" not in world.journal.ops("provider")
    assert leftover.id in world.provider.instances

    # Its job ends: it is reaped, then the next listing sweeps what the backend holds.
    await finish(world, 7, busy)
    await world.poll()
    await world.reconcile()
    assert world.runner(busy).state is RunnerState.GONE
    await world.poll()
    assert world.provider.instances == {}
    await world.reconcile()
    assert drain_state(world) == "drained, backend swept"
    stored = json.loads(world.store.get_value(key("linux")) or "")
    assert (stored["drained"], stored["swept"]) == (True, True)

    # Once: an instance appearing later is not the drain's to sweep (the janitor's).
    world.provider.add_instance("rs-linux-later")
    deletes = world.journal.ops("provider").count("delete")
    await world.poll()
    assert world.journal.ops("provider").count("delete") == deletes


async def test_remove_all_is_used_when_the_backend_has_it(make_world: MakeRig) -> None:
    world = make_world(removes_all=True)
    idle = await world.idle_runner()
    report = await world.controller.drain_pool("linux")
    assert (report.removed, report.left) == ([idle], [])
    world.provider.add_instance("rs-linux-leftover")
    world.journal.clear()
    await world.poll()
    await world.poll()
    provider_ops = world.journal.ops("provider")
    assert provider_ops.count("remove_all") == 1
    assert "delete" not in provider_ops
    assert world.provider.instances == {}


async def test_a_failed_sweep_is_retried_after_the_pools_backoff(
    make_world: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(removes_all=True)
    await world.controller.drain_pool("linux")
    world.provider.fail("remove_all", times=1)
    with caplog.at_level(logging.WARNING, logger="runnerscale"):
        await world.poll()
    assert "pool linux: sweeping its backend after the drain failed" in caplog.text
    assert not world.pool.healthy
    assert world.pool.drained is not None
    assert not world.pool.drained.swept
    await world.poll()  # within the backoff: not asked again
    assert world.journal.ops("provider").count("remove_all") == 1
    world.clock.advance(10)
    await world.poll()
    assert world.journal.ops("provider").count("remove_all") == 2
    assert world.pool.drained.swept
    assert world.pool.healthy
    assert ("error", "linux", "delete") in world.events


async def test_a_runner_taking_a_job_as_it_is_removed_keeps_it(world: Rig) -> None:
    """GitHub's 422: it took a job just now. It runs it; the drain leaves it to finish."""
    idle = await world.idle_runner()
    world.github.delete_outcomes[idle] = DeleteOutcome.BUSY
    report = await world.controller.drain_pool("linux")
    assert (report.removed, report.left) == ([], [idle])
    assert world.runner(idle).state is RunnerState.BUSY
    assert world.provider.find(idle) is not None


async def test_resume_scales_again_and_scale_up_is_refused_while_drained(world: Rig) -> None:
    await world.controller.drain_pool("linux")
    with pytest.raises(
        ScaleUpRefusedError,
        match=r"^pool linux is drained: it starts no runner; runnerscale pools resume linux",
    ):
        await world.controller.scale_up("linux", 1)
    await world.queue(1)
    await world.reconcile()
    assert world.runners() == []

    assert world.controller.resume_pool("linux") is True
    assert world.controller.resume_pool("linux") is False  # not drained: nothing changes
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert world.controller.status.pools[0].drain is None


async def test_the_drain_survives_a_restart_and_so_does_its_sweep(world: Rig) -> None:
    await world.controller.drain_pool("linux")
    await world.poll()  # nothing live: swept
    world.restart()
    assert world.pool.drained is not None
    assert world.pool.drained.swept
    await world.queue(1)
    await world.reconcile()
    assert world.runners() == []
    assert drain_state(world) == "drained, backend swept"

    world.controller.resume_pool("linux")
    world.restart()
    assert world.pool.drained is None
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1


def control_api(world: Rig, *, leading: bool = True) -> httpx.AsyncClient:
    controller = world.controller
    metrics = Metrics(lambda: controller.status, lambda: None)
    role = Role("rs-1", "host:1:ab", leading, None, True)
    http = DaemonHTTP(controller, world.store, metrics, None, role=lambda: role)
    app = Starlette(routes=http.routes("control"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://daemon")


async def test_the_control_api_drains_and_resumes(world: Rig) -> None:
    idle = await world.idle_runner()
    async with control_api(world) as http:
        unknown = await http.post("/api/v1/pools/nope/drain", json={})
        assert unknown.status_code == 404
        assert unknown.json()["message"] == "no pool named 'nope' (pools: linux)"
        assert (await http.post("/api/v1/pools/nope/resume", json={})).status_code == 404

        drained = await http.post("/api/v1/pools/linux/drain", json={})
        assert drained.status_code == 200
        assert drained.json() == {"pool": "linux", "removed": [idle], "left": [], "already": False}
        again = await http.post("/api/v1/pools/linux/drain", json={})
        assert again.json()["already"] is True

        up = await http.post("/api/v1/pools/linux/scale-up", json={"count": 1})
        assert up.status_code == 409
        assert "runnerscale pools resume linux" in up.json()["message"]

        await world.reconcile()
        status = (await http.get("/api/v1/status")).json()
        assert status["pools"][0]["drain"]["state"] == "drained"
        assert metrics_line(world) == 'runnerscale_pool_drained{pool="linux"} 1.0'

        resumed = await http.post("/api/v1/pools/linux/resume", json={})
        assert resumed.json() == {"pool": "linux", "resumed": True}
        await world.reconcile()
        assert metrics_line(world) == 'runnerscale_pool_drained{pool="linux"} 0.0'


def metrics_line(world: Rig) -> str:
    controller = world.controller
    text = Metrics(lambda: controller.status, lambda: None).render().decode()
    (line,) = [x for x in text.splitlines() if x.startswith("runnerscale_pool_drained{")]
    return line


async def test_a_standby_refuses_to_drain_or_resume(world: Rig) -> None:
    async with control_api(world, leading=False) as http:
        for action in ("drain", "resume"):
            refused = await http.post(f"/api/v1/pools/linux/{action}", json={})
            assert refused.status_code == 409
            assert "this daemon stands by" in refused.json()["message"]
    assert world.pool.drained is None
