"""A pool whose backend places runners on several hosts (a ``PlacingProvider``): jobs spread
over the nodes, a deploy job only gets a runner registered (and placed) with ``deploy``, a job
only a down node could take is reported and provisioned once the node is back, and runners on
a down node are neither free nor holding a live node's slot, and stay while it is away."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette

from runnerscale.controller.actions import node_groups
from runnerscale.controller.loops import NodeStatus, ScaleUpRefusedError
from runnerscale.metrics import Metrics
from runnerscale.model import JobState, LabelGroup, RunnerState, labels_beyond, normalize_labels
from runnerscale.protocols import NodeState, Placement
from runnerscale.server import DaemonHTTP
from tests.controller.conftest import IDLE_TIMEOUT, JOB_LABELS, POOL_LABELS, MakeRig, Rig
from tests.controller.fakes import FakeFleet, FakeNode

DEPLOY = frozenset({"deploy"})
DEPLOY_JOB = (*JOB_LABELS, "deploy")
DEPLOY_LABELS = (*POOL_LABELS, "deploy")


def three_nodes(*, plain: int = 2, deploy: int = 1) -> list[FakeNode]:
    """Two plain nodes with ``plain`` slots each, and one with ``deploy`` and ``deploy``."""
    return [FakeNode("n1", plain), FakeNode("n2", plain), FakeNode("n3", deploy, DEPLOY)]


def fleet_of(world: Rig) -> FakeFleet:
    assert isinstance(world.provider, FakeFleet)
    return world.provider


def placed(world: Rig) -> Counter[str]:
    """How many instances each node holds."""
    return Counter(fleet_of(world).where[i] for i in fleet_of(world).instances)


async def test_jobs_spread_over_the_nodes_and_keep_the_deploy_node_for_deploy_jobs(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=6, nodes=three_nodes())
    for job_id in range(1, 5):
        await world.queue(job_id)
    await world.reconcile()

    runners = world.runners(RunnerState.BOOTING)
    assert len(runners) == 4
    assert placed(world) == {"n1": 2, "n2": 2}
    for runner in runners:
        assert runner.labels == POOL_LABELS
        registration = world.github.find(runner.name)
        assert registration is not None
        assert registration.labels == POOL_LABELS

    # Plain nodes full: a fifth plain job takes the deploy node's slot (nothing else can).
    await world.queue(5)
    await world.reconcile()
    assert placed(world) == {"n1": 2, "n2": 2, "n3": 1}


async def test_a_deploy_job_gets_a_runner_registered_with_deploy_on_the_deploy_node(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=6, nodes=three_nodes())
    await world.queue(1, labels=DEPLOY_JOB)
    await world.queue(2)
    await world.reconcile()

    by_labels = {runner.labels: runner for runner in world.runners()}
    assert set(by_labels) == {POOL_LABELS, DEPLOY_LABELS}
    deploy = by_labels[DEPLOY_LABELS]
    registration = world.github.find(deploy.name)
    assert registration is not None
    assert registration.labels == DEPLOY_LABELS
    spec = next(spec for spec in world.provider.specs if spec.runner_name == deploy.name)
    assert spec.labels == DEPLOY_LABELS
    assert fleet_of(world).on("n3") == {deploy.name}

    # A second deploy job waits for the deploy node's one slot; plain nodes do not take it.
    await world.queue(3, labels=DEPLOY_JOB)
    await world.reconcile()
    assert len(world.runners()) == 2
    (status,) = world.controller.status.pools
    assert "1 waits for a free node slot (1 needs deploy)" in status.reason


async def test_a_job_only_a_down_node_could_take_is_reported_then_served_when_it_is_back(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=6, nodes=three_nodes())
    fleet_of(world).down("n3", "connection refused", since=5.0)
    await world.queue(1, labels=DEPLOY_JOB)
    await world.reconcile()

    assert world.runners() == []
    status = world.controller.status
    assert status.unmatched_jobs == 1
    (unmatched,) = status.unmatched
    assert unmatched.reason == "pool 'linux': no live node offers deploy (down: n3)"
    (pool,) = status.pools
    assert pool.nodes == [
        NodeStatus("n1", up=True, slots=2, labels=()),
        NodeStatus("n2", up=True, slots=2, labels=()),
        NodeStatus(
            "n3", up=False, slots=1, labels=("deploy",), reason="connection refused", since=5.0
        ),
    ]

    fleet_of(world).back("n3", since=9.0)
    await world.reconcile()
    (runner,) = world.runners()
    assert runner.labels == DEPLOY_LABELS
    assert fleet_of(world).on("n3") == {runner.name}
    assert world.controller.status.unmatched_jobs == 0
    assert world.controller.status.pools[0].nodes[2] == NodeStatus(  # type: ignore[index]
        "n3", up=True, slots=1, labels=("deploy",), since=9.0, runners=1
    )


async def test_runners_on_a_down_node_are_not_free_hold_no_live_slot_and_stay(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=6, nodes=[FakeNode("n1", 1), FakeNode("n2", 2)])
    away = await world.idle_runner()  # spread: on n1 (fewest runners per slot, first)
    busy = await world.busy_runner()  # on n2
    running = world.job(100, JobState.IN_PROGRESS, runner_name=busy)
    await world.deliver(world.github.put_job(running))
    assert fleet_of(world).on("n1") == {away}
    assert fleet_of(world).on("n2") == {busy}

    fleet_of(world).down("n1")
    # The idle runner on n1 cannot take the job; n2 has one slot left (n1's runner holds none
    # of it, though both are plain nodes): one runner is created there.
    await world.queue(1)
    await world.reconcile()
    created = {r.name for r in world.runners(RunnerState.BOOTING)}
    assert len(created) == 1
    assert fleet_of(world).on("n2") == {busy, *created}
    (status,) = world.controller.status.pools
    assert "1 on down nodes" in status.reason

    # n2 is full now: another job waits, and the runner on n1 is not counted free.
    await world.queue(2)
    await world.reconcile()
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert "1 waits for a free node slot" in world.controller.status.pools[0].reason

    # Long past its idle timeout, with nothing for it to do, the runner on n1 stays: its node
    # cannot be asked to remove it. The janitor leaves it too (the backend still lists it).
    world.clock.advance(IDLE_TIMEOUT * 5)
    await world.reconcile()
    await world.sweep()
    assert world.runner(away).state is RunnerState.IDLE
    assert "delete" not in world.journal.ops("provider", away)

    # Back: it is free again (it takes job 2), and nothing was removed or created twice.
    fleet_of(world).back("n1")
    await world.reconcile()
    assert world.runner(away).state is RunnerState.IDLE
    assert len(world.runners(RunnerState.BOOTING)) == 1
    assert "waits" not in world.controller.status.pools[0].reason


async def test_a_pool_whose_every_node_is_down_creates_nothing_and_says_why(
    make_world: MakeRig,
) -> None:
    world = make_world(nodes=[FakeNode("n1", 2), FakeNode("n2", 2, DEPLOY)])
    fleet_of(world).down("n1")
    fleet_of(world).down("n2")
    await world.queue(1)
    await world.reconcile()

    assert world.runners() == []
    assert world.journal.ops("provider").count("create") == 0
    status = world.controller.status
    assert status.unmatched[0].reason == "pool 'linux': no node is up (down: n1, n2)"
    assert status.pools[0].reason.endswith("no node is up (down: n1, n2)")


async def test_a_manual_scale_up_fills_the_groups_with_the_most_free_slots(
    make_world: MakeRig,
) -> None:
    world = make_world(max_runners=8, nodes=three_nodes(plain=1, deploy=2))
    # Slots: plain 2 (n1, n2), deploy 2 (n3). Each runner goes to the group with the most
    # free slots, the narrowest on a tie: plain, deploy, plain, deploy.
    created = await world.controller.scale_up("linux", 3)
    assert [world.runner(name).labels for name in created] == [
        POOL_LABELS,
        DEPLOY_LABELS,
        POOL_LABELS,
    ]
    assert placed(world) == {"n1": 1, "n2": 1, "n3": 1}
    # Beyond the free slots (one left, on n3), nothing is planned: the cap is not the limit.
    created = await world.controller.scale_up("linux", 3)
    assert [world.runner(name).labels for name in created] == [DEPLOY_LABELS]
    assert await world.controller.scale_up("linux", 1) == []
    assert placed(world) == {"n1": 1, "n2": 1, "n3": 2}


async def test_a_manual_scale_up_is_refused_when_no_node_is_up(make_world: MakeRig) -> None:
    world = make_world(nodes=[FakeNode("n1", 2), FakeNode("n2", 2, DEPLOY)])
    fleet_of(world).down("n1")
    fleet_of(world).down("n2")
    with pytest.raises(
        ScaleUpRefusedError, match=r"^pool linux: no node is up \(down: n1, n2\), so no"
    ):
        await world.controller.scale_up("linux", 2)
    assert world.runners() == []

    # Through the control API: a 409 with the reason.
    controller = world.controller
    metrics = Metrics(lambda: controller.status, lambda: None)
    app = Starlette(routes=DaemonHTTP(controller, world.store, metrics, None).routes("control"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as http:
        answer = await http.post("/api/v1/pools/linux/scale-up", json={"count": 1})
    assert answer.status_code == 409
    assert "no node is up (down: n1, n2)" in answer.json()["message"]


async def test_an_ordinary_pool_lists_no_nodes_and_registers_with_its_own_labels(
    world: Rig,
) -> None:
    await world.queue(1)
    await world.reconcile()
    (runner,) = world.runners()
    assert runner.labels == ()  # the pool's, as configured
    assert world.provider.specs[0].labels == POOL_LABELS
    assert world.controller.status.pools[0].nodes is None


def test_a_node_label_the_pool_has_already_makes_no_group_of_its_own() -> None:
    """The scaler's side of a host that repeats a pool label (the ssh provider leaves it out
    of the node's own labels with the same function)."""
    placement = Placement(
        nodes=(
            NodeState("n1", True, 2, frozenset()),
            NodeState("n2", True, 2, frozenset({"x64"})),
            NodeState("n3", False, 1, frozenset({"x64", "deploy"})),
        )
    )
    assert node_groups(placement, normalize_labels(POOL_LABELS)) == (
        LabelGroup(frozenset(), 4),
        LabelGroup(DEPLOY, 0, ("n3",)),
    )
    assert labels_beyond(["X64", " Deploy ", ""], POOL_LABELS) == DEPLOY
