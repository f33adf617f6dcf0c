"""``runnerscale hosts check`` against real nodes: the loopback sshd as a process-mode node (the
test user) and as a docker-mode node (root, with the session's Docker engine as the node's
engine), next to nodes that cannot serve: a changed host key, nothing listening, no runner, an
engine socket the user may not use."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerscale.hosts.check import check_fleet
from runnerscale.hosts.fleet import FleetNode
from tests.docker_engine import Engine
from tests.hosts.cli import pool_file, runnerscale
from tests.hosts.nodes import fleet_node
from tests.hosts.remote import owned_file, user_folder
from tests.sshd import SshServer

HERE_ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine())


def node_of(
    server: SshServer,
    *,
    user: str | None = None,
    known_hosts: Path | None = None,
    address: str | None = None,
    **settings: object,
) -> FleetNode:
    return fleet_node(
        user=user or server.user,
        key_file=str(server.key_file),
        known_hosts=str(known_hosts or server.known_hosts),
        host={"address": address or server.address},
        **settings,
    )


@pytest.fixture
def runner_folder() -> Iterator[Path]:
    with user_folder() as folder:
        owned_file(folder / "run.sh", "#!/bin/sh\nexit 0\n", mode=0o755)
        yield folder


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_process_nodes_good_and_bad_are_checked_at_once(
    ssh_server: SshServer, runner_folder: Path
) -> None:
    process = {"mode": "process", "image": None, "work_dir": str(runner_folder / "runners")}
    good = node_of(ssh_server, command=[str(runner_folder / "run.sh")], **process)
    no_runner = node_of(ssh_server, command=[str(runner_folder / "missing.sh")], **process)
    changed = node_of(ssh_server, known_hosts=ssh_server.wrong_known_hosts(), **process)
    port = closed_port()
    away = node_of(ssh_server, address=f"127.0.0.1:{port}", **process)

    reports = asyncio.run(check_fleet([good, no_runner, changed, away]))

    ok = reports[0]
    assert ok.usable, ok.problems
    assert ok.facts is not None
    assert ok.facts.machine == platform.machine()
    assert ok.facts.cpus == len(os.sched_getaffinity(0))
    assert ok.slots == ok.facts.cpus
    assert ok.facts.clock_skew is not None
    assert abs(ok.facts.clock_skew) < 1.0
    assert ok.facts.disk_path == str(runner_folder)  # the nearest folder that exists
    assert ok.facts.disk_free
    assert ok.facts.disk_free > 0
    assert ok.facts.runner_present is True
    if HERE_ARCH:
        assert ok.labels[:3] == ("self-hosted", "linux", HERE_ARCH)

    assert reports[1].problems == (
        f"the runner command {runner_folder / 'missing.sh'} is not on the node or not "
        "executable by rsnode: unpack the runner there (runnerscale hosts bootstrap "
        "--runner-tarball PATH)",
    )
    (refused,) = reports[2].problems
    assert refused.startswith("its host key CHANGED: it offered ssh-ed25519 key SHA256:")
    assert reports[3].problems == ("cannot connect: Connection refused",)


def test_a_docker_node_with_its_engine_and_image(
    ssh_server: SshServer, docker_engine: Engine
) -> None:
    """The node's engine is the session's dockerd, reached over the forwarded socket as root;
    the pool's image is there once imported."""
    socket_path = docker_engine.url.removeprefix("unix://")
    image = "runnerscale-hosts-check:1"
    docker = ["docker", "-H", docker_engine.url]
    node = node_of(ssh_server, user="root", image=image, docker_socket=socket_path)

    missing = asyncio.run(check_fleet([node]))[0]
    assert missing.usable
    assert missing.facts is not None
    assert missing.facts.engine is not None
    assert missing.facts.engine.image_present is False
    assert "not on the node" in missing.notes[0]

    empty = subprocess.run(["tar", "-cf", "-", "-T", "/dev/null"], capture_output=True, check=True)
    subprocess.run(
        [*docker, "import", "-", image], input=empty.stdout, check=True, capture_output=True
    )
    try:
        report = asyncio.run(check_fleet([node]))[0]
    finally:
        subprocess.run([*docker, "rmi", image], capture_output=True, check=False)
    assert report.usable, report.problems
    assert report.notes == ()
    facts = report.facts
    assert facts is not None
    assert facts.engine is not None
    version = subprocess.run(
        [*docker, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert facts.engine.version == version
    assert facts.engine.image_present
    assert facts.disk_path == facts.engine.root_dir  # the engine's data folder, asked again
    assert facts.socket == "ok"


def test_an_engine_socket_the_user_may_not_use(ssh_server: SshServer) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rs-sock-"))
    folder.chmod(0o755)
    path = folder / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    path.chmod(0o600)
    try:
        report = asyncio.run(check_fleet([node_of(ssh_server, docker_socket=str(path))]))[0]
        gone = asyncio.run(
            check_fleet([node_of(ssh_server, docker_socket=str(folder / "nothing.sock"))])
        )[0]
    finally:
        listener.close()
        path.unlink()
        folder.rmdir()
    assert report.problems == (
        f"rsnode may not use {path}: add it to the docker group (runnerscale hosts bootstrap does)",
    )
    assert gone.problems[0].startswith(f"no Docker engine socket at {folder / 'nothing.sock'}")


def test_the_command_prints_a_table_and_fails_for_an_unusable_node(
    ssh_server: SshServer, runner_folder: Path, tmp_path: Path
) -> None:
    ssh = f"      mode: process\n      command: [{runner_folder / 'run.sh'}]\n"
    path = pool_file(tmp_path / "runnerscale.yaml", ssh_server, user="rsnode", ssh=ssh)

    good = runnerscale(tmp_path / "site", "hosts", "check", "-c", str(path))
    assert good.returncode == 0, good.stdout + good.stderr
    assert ssh_server.address in good.stdout
    assert "ok" in good.stdout
    assert "verified" in good.stdout
    assert "2 / " in good.stdout  # slots / cpus

    port = closed_port()
    pool_file(
        path, ssh_server, user="rsnode", ssh=ssh, hosts=f"        - address: 127.0.0.1:{port}\n"
    )
    bad = runnerscale(tmp_path / "site", "hosts", "check", "-c", str(path), "--pool", "nodes")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "UNUSABLE" in bad.stdout
    assert f"127.0.0.1:{port} (nodes): unusable: cannot connect: Connection refused" in bad.stdout

    unknown = runnerscale(tmp_path / "site", "hosts", "check", "-c", str(path), "--pool", "x")
    assert unknown.returncode == 2
    assert "no ssh pool is named 'x'; the ssh pools: nodes" in unknown.stderr
