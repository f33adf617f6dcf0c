"""The SSH backend end to end in a fleet of real OpenSSH nodes (issue 14): the simulator, the
daemon and runners on network namespaces (``tests/sshfleet.py``), over real SSH and HTTP.

One fleet of three nodes serves the module, logged into as root (docker mode reaches the
session's Docker engine, ``tests/docker_engine.py``, as every node's engine through its
socket): ``node1`` and ``node2`` on port 22, ``node3`` on port 2222, which carries the label
``deploy``. The simulator listens on the fleet's bridge (``host_address``), so runners on the
nodes reach it. Process mode runs the stand-in runner (``runnerscale sim-runner``, which reads
its JIT config from ``ACTIONS_RUNNER_INPUT_JITCONFIG``) with the venv's interpreter on the
nodes; docker mode runs the test runner image. Every test ends by checking that nothing is
left: no runner folder or process on any node, no container, no runner at the fake GitHub, no
live runner in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

import runnerscale
from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.protocols import Store
from runnerscale.providers import registry
from runnerscale.providers.docker.provider import LABEL_CONTROLLER
from runnerscale.providers.pause import PAUSE_ENV
from runnerscale.providers.ssh.containers import LABEL_NODE
from tests.docker_engine import Engine
from tests.e2e.control import control_client
from tests.e2e.harness import (
    LINUX,
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    runnerscale_command,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)
from tests.sshfleet import Fleet, Node

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]

ISSUE_CONFIG = Path(__file__).parents[1] / "providers" / "ssh" / "issue14.yaml"
DEPLOY = (*LINUX, "deploy")
#: The stand-in runner, with the code under test, as a node's root runs it.
SIM_RUNNER = [sys.executable, "-m", "runnerscale", "sim-runner"]
SRC = str(Path(runnerscale.__file__).parents[1])
#: What the daemon's own environment gives the configuration (the issue's key_file).
KEY_ENV = "RUNNER_SSH_KEY_FILE"
#: The timeouts of every pool here: a node is checked every second, and found down within
#: two connect timeouts (its check's round trip).
QUICK = """\
      connect_timeout: 2s
      keepalive_interval: 2s
      command_timeout: 20s
      health_interval: 1s
      stop_grace: 2s
"""


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Three nodes, logged into as root (whose engine socket docker mode reaches)."""
    if "ssh" not in registry.installed():
        pytest.fail(
            "the installed runnerscale does not declare the ssh backend (it was installed "
            "before its entry point was added): run scripts/bootstrap again"
        )
    fleet = Fleet.start(3, user="root")
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
async def simulator(fleet: Fleet) -> AsyncIterator[SimulatorServer]:
    """The fake GitHub on the fleet's bridge, where runners on the nodes reach it."""
    world = WorldSettings(runner_offline_after=30.0)
    options = SimulatorOptions(host=fleet.host_address, tokens=(TOKEN,), world=world)
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


# -- configurations


def process_pool(fleet: Fleet, *, name: str = "vps", known_hosts: Path | None = None) -> str:
    """A pool in process mode over the three nodes: two slots each, node3 with ``deploy``."""
    node1, node2, node3 = fleet.nodes
    return f"""\
  - name: {name}
    labels: [self-hosted, linux, x64]
    provider: ssh
    max_runners: 6
    idle_timeout: 2s
    boot_timeout: 60s
    ssh:
      user: {fleet.user}
      key_file: {fleet.key_file}
      known_hosts: {known_hosts or fleet.known_hosts}
      mode: process
      command: {list(SIM_RUNNER)}
      env: {{PYTHONPATH: {SRC}}}
      hosts:
        - {{address: "{node1.address}", slots: 2}}
        - {{address: "{node2.address}", slots: 2}}
        - {{address: "{node3.address}", slots: 2, labels: [deploy]}}
{QUICK}"""


def issue_pool(fleet: Fleet, engine: Engine, image: str) -> str:
    """The pool of the issue as written, on the fleet: its first node is node1, its
    ``10.0.0.12:2222`` is node3; the engine is the session's, and the timeouts are short."""
    node1, _, node3 = fleet.nodes
    text = ISSUE_CONFIG.read_text().split("pools:\n", 1)[1]
    for issue, ours in (
        ("node1.example.net", node1.address),
        ("10.0.0.12:2222", f'"{node3.address}"'),
        ("user: runner", f"user: {fleet.user}"),
        ("/etc/runnerscale/known_hosts", str(fleet.known_hosts)),
        ("runnerscale-runner:latest", image),
        ("idle_timeout: 5m", "idle_timeout: 2s"),
    ):
        assert issue in text, f"the issue's configuration no longer says {issue}"
        text = text.replace(issue, ours)
    socket = engine.url.removeprefix("unix://")
    # The engine has no bridge network: runner containers use the host's, which reaches the
    # simulator on the fleet's bridge.
    extra = f"      docker_socket: {socket}\n      container: {{network: host}}\n{QUICK}"
    return text.replace("    ssh:\n", f"    ssh:\n{extra}", 1)


