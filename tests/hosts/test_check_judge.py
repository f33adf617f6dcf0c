"""``hosts check``'s verdicts, from a node's facts: every reason a node is unusable, and the
labels ``auto`` stands for there."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runnerscale.hosts.check import MIN_FREE_DISK, judge
from runnerscale.hosts.probe import EngineFacts, NodeFacts
from tests.hosts.nodes import fleet_node

GIB = 1024**3
ENGINE = EngineFacts(version="26.1.5", arch="amd64", root_dir="/var/lib/docker", image_present=True)
FACTS = NodeFacts(
    round_trip=0.01,
    machine="x86_64",
    cpus=4,
    clock_skew=0.2,
    disk_free=40 * GIB,
    disk_path="/var/lib/docker",
    socket="ok",
    engine=ENGINE,
)
PROCESS = replace(FACTS, socket=None, engine=None, runner_present=True, disk_path="/home/runner")


def test_a_good_docker_node() -> None:
    node = fleet_node(host={"address": "10.0.0.12:2222", "labels": ["deploy"]})
    report = judge(node, FACTS)
    assert report.usable, report.problems
    assert report.labels == ("self-hosted", "linux", "x64", "cpu-only", "deploy")
    assert report.slots == 4  # its CPU count
    assert report.notes == ()


def test_docker_mode_gets_the_labels_of_what_the_pool_passes_through() -> None:
    node = fleet_node(container={"gpus": "all"})
    arm = replace(FACTS, machine="aarch64", engine=replace(ENGINE, arch="arm64"))
    assert judge(node, arm).labels == ("self-hosted", "linux", "arm64", "cuda", "gpu", "nvidia")


def test_process_mode_reads_the_nodes_own_accelerators() -> None:
    node = fleet_node(mode="process", image=None)
    gpu = replace(PROCESS, commands=frozenset({"nvidia-smi"}), nvidia=("GPU 0: A100 (UUID: x)",))
    assert judge(node, gpu).labels == ("self-hosted", "linux", "x64", "cuda", "gpu", "nvidia")
    rocm = replace(PROCESS, paths=frozenset({"/dev/kfd", "/opt/rocm"}))
    assert judge(node, rocm).labels == ("self-hosted", "linux", "x64", "amd", "gpu", "rocm")
    assert judge(node, PROCESS).labels == ("self-hosted", "linux", "x64", "cpu-only")


@pytest.mark.parametrize(
    ("facts", "problem"),
    [
        (
            replace(FACTS, socket="missing", engine=None),
            "no Docker engine socket at /var/run/docker.sock: install Docker (apt-get install "
            "docker.io) or set docker_socket",
        ),
        (
            replace(FACTS, socket="denied", engine=None),
            "runner may not use /var/run/docker.sock: add it to the docker group (runnerscale "
            "hosts bootstrap does)",
        ),
        (
            replace(FACTS, engine=None, engine_error="Server disconnected"),
            "the engine at /var/run/docker.sock did not answer: Server disconnected",
        ),
        (
            replace(FACTS, disk_free=GIB),
            "only 1.0 GiB free in /var/lib/docker: a runner needs at least 2.0 GiB; free some "
            "space",
        ),
        (
            replace(FACTS, clock_skew=-95.4),
            "its clock is -95s off this host's: GitHub refuses a runner whose clock is wrong; "
            "run a time sync (systemd-timesyncd or chrony)",
        ),
        (
            replace(FACTS, machine="mips", engine=replace(ENGINE, arch="mips")),
            "its architecture (mips) has no GitHub label: write the pool's labels out instead "
            "of auto",
        ),
    ],
)
def test_what_makes_a_docker_node_unusable(facts: NodeFacts, problem: str) -> None:
    report = judge(fleet_node(), facts)
    assert not report.usable
    assert report.problems == (problem,)


def test_an_architecture_the_pools_labels_contradict() -> None:
    node = fleet_node(labels=("self-hosted", "linux", "x64"))
    arm = replace(FACTS, machine="aarch64", engine=replace(ENGINE, arch="arm64"))
    assert judge(node, arm).problems == (
        "pool 'vps' has label 'x64', but its host's architecture is arm64: remove 'x64', or "
        "write 'auto' to take the host's own labels (on this node)",
    )


def test_a_missing_image_is_a_problem_only_when_it_is_never_pulled() -> None:
    missing = replace(FACTS, engine=replace(ENGINE, image_present=False))
    pulled = judge(fleet_node(), missing)
    assert pulled.usable
    assert pulled.notes == (
        "the image runnerscale-runner:latest is not on the node: runnerscale hosts bootstrap "
        "builds it there (or the engine pulls it at the first runner)",
    )
    never = judge(fleet_node(container={"pull": "never"}), missing)
    assert never.problems == (
        "the image runnerscale-runner:latest is not on the node: runnerscale hosts bootstrap "
        "builds it there (pull: never)",
    )


def test_a_process_node_without_its_runner() -> None:
    node = fleet_node(mode="process", image=None, user="ci")
    assert judge(node, replace(PROCESS, runner_present=False)).problems == (
        "the runner command /opt/actions-runner/run.sh is not on the node or not executable by "
        "ci: unpack the runner there (runnerscale hosts bootstrap --runner-tarball PATH)",
    )


def test_an_unreachable_node_says_why() -> None:
    report = judge(fleet_node(), None, "cannot connect: Connection refused")
    assert (report.usable, report.problems) == (False, ("cannot connect: Connection refused",))


def test_more_slots_than_cpus_is_a_note() -> None:
    report = judge(fleet_node(host={"address": "node1", "slots": 8}), FACTS)
    assert (report.usable, report.slots) == (True, 8)
    assert report.notes == ("8 slots on 4 CPUs: runners will share CPUs",)
    assert MIN_FREE_DISK == 2 * GIB
