"""``runnerscale hosts bootstrap`` against the loopback sshd, logged in as root: a first run
makes its changes and says so, a second changes nothing; the runner unpacked where a process
pool's command expects it; an image loaded from an archive into the node's engine; a user put
in the engine socket's group. The node exporter's install (apt-get) is not run here: its step's
decision and command are."""

from __future__ import annotations

import asyncio
import grp
import io
import os
import pwd
import secrets
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerscale.hosts.bootstrap import (
    NODE_EXPORTER,
    AuthorizedKey,
    BootstrapOptions,
    EngineGroup,
    Image,
    NodeExporter,
    RunnerFiles,
    RunnerUser,
    Shell,
    WorkDir,
    bootstrap_fleet,
    plan,
)
from runnerscale.hosts.check import check_fleet
from runnerscale.hosts.fleet import FleetNode
from runnerscale.providers.ssh.connection import NodeConnection
from tests.docker_engine import Engine
from tests.hosts.cli import pool_file, runnerscale
from tests.hosts.nodes import fleet_node
from tests.sshd import SshServer


def node_of(server: SshServer, user: str, **settings: object) -> FleetNode:
    return fleet_node(
        user=user,
        key_file=str(server.key_file),
        known_hosts=str(server.known_hosts),
        host={"address": server.address},
        **settings,
    )


@pytest.fixture
def new_user() -> Iterator[str]:
    """A user name no account has yet; the account bootstrap makes is removed afterwards."""
    name = f"rsboot{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


def runner_tarball(folder: Path) -> Path:
    """A stand-in for the official runner tarball: run.sh and a file beside it, gzipped."""
    path = folder / "actions-runner-linux-x64-2.328.0.tar.gz"
    with tarfile.open(path, "w:gz") as bundle:
        for name, text, mode in (("run.sh", "#!/bin/sh\nexit 0\n", 0o755),
                                 ("bin/Runner.Listener", "listener\n", 0o755)):  # fmt: skip
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.uid, info.gid = len(text), mode, 4242, 4242
            bundle.addfile(info, io.BytesIO(text.encode()))
    return path


def bootstrap(nodes: list[FleetNode], **options: object) -> list[tuple[list[str], str]]:
    outcomes = asyncio.run(bootstrap_fleet(nodes, BootstrapOptions(**options)))  # type: ignore[arg-type]
    return [(outcome.changes, outcome.failure) for outcome in outcomes]


def test_a_process_node_is_prepared_once(
    ssh_server: SshServer, new_user: str, tmp_path: Path
) -> None:
    node = node_of(
        ssh_server, new_user, mode="process", image=None, work_dir="~/runners",
        command=["~/actions-runner/run.sh"],
    )  # fmt: skip
    tarball = runner_tarball(tmp_path)

    first = bootstrap([node], runner_tarball=tarball)
    entry = pwd.getpwnam(new_user)
    home = Path(entry.pw_dir)
    assert first == [
        (
            [
                f"created the user {new_user}",
                f"authorized the pool's key id_ed25519 for {new_user}",
                f"created {home}/runners for {new_user}",
                f"unpacked {tarball.name} into {home}/actions-runner",
            ],
            "",
        )
    ]
    for path in (home / "runners", home / "actions-runner", home / "actions-runner/run.sh",
                 home / "actions-runner/bin/Runner.Listener"):  # fmt: skip
        assert path.stat().st_uid == entry.pw_uid, path
    assert os.access(home / "actions-runner/run.sh", os.X_OK)
    public = Path(f"{ssh_server.key_file}.pub").read_text().split()[1]
    assert public in (home / ".ssh/authorized_keys").read_text()

    assert bootstrap([node], runner_tarball=tarball) == [([], "")]
    assert bootstrap([node]) == [([], "")]  # the runner is there: no tarball needed

    report = asyncio.run(check_fleet([node]))[0]  # and the daemon's user can use it
    assert report.usable, report.problems


def test_a_missing_runner_without_a_tarball_says_what_to_give(
    ssh_server: SshServer, new_user: str
) -> None:
    node = node_of(ssh_server, new_user, mode="process", image=None)
    ((changes, failure),) = bootstrap([node])
    assert changes[0] == f"created the user {new_user}"  # what came before still happened
    assert failure == (
        "the runner command /opt/actions-runner/run.sh is not on the node: give "
        "--runner-tarball PATH (the official actions-runner-linux-*.tar.gz) to unpack it there"
    )


def test_a_docker_node_gets_the_image_from_an_archive(
    ssh_server: SshServer, docker_engine: Engine, tmp_path: Path
) -> None:
    image = f"runnerscale-bootstrap-{secrets.token_hex(3)}:1"
    docker = ["docker", "-H", docker_engine.url]
    empty = subprocess.run(["tar", "-cf", "-", "-T", "/dev/null"], capture_output=True, check=True)
    subprocess.run([*docker, "import", "-", image], input=empty.stdout, check=True,
                   capture_output=True)  # fmt: skip
    archive = tmp_path / "image.tar"
    subprocess.run([*docker, "save", "-o", str(archive), image], check=True, capture_output=True)
    subprocess.run([*docker, "rmi", image], check=True, capture_output=True)
    node = node_of(
        ssh_server, "root", image=image, docker_socket=docker_engine.url.removeprefix("unix://")
    )
    try:
        assert bootstrap([node], image_archive=archive) == [
            ([f"loaded {image} from image.tar"], "")
        ]
        assert bootstrap([node], image_archive=archive) == [([], "")]
        assert bootstrap([node]) == [([], "")]  # no archive needed: the image is there
    finally:
        subprocess.run([*docker, "rmi", image], capture_output=True, check=False)

    wrong = tmp_path / "other.tar"
    other = f"runnerscale-other-{secrets.token_hex(3)}:1"
    subprocess.run([*docker, "import", "-", other], input=empty.stdout, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*docker, "save", "-o", str(wrong), other], check=True, capture_output=True)
    try:
        ((changes, failure),) = bootstrap([node], image_archive=wrong)
    finally:
        subprocess.run([*docker, "rmi", other], capture_output=True, check=False)
    assert (changes, failure) == (
        [],
        f"{wrong} holds no image {image}: make it with docker save {image} -o FILE",
    )