# -- what runs where


def node_of(runner: str, store: Store, fleet: Fleet) -> Node:
    """The node a runner was created on (its instance id is ``<node>/<name>``)."""
    record = store.get_runner(runner)
    assert record is not None, runner
    assert record.instance_id is not None, record
    return fleet.node(record.instance_id.rpartition("/")[0])


def folders_on(node: Node) -> list[str]:
    """Runner folders on the node (``~/runnerscale/<controller>/<pool>/<runner>``)."""
    return sorted(path.name for path in (node.home / "runnerscale").glob("*/*/*"))


def runner_processes(fleet: Fleet, node: Node) -> list[str]:
    """Runners and their launchers running on the node."""
    listed = fleet.run_on(node, ["ps", "-eo", "stat=,args="]).stdout.splitlines()
    return [
        line
        for line in listed
        if ("sim-runner" in line or "runnerscale-launcher" in line) and not line.startswith("Z")
    ]


def nothing_on_nodes(fleet: Fleet) -> dict[str, Any]:
    """What is left on each node: runner folders and runner processes."""
    left: dict[str, Any] = {}
    for node in fleet.nodes:
        found = folders_on(node) + runner_processes(fleet, node)
        if found:
            left[node.name] = found
    return left


def nothing_left(simulator: SimulatorServer, store: Store, fleet: Fleet) -> bool:
    live = [runner.name for runner in store.runners() if runner.state.live]
    return not live and not simulator.simulator.world.runners and not nothing_on_nodes(fleet)


def queue(
    simulator: SimulatorServer, labels: Sequence[str], count: int, duration: float
) -> list[int]:
    jobs = simulator.simulator.world.create_jobs(
        [JobSpec("acme/app", tuple(labels), duration, None, f"job-{i}") for i in range(count)]
    )
    simulator.simulator.notify()
    return [job.id for job in jobs]


@contextlib.asynccontextmanager
async def serving(
    config: Path, simulator: SimulatorServer, env: dict[str, str] | None = None
) -> AsyncIterator[Daemon]:
    """The daemon of ``config``, in this process, hearing the simulator's webhooks."""
    async with in_process_daemon(config, env=env) as daemon:
        simulator.simulator.webhooks.add_hook(f"{daemon.url}/webhook", WEBHOOK_SECRET)
        yield daemon


def succeeded(simulator: SimulatorServer, job_ids: Sequence[int]) -> bool:
    world = simulator.simulator.world
    return all(
        world.jobs[j].conclusion is not None and world.jobs[j].conclusion.value == "success"  # type: ignore[union-attr]
        for j in job_ids
    )


def served_by(simulator: SimulatorServer, job_ids: Sequence[int]) -> list[str]:
    names = [simulator.simulator.world.jobs[j].runner_name for j in job_ids]
    assert all(names), names
    return [name for name in names if name]


# -- a: the issue's configuration, docker mode


async def test_the_issue_s_configuration_serves_a_burst_in_containers_over_the_nodes(
    fleet: Fleet,
    simulator: SimulatorServer,
    docker_engine: Engine,
    runner_image: str,
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path, simulator.url, pools=issue_pool(fleet, docker_engine, runner_image)
    )
    world = simulator.simulator.world
    engine = docker.DockerClient(base_url=docker_engine.url, version="auto")
    ours = {"label": f"{LABEL_CONTROLLER}=runnerscale-e2e"}
    seen: dict[str, str] = {}

    def containers() -> list[Any]:
        listed = engine.containers.list(all=True, ignore_removed=True, filters=ours)
        for container in listed:
            seen[container.name] = container.labels[LABEL_NODE]
        return listed

    try:
        async with serving(config, simulator, env={KEY_ENV: str(fleet.key_file)}) as daemon:
            deploy = queue(simulator, DEPLOY, 1, 3.0)
            plain = queue(simulator, LINUX, 7, 3.0)

            def done() -> bool:
                containers()
                return all_done(world, deploy + plain)

            await wait_until(done, 120, "the burst of 8 jobs")
            assert succeeded(simulator, deploy + plain)
            nodes = {
                name: node_of(name, daemon.store, fleet).name
                for name in served_by(simulator, deploy + plain)
            }
            assert len(set(nodes.values())) >= 2, nodes  # spread over the nodes
            [deployed] = served_by(simulator, deploy)
            assert nodes[deployed] == "node3"
            # Each ran in a container that carries its node's name.
            assert seen, "no runner container was seen"
            for name, labelled in seen.items():
                assert fleet.node(labelled).name == nodes.get(name, fleet.node(labelled).name)

            async def gone() -> bool:
                return nothing_left(simulator, daemon.store, fleet) and not await asyncio.to_thread(
                    containers
                )

            await wait_until(gone, 60, "nothing left: containers, runners")
    finally:
        engine.close()


