"""The SSH backend's provider over several nodes, on real OpenSSH servers on loopback (each
a machine of its own to the test user: ``NodeServer``), in process mode with the stand-in
``run.sh``: placement spread and pack, per-node labels, a node that stops answering and comes
back, a stalled node that holds up only its own creations, adoption by a new provider, and the
backend's entry (capacity, host facts)."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.hostlabels import NVIDIA_LABELS, HostFacts, normalize_arch
from runnerscale.model import InstanceSpec, JobState, PoolSpec, RunnerState, normalize_labels
from runnerscale.protocols import PlacingProvider, ProviderError
from runnerscale.providers.ssh import BACKEND
from runnerscale.providers.ssh.provider import SshProvider
from runnerscale.providers.ssh.settings import SshConfig
from tests.controller.conftest import POOL_LABELS, REPO_A, Rig
from tests.controller.fakes import FakeGitHub, Journal
from tests.providers.ssh.support import (
    NodeServer,
    RunnerScript,
    provider,
    runner_script,
    ssh_config,
    unique,
)

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]

LABELS = ("self-hosted", "linux", "x64")
PATIENCE = 60.0


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[NodeServer, NodeServer, NodeServer]]:
    """Three nodes; the third is the one tests stall (its gate)."""
    started: list[NodeServer] = []
    try:
        for _ in range(3):
            started.append(NodeServer.start())
        key = started[0].key_file.with_name(started[0].key_file.name + ".pub").read_text()
        for server in started[1:]:  # one client key for every node, as a pool has
            with server.authorized_keys.open("a") as keys:
                keys.write(key)
        yield started[0], started[1], started[2]
    finally:
        for server in started:
            server.kill_runners()
            server.stop()


@pytest.fixture(scope="module")
def script() -> Iterator[RunnerScript]:
    with runner_script() as made:
        yield made


class Pool:
    """Providers of one pool (a fresh controller id and work folder) over some of the nodes."""

    def __init__(
        self, nodes: list[NodeServer], script: RunnerScript, folder: Path, key_file: Path
    ) -> None:
        self.nodes = nodes
        self.key_file = key_file
        self.script = script
        self.folder = folder
        #: The daemon's state directory (where the providers keep their memory of the nodes).
        self.state_dir = folder / "state"
        self.controller_id = unique("rsc")
        self.work = unique("provider")
        self.providers: list[SshProvider] = []
        self.count = 0

    def config(self, **block: Any) -> SshConfig:
        values: dict[str, Any] = {
            "mode": "process",
            "command": [str(self.script.path)],
            "work_dir": f"~/{self.work}",
            "key_file": str(self.key_file),
        }
        values.update(block)
        return ssh_config(self.nodes, self.folder, **values)

    def provider(self, **block: Any) -> SshProvider:
        made = provider(self.config(**block), "vps", self.controller_id, self.state_dir, LABELS)
        self.providers.append(made)
        return made

    def spec(self, *extra: str) -> InstanceSpec:
        self.count += 1
        return InstanceSpec(
            runner_name=f"{self.controller_id}-{self.count}",
            pool="vps",
            jitconfig="JIT-not-a-secret-here",
            labels=(*LABELS, *extra),
        )

    async def close(self) -> None:
        for made in self.providers:
            await made.close()
        for node in self.nodes:
            node.kill_runners()


@pytest.fixture
async def pool_of(
    servers: tuple[NodeServer, NodeServer, NodeServer], script: RunnerScript, tmp_path: Path
) -> AsyncIterator[Callable[..., Pool]]:
    made: list[Pool] = []

    def make(*indexes: int) -> Pool:
        pool = Pool([servers[index] for index in indexes], script, tmp_path, servers[0].key_file)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.close()


def node_of(instance_id: str) -> str:
    return instance_id.rpartition("/")[0]


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(PATIENCE):
        while True:
            answer = check()
            if not isinstance(answer, bool):
                answer = await answer
            if answer:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


def up(made: SshProvider, node: NodeServer) -> bool:
    return any(state.up for state in made.placement().nodes if state.name == node.address)


async def ready(made: SshProvider) -> SshProvider:
    """Once every node has answered its first check (a creation right after the start goes to
    the first node that answers)."""
    await until(lambda: all(state.up for state in made.placement().nodes), "every node is up")
    return made


async def test_the_provider_places_runners_and_says_where(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    pool = pool_of(0, 1)
    made = await ready(
        pool.provider(hosts=[{"address": s.address, "slots": 2} for s in servers[:2]])
    )
    assert isinstance(made, PlacingProvider)
    instance = await made.create(pool.spec())
    assert node_of(instance.id) == servers[0].address
    assert instance.detail.startswith(f"node {servers[0].address}: ")
    placement = made.placement()
    assert [(state.name, state.up, state.slots, state.runners) for state in placement.nodes] == [
        (servers[0].address, True, 2, 1),
        (servers[1].address, True, 2, 0),
    ]
    assert placement.unreachable == frozenset()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("spread", [0, 1, 0, 1]), ("pack", [0, 0, 1, 1])],
)
async def test_spread_and_pack(
    pool_of: Callable[..., Pool],
    servers: tuple[NodeServer, ...],
    policy: str,
    expected: list[int],
) -> None:
    pool = pool_of(0, 1)
    made = await ready(
        pool.provider(
            placement=policy, hosts=[{"address": s.address, "slots": 2} for s in servers[:2]]
        )
    )
    placed = [node_of((await made.create(pool.spec())).id) for _ in expected]
    assert placed == [servers[index].address for index in expected]
    # Concurrent creations spread too: each counts the others in flight.
    more = await asyncio.gather(*(made.create(pool.spec()) for _ in range(4)))
    counts = {s.address: 0 for s in servers[:2]}
    for instance in more:
        counts[node_of(instance.id)] += 1
    assert counts == {servers[0].address: 2, servers[1].address: 2}
    assert {state.runners for state in made.placement().nodes} == {4}


async def test_a_node_with_labels_of_its_own_takes_only_runners_that_ask_for_them(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    pool = pool_of(0, 1)
    made = pool.provider(
        hosts=[
            {"address": servers[0].address},
            {"address": servers[1].address, "labels": ["deploy"]},
        ]
    )
    plain = [await made.create(pool.spec()) for _ in range(3)]
    deploy = [await made.create(pool.spec("Deploy")) for _ in range(2)]
    assert {node_of(instance.id) for instance in plain} == {servers[0].address}
    assert {node_of(instance.id) for instance in deploy} == {servers[1].address}
    states = {state.name: state for state in made.placement().nodes}
    assert states[servers[1].address].extra_labels == frozenset({"deploy"})
    assert states[servers[0].address].slots >= 1  # learned from nproc
    # A pool whose every node has a label of its own has no room for a plain runner.
    only_deploy = pool.provider(hosts=[{"address": servers[1].address, "labels": ["deploy"]}])
    with pytest.raises(ProviderError, match=r"no node serves the labels \[.*'linux'.*\]"):
        await only_deploy.create(pool.spec())


async def test_a_host_label_the_pool_has_already_sets_the_node_apart_from_none(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    pool = pool_of(0, 1)
    made = await ready(
        pool.provider(
            hosts=[
                {"address": servers[0].address, "slots": 2},
                {"address": servers[1].address, "slots": 2, "labels": ["X64", "deploy"]},
            ]
        )
    )
    # x64 is the pool's: the second node is a deploy node, no more (as the scaler counts it).
    assert [state.extra_labels for state in made.placement().nodes] == [
        frozenset(),
        frozenset({"deploy"}),
    ]
    deploy = await made.create(pool.spec("deploy"))
    assert node_of(deploy.id) == servers[1].address
    plain = pool_of(0, 1).provider(
        hosts=[
            {"address": servers[0].address, "slots": 2},
            {"address": servers[1].address, "slots": 2, "labels": ["x64"]},
        ]
    )
    await ready(plain)
    placed = [node_of((await plain.create(pool.spec())).id) for _ in range(2)]
    assert placed == [servers[0].address, servers[1].address]  # spread over both


async def test_a_node_that_stops_answering_is_down_and_comes_back(
    pool_of: Callable[..., Pool],
    servers: tuple[NodeServer, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runnerscale.providers.ssh")
    pool = pool_of(0, 1)
    first, second = servers[0], servers[1]
    made = await ready(pool.provider())
    on_first = await made.create(pool.spec())
    on_second = await made.create(pool.spec())
    assert [node_of(on_first.id), node_of(on_second.id)] == [first.address, second.address]
    assert {instance.id for instance in await made.list()} == {on_first.id, on_second.id}

    second.sshd.stop()
    try:
        await until(lambda: not up(made, second), "the stopped node is marked down")
        state = next(s for s in made.placement().nodes if s.name == second.address)
        assert state.reason  # why, as the connection said it
        assert state.since is not None
        assert made.placement().unreachable == {on_second.runner_name}

        # Its runner is still reported, running, with the reason; nothing is lost.
        listed = {instance.id: instance for instance in await made.list()}
        assert set(listed) == {on_first.id, on_second.id}
        assert listed[on_second.id].running
        assert listed[on_second.id].detail.startswith(f"node {second.address} is down since")
        got = await made.get(on_second.id)
        assert got is not None
        assert got.running
        with pytest.raises(ProviderError, match=r"cannot remove runner .* now"):
            await made.delete(on_second.id)

        # Creations go to the other node, whatever the spread would say.
        placed = [node_of((await made.create(pool.spec())).id) for _ in range(2)]
        assert placed == [first.address, first.address]

        # A new provider (a restart) reports them as its memory file recorded them.
        fresh = pool.provider()
        recalled = {instance.id: instance for instance in await fresh.list()}
        assert recalled[on_second.id].running
        assert recalled[on_second.id].detail.endswith("their state is unknown)")
        await until(lambda: up(fresh, first), "the other node answers its first check")
        assert fresh.placement().unreachable == {on_second.runner_name}
        assert not up(fresh, second)
    finally:
        assert second.sshd.start(second.host, second.port)

    await until(lambda: up(made, second), "the node is up again")
    got = await made.get(on_second.id)
    assert got is not None
    assert got.running
    assert got.detail.startswith(f"node {second.address}: pid ")
    await made.delete(on_second.id)
    assert await made.get(on_second.id) is None
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert [r.levelno for r in downs] == [logging.WARNING] * len(downs)
    assert len([r for r in downs if second.address in r.getMessage()]) == 2  # two providers
    assert any("back up" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


async def test_a_stalled_node_holds_up_only_its_own_creations(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    stalled, fast = servers[2], servers[0]
    pool = pool_of(2, 0)
    made = await ready(
        pool.provider(
            hosts=[{"address": stalled.address, "slots": 2}, {"address": fast.address, "slots": 2}]
        )
    )
    stalled.gate.touch()
    try:
        held = asyncio.create_task(made.create(pool.spec()))  # spread: the first node
        await until(lambda: made.placement().nodes[0].runners == 1, "the creation is in flight")
        quick = await asyncio.wait_for(made.create(pool.spec()), PATIENCE)
        assert node_of(quick.id) == fast.address
        assert not held.done()  # still waiting on the stalled node
        listed = await asyncio.wait_for(made.get(quick.id), PATIENCE)
        assert listed is not None
        assert listed.running
    finally:
        stalled.gate.unlink()
    instance = await asyncio.wait_for(held, PATIENCE)
    assert node_of(instance.id) == stalled.address


async def test_a_node_that_hangs_is_given_up_on_when_its_check_fails(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    stalled = servers[2]
    pool = pool_of(2, 0)
    made = await ready(pool.provider(connect_timeout=1))
    on_stalled = await made.create(pool.spec())
    assert node_of(on_stalled.id) == stalled.address
    stalled.gate.touch()  # from now on, nothing it is asked answers
    try:
        # A removal under way gives up when the node is marked down (the controller retries).
        with pytest.raises(ProviderError, match=r"was being removed when node .* is down"):
            await asyncio.wait_for(made.delete(on_stalled.id), PATIENCE)
        listed = await asyncio.wait_for(made.list(), PATIENCE)
        assert stalled.gate.exists()
        (remembered,) = [i for i in listed if i.id == on_stalled.id]
        assert remembered.running
        assert "is down since" in remembered.detail
        assert "no answer within 2s (a health check" in remembered.detail  # twice connect_timeout
        assert not up(made, stalled)
        got = await asyncio.wait_for(made.get(on_stalled.id), PATIENCE)
        assert got == remembered
    finally:
        stalled.gate.unlink()
    await until(lambda: up(made, stalled), "the node answers again")
    await made.delete(on_stalled.id)


async def test_a_new_provider_adopts_what_runs_on_every_node(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    pool = pool_of(0, 1)
    old = await ready(pool.provider())
    made = [await old.create(pool.spec()) for _ in range(4)]
    await old.close()  # the runners keep running
    new = pool.provider()
    listed = {instance.id: instance for instance in await new.list()}
    assert set(listed) == {instance.id for instance in made}
    assert all(instance.running for instance in listed.values())
    assert {node_of(instance_id) for instance_id in listed} == {s.address for s in servers[:2]}
    # Its placement counts them: the next runner goes where there are fewest.
    assert [state.runners for state in new.placement().nodes] == [2, 2]
    for instance in made:
        await new.delete(instance.id)
    assert await new.list() == []


async def test_ids_of_other_nodes_or_forms_are_nobodys(pool_of: Callable[..., Pool]) -> None:
    made = pool_of(0).provider()
    assert await made.get("10.9.9.9:22/runner-1") is None
    assert await made.get("runner-1") is None
    await made.delete("10.9.9.9:22/runner-1")
    await made.delete("no-node-here")


def test_the_backend_caps_a_pool_at_its_slots_when_every_node_gives_them(tmp_path: Path) -> None:
    def block(*slots: int | None) -> SshConfig:
        return SshConfig.model_validate(
            {
                "user": "runner",
                "known_hosts": "/etc/runnerscale/known_hosts",
                "image": "runnerscale-runner:latest",
                "hosts": [
                    {"address": f"node{index}", **({} if count is None else {"slots": count})}
                    for index, count in enumerate(slots)
                ],
            },
            context={"base_dir": tmp_path},
        )

    assert BACKEND.capacity is not None
    assert BACKEND.capacity(block(4, 2)) == 6
    assert BACKEND.capacity(block(4, None)) is None


async def test_the_nodes_architecture_is_their_uname(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    pool = pool_of(0, 1)
    config = pool.config()
    assert BACKEND.host_facts is not None
    facts = await asyncio.to_thread(BACKEND.host_facts, config, pool.provider())
    assert facts.arch == normalize_arch(platform.machine())
    assert facts.accelerators == frozenset()  # (no GPU on these nodes)
    # Docker mode: the accelerators the pool passes to its containers, as hosts check says.
    passed = pool.config(mode="docker", image="runner:1", container={"gpus": "all"})
    facts = await asyncio.to_thread(BACKEND.host_facts, passed, pool.provider())
    assert facts == HostFacts(normalize_arch(platform.machine()), NVIDIA_LABELS)
    # A node that does not answer is left out; when none answers, the pool waits.
    servers[1].sshd.stop()
    try:
        facts = await asyncio.to_thread(BACKEND.host_facts, config, pool.provider())
        assert facts.arch == normalize_arch(platform.machine())
        lone = pool_of(1).config()
        with pytest.raises(ProviderError, match="no node answered"):
            await asyncio.to_thread(BACKEND.host_facts, lone, pool.provider())
    finally:
        assert servers[1].sshd.start(servers[1].host, servers[1].port)


def memory_file(pool: Pool) -> Path:
    return pool.state_dir / "ssh" / pool.controller_id / "vps.json"


def kill_runner(server: NodeServer, pool: Pool, name: str, *, forget: bool = False) -> None:
    """End one runner's process on a node behind the provider's back; with ``forget``, its
    folder goes too (the node no longer knows it)."""
    folder = server.home / pool.work / pool.controller_id / "vps" / name
    os.killpg(int((folder / "pid").read_text().split()[0]), signal.SIGKILL)
    if forget:
        shutil.rmtree(folder)


async def test_a_restart_while_a_node_is_down_reports_its_runners_as_last_recorded(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...]
) -> None:
    first, second = servers[0], servers[1]
    pool = pool_of(1, 0)
    block = {
        "placement": "pack",
        "hosts": [{"address": second.address, "slots": 3}, {"address": first.address}],
    }
    old = await ready(pool.provider(**block))
    busy, finishing, forgotten, elsewhere = [await old.create(pool.spec()) for _ in range(4)]
    assert [node_of(i.id) for i in (busy, finishing, forgotten)] == [second.address] * 3
    assert node_of(elsewhere.id) == first.address

    # What the nodes hold is kept on this host, for this deployment's pool only, privately,
    # and without a secret; a listing that finds the same runners does not write it again.
    path = memory_file(pool)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "JIT" not in text
    assert all(i.runner_name in text for i in (busy, finishing, forgotten, elsewhere))
    written = path.stat().st_ino
    await old.list()
    assert path.stat().st_ino == written
    await old.close()  # the daemon stops; its runners keep running

    second.sshd.stop()
    try:
        new = pool.provider(**block)
        listed = {instance.id: instance for instance in await new.list()}
        assert set(listed) == {i.id for i in (busy, finishing, forgotten, elsewhere)}
        for recalled in (busy, finishing, forgotten):
            assert listed[recalled.id].running
            assert listed[recalled.id].detail.startswith(f"node {second.address} is down since")
            assert "before a restart: their state is unknown" in listed[recalled.id].detail
        assert listed[elsewhere.id].detail.startswith(f"node {first.address}: pid ")
        assert not up(new, second)
        await until(lambda: up(new, first), "the other node answers its first check")
        placement = new.placement()
        assert placement.unreachable == {i.runner_name for i in (busy, finishing, forgotten)}
        assert [state.runners for state in placement.nodes] == [3, 1]
        assert await new.get(busy.id) == listed[busy.id]
        with pytest.raises(ProviderError, match=r"cannot remove runner .* now"):
            await new.delete(busy.id)
        assert path.stat().st_ino == written  # nothing changed: nothing written

        # While it is away, one runner ends and one is removed there by hand.
        kill_runner(second, pool, finishing.runner_name)
        kill_runner(second, pool, forgotten.runner_name, forget=True)
    finally:
        assert second.sshd.start(second.host, second.port)

    # Back: its real listing replaces the memory (the file too).
    await until(lambda: up(new, second), "the node is up again")
    listed = {instance.id: instance for instance in await new.list()}
    assert set(listed) == {busy.id, finishing.id, elsewhere.id}
    assert listed[busy.id].running
    assert listed[busy.id].detail.startswith(f"node {second.address}: pid ")
    assert not listed[finishing.id].running
    assert new.placement().unreachable == frozenset()
    assert forgotten.runner_name not in path.read_text()
    await new.delete(finishing.id)
    assert finishing.runner_name not in path.read_text()


async def test_a_memory_it_cannot_use_is_set_aside_and_replaced(
    pool_of: Callable[..., Pool], caplog: pytest.LogCaptureFixture
) -> None:
    pool = pool_of(0)
    path = memory_file(pool)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    made = await ready(pool.provider())
    assert "is not a memory of its nodes" in caplog.text
    instance = await made.create(pool.spec())
    assert instance.runner_name in path.read_text()
    await made.delete(instance.id)


async def test_after_a_restart_the_janitor_leaves_a_busy_runner_of_a_node_that_is_down(
    pool_of: Callable[..., Pool], servers: tuple[NodeServer, ...], tmp_path: Path
) -> None:
    """The controller's side of the memory: the instance of a busy runner on a node that does
    not answer after a restart has not vanished, so its runner is not finished and its job
    is not recorded as lost; it is still busy when the node is back."""
    node = servers[1]
    pool = pool_of(1)

    def made() -> SshProvider:
        provider_ = provider(pool.config(), "linux", pool.controller_id, pool.state_dir)
        pool.providers.append(provider_)
        return provider_

    journal = Journal()
    world = Rig(
        path=tmp_path / "state.db",
        clock=VirtualClock(),
        journal=journal,
        github=FakeGitHub(journal=journal),
        provider=await ready(made()),  # type: ignore[arg-type]  # (a real one, not a fake)
        spec=PoolSpec(name="linux", labels=normalize_labels(POOL_LABELS), max_runners=3),
        targets=[REPO_A],
    )
    try:
        await world.queue(7)
        await world.reconcile()
        (runner,) = world.runners(RunnerState.BOOTING)
        world.github.set_runner(runner.name, online=True, busy=True)
        await world.deliver(
            world.github.update_job(7, state=JobState.IN_PROGRESS, runner_name=runner.name)
        )
        assert world.runner(runner.name).state is RunnerState.BUSY

        node.sshd.stop()
        try:
            await world.provider.close()
            world.provider = made()  # type: ignore[assignment]
            world.restart()
            await world.sweep()
            await world.reconcile()
            assert world.runner(runner.name).state is RunnerState.BUSY
            assert world.store.job_losses() == []
            assert "instance_lost" not in world.controller.janitor.cleaned
            (status,) = world.controller.status.pools
            assert "1 on down nodes" in status.reason
        finally:
            assert node.sshd.start(node.host, node.port)

        await until(lambda: up(world.provider, node), "the node is up again")  # type: ignore[arg-type]
        await world.sweep()
        assert world.runner(runner.name).state is RunnerState.BUSY
        assert world.store.job_losses() == []
    finally:
        world.close()