@pytest.fixture
def group_socket(new_user: str) -> Iterator[tuple[Path, str]]:
    """A socket owned by a group of its own (as Docker's is by docker), in an open folder."""
    group = f"rsdock{secrets.token_hex(3)}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    folder = Path(tempfile.mkdtemp(prefix="rs-engine-"))
    folder.chmod(0o755)
    path = folder / "engine.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.chown(path, 0, grp.getgrnam(group).gr_gid)
    path.chmod(0o660)
    try:
        yield path, group
    finally:
        listener.close()
        path.unlink()
        folder.rmdir()
        subprocess.run(["groupdel", group], capture_output=True, check=False)


async def test_steps_check_before_they_apply(
    ssh_server: SshServer, new_user: str, group_socket: tuple[Path, str]
) -> None:
    """The steps one by one: the user, then its membership of the engine socket's group."""
    path, group = group_socket
    node = node_of(ssh_server, "root")
    connection = NodeConnection(node.address, node.options())
    shell = Shell(connection, "root")
    try:
        user = RunnerUser(new_user)
        assert await user.check(shell) == f"created the user {new_user}"
        await user.apply(shell)
        assert await user.check(shell) is None

        member = EngineGroup(new_user, str(path))
        assert await member.check(shell) == f"added {new_user} to the group {group} (of {path})"
        await member.apply(shell)
        assert await member.check(shell) is None
        assert new_user in grp.getgrnam(group).gr_mem
        assert await EngineGroup("root", str(path)).check(shell) is None
    finally:
        await connection.close()


def exporter_installed() -> bool:
    shown = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", NODE_EXPORTER], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return shown.stdout.strip() == "install ok installed"


async def test_the_node_exporter_step_decides_without_installing(ssh_server: SshServer) -> None:
    """apt-get cannot run here: what the step decides on this node, and what it would run."""
    node = node_of(ssh_server, "root")
    connection = NodeConnection(node.address, node.options())
    try:
        decided = await NodeExporter().check(Shell(connection, "root"))
    finally:
        await connection.close()
    expected = None if exporter_installed() else "installed prometheus-node-exporter (apt-get)"
    assert decided == expected
    assert NodeExporter().command() == [
        "env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c",
        "apt-get update -q && apt-get install -y -q --no-install-recommends "
        "prometheus-node-exporter",
    ]  # fmt: skip
    assert Shell(connection, "admin").argv(["id"]) == ["sudo", "-n", "--", "id"]


def test_the_plan_follows_the_mode_and_the_options(tmp_path: Path) -> None:
    docker = fleet_node(key_file="/keys/id")
    archive = tmp_path / "image.tar"
    as_runner = BootstrapOptions(admin_user="runner", build_context=tmp_path)
    assert AuthorizedKey("runner", Path("/keys/id")) not in plan(docker, as_runner)
    assert plan(docker, BootstrapOptions(image_archive=archive, build_context=tmp_path)) == [
        RunnerUser("runner"),
        AuthorizedKey("runner", Path("/keys/id")),
        EngineGroup("runner", "/var/run/docker.sock"),
        Image("runnerscale-runner:latest", "/var/run/docker.sock", archive=archive),
    ]
    process = fleet_node(mode="process", image=None)
    assert plan(process, BootstrapOptions(monitoring=True)) == [
        RunnerUser("runner"),
        WorkDir("runner", "~/runnerscale"),
        RunnerFiles("runner", "/opt/actions-runner/run.sh"),
        NodeExporter(),
    ]
    assert RunnerFiles("u", "/x", tmp_path / "r.tar.gz").unpack_flag() == "-z"
    assert RunnerFiles("u", "/x", tmp_path / "r.tar").unpack_flag() == "--"


def test_the_command_prints_each_change_then_nothing_to_change(
    ssh_server: SshServer, new_user: str, tmp_path: Path
) -> None:
    tarball = runner_tarball(tmp_path)
    ssh = "      mode: process\n      command: [~/actions-runner/run.sh]\n"
    path = pool_file(tmp_path / "runnerscale.yaml", ssh_server, user=new_user, ssh=ssh)
    arguments = ["hosts", "bootstrap", "-c", str(path), "--host", ssh_server.address]

    first = runnerscale(tmp_path / "site", *arguments, "--runner-tarball", str(tarball))
    assert first.returncode == 0, first.stdout + first.stderr
    home = pwd.getpwnam(new_user).pw_dir
    where = f"{ssh_server.address} (nodes): "
    assert first.stdout.splitlines() == [
        f"{where}created the user {new_user}",
        f"{where}authorized the pool's key id_ed25519 for {new_user}",
        f"{where}created {home}/runnerscale for {new_user}",
        f"{where}unpacked {tarball.name} into {home}/actions-runner",
    ]
    again = runnerscale(tmp_path / "site", *arguments)
    assert (again.returncode, again.stdout) == (0, f"{where}nothing to change\n")

    elsewhere = runnerscale(tmp_path / "site", *arguments[:-1], "10.9.9.9")
    assert elsewhere.returncode == 2
    assert "no ssh pool has the node 10.9.9.9; add it to the pool's hosts first" in elsewhere.stderr