# -- b: per-node labels


async def test_deploy_jobs_run_only_on_the_deploy_node_and_plain_jobs_spread(
    fleet: Fleet, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=process_pool(fleet))
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:
        deploy = queue(simulator, DEPLOY, 2, 2.0)
        plain = queue(simulator, LINUX, 4, 2.0)
        await wait_until(lambda: all_done(world, deploy + plain), 90, "6 jobs")
        assert succeeded(simulator, deploy + plain)
        where = {
            name: node_of(name, daemon.store, fleet).name for name in served_by(simulator, deploy)
        }
        assert set(where.values()) == {"node3"}, where
        spread = [node_of(name, daemon.store, fleet).name for name in served_by(simulator, plain)]
        assert sorted(spread) == ["node1", "node1", "node2", "node2"], spread
        await wait_until(lambda: nothing_left(simulator, daemon.store, fleet), 60, "clean-up")


# -- c: a node's link cut mid-job


async def node_status(daemon: Daemon, node: Node) -> dict[str, Any]:
    """The node as the status API reports it."""
    async with control_client(daemon) as control:
        status = (await control.get("/api/v1/status")).json()
    [pool] = status["pools"]
    [found] = [n for n in pool["nodes"] if n["name"] == node.address]
    return dict(found)


async def test_a_node_cut_off_mid_job_is_reported_down_served_around_and_reconciled(
    fleet: Fleet, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, pools=process_pool(fleet))
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:
        [long_job] = queue(simulator, LINUX, 1, 12.0)
        await wait_until(
            lambda: world.jobs[long_job].status.value == "in_progress", 60, "the long job to start"
        )
        busy = world.jobs[long_job].runner_name
        assert busy is not None
        node = node_of(busy, daemon.store, fleet)
        fleet.link_down(node)
        try:

            async def down() -> bool:
                return not (await node_status(daemon, node))["up"]

            await wait_until(down, 30, f"{node.name} to be reported down")
            reported = await node_status(daemon, node)
            assert reported["reason"], reported
            assert reported["runners"] == 1, reported
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{daemon.url}/metrics")).text
            assert f'runnerscale_node_up{{node="{node.address}",pool="vps"}} 0.0' in metrics
            # The daemon keeps serving new jobs, on the other nodes.
            more = queue(simulator, LINUX, 3, 1.0)
            await wait_until(lambda: all_done(world, more), 60, "jobs while a node is down")
            assert succeeded(simulator, more)
            elsewhere = {node_of(name, daemon.store, fleet) for name in served_by(simulator, more)}
            assert node not in elsewhere
            # The busy runner is neither removed nor forgotten while its node is away.
            record = daemon.store.get_runner(busy)
            assert record is not None
            assert record.state.live, record
            assert busy in folders_on(node)
            assert runner_processes(fleet, node), "the busy runner's process is gone"
        finally:
            fleet.link_up(node)
        await wait_until(
            lambda: all_done(world, [long_job]), 90, "the long job, after the link returned"
        )
        assert succeeded(simulator, [long_job])
        assert world.jobs[long_job].runner_name == busy
        await wait_until(lambda: nothing_left(simulator, daemon.store, fleet), 60, "clean-up")
        assert (await node_status(daemon, node))["up"]


# -- d: a changed host key


async def test_a_node_whose_host_key_changed_is_refused_named_and_given_no_runner(
    fleet: Fleet, simulator: SimulatorServer, tmp_path: Path
) -> None:
    _, node2, _ = fleet.nodes
    pools = process_pool(fleet, known_hosts=fleet.wrong_known_hosts(node2))
    config = write_config(tmp_path, simulator.url, pools=pools)
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:

        async def refused() -> bool:
            return "CHANGED" in (await node_status(daemon, node2))["reason"]

        await wait_until(refused, 30, f"{node2.name}'s host key to be refused")
        reason = (await node_status(daemon, node2))["reason"]
        assert reason.startswith("its host key CHANGED"), reason  # (the node's line names it)
        assert f"ssh-keygen -R {node2.host}" in reason  # the fix
        jobs = queue(simulator, LINUX, 3, 1.0)
        await wait_until(lambda: all_done(world, jobs), 60, "jobs on the other nodes")
        assert succeeded(simulator, jobs)
        assert node2 not in {
            node_of(name, daemon.store, fleet) for name in served_by(simulator, jobs)
        }
        assert not folders_on(node2)
        await wait_until(lambda: nothing_left(simulator, daemon.store, fleet), 60, "clean-up")
    code, output = await runnerscale_command("hosts", "check", "-c", str(config))
    assert code == 1, output
    said = " ".join(output.split())
    assert f"{node2.address} (vps): unusable: its host key CHANGED" in said
    assert f"ssh-keygen -R {node2.host}" in said


# -- e: kill -9 of the daemon during creates


@pytest.mark.parametrize("step", ["folder", "process"])
async def test_a_daemon_killed_mid_create_leaves_nothing_on_the_nodes_after_a_restart(
    fleet: Fleet, simulator: SimulatorServer, tmp_path: Path, step: str
) -> None:
    config = write_config(tmp_path, simulator.url, pools=process_pool(fleet), create_timeout="4s")
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    world = simulator.simulator.world
    marker = tmp_path / "paused"
    log = tmp_path / "daemon.log"
    daemon = await start_daemon_process(config, log, env={PAUSE_ENV: f"{step} {marker}"})
    try:
        # Long enough that a runner started before the kill still runs after the restart.
        jobs = queue(simulator, LINUX, 3, 6.0)
        await wait_until(marker.exists, 60, f"the daemon's create to stop after {step!r}")
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        folders = [name for node in fleet.nodes for name in folders_on(node)]
        running = [line for node in fleet.nodes for line in runner_processes(fleet, node)]
        assert folders, "the killed creates left nothing to adopt or sweep"
        assert bool(running) is (step == "process"), running
        daemon = await start_daemon_process(config, log)
        await wait_until(lambda: all_done(world, jobs), 90, "the jobs, after the restart")
        assert succeeded(simulator, jobs)

        def clean() -> bool:
            return not world.runners and not nothing_on_nodes(fleet)

        await wait_until(clean, 60, "nothing left on the nodes and at GitHub")
    finally:
        await stop_daemon_process(daemon)
    said = log.read_text()
    if step == "folder":  # a folder without a process is swept
        assert "incomplete: a runner folder without a started process" in said
    else:  # a runner that started is adopted
        assert "creating -> booting: adopted" in said


# -- f: a slow node


async def test_a_slow_node_delays_only_its_own_runners(
    fleet: Fleet, simulator: SimulatorServer, tmp_path: Path
) -> None:
    node1 = fleet.nodes[0]
    config = write_config(tmp_path, simulator.url, pools=process_pool(fleet))
    world = simulator.simulator.world
    async with serving(config, simulator) as daemon:

        async def all_up() -> bool:
            async with control_client(daemon) as control:
                status = (await control.get("/api/v1/status")).json()
            return all(n["up"] for n in status["pools"][0]["nodes"])

        await wait_until(all_up, 30, "every node up")
        fleet.slow(node1, 2)
        try:
            online: dict[str, float] = {}
            queued = time.monotonic()
            jobs = queue(simulator, LINUX, 4, 2.0)

            def done() -> bool:
                for runner in world.runners.values():
                    if runner.connected and runner.name not in online:
                        online[runner.name] = time.monotonic() - queued
                return all_done(world, jobs)

            await wait_until(done, 90, "4 jobs, 2 on the slow node", poll=0.05)
        finally:
            fleet.slow(node1, 0)
        assert succeeded(simulator, jobs)
        took: dict[str, list[float]] = {}
        for name in served_by(simulator, jobs):
            took.setdefault(node_of(name, daemon.store, fleet).name, []).append(online[name])
        assert sorted(took) == ["node1", "node2"], took
        # Each create on node1 runs two commands there, each 2 s late.
        assert min(took["node1"]) >= 4.0, took
        assert max(took["node2"]) + 2.0 <= min(took["node1"]), took
        await wait_until(lambda: nothing_left(simulator, daemon.store, fleet), 60, "clean-up")


# -- g: runnerscale hosts check


async def test_hosts_check_tables_the_fleet_and_fails_naming_a_node_that_is_cut_off(
    fleet: Fleet, tmp_path: Path
) -> None:
    _, node2, _ = fleet.nodes
    config = write_config(tmp_path, "http://127.0.0.1:9", pools=process_pool(fleet))
    code, output = await runnerscale_command("hosts", "check", "-c", str(config))
    assert code == 0, output
    for node in fleet.nodes:
        assert node.address in output
    assert "UNUSABLE" not in output
    fleet.link_down(node2)
    try:
        code, output = await runnerscale_command("hosts", "check", "-c", str(config))
    finally:
        fleet.link_up(node2)
    assert code == 1, output
    assert "UNUSABLE" in output
