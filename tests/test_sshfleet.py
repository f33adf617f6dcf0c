"""The namespace fleet of SSH nodes (``tests/sshfleet.py``) is what the SSH backend's tests
take it for: nodes apart on the network with their own sshd, host key and home, a host they
reach, links that can be cut and restored, slow nodes, and nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.sshd import ensure_user
from tests.sshfleet import STATE, Fleet, Node, ssh_fleet

__all__ = ["ssh_fleet"]

pytestmark = pytest.mark.ssh

ROOT = Path(__file__).resolve().parent.parent


def _ssh(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _answers(fleet: Fleet, node: Node) -> bool:
    return _ssh(fleet.ssh_argv(node, "true")).returncode == 0


@contextlib.contextmanager
def _listener(address: str) -> Iterator[socket.socket]:
    with socket.create_server((address, 0)) as server:
        server.settimeout(30)
        yield server


def _names() -> str:
    """What ``ip`` lists of links and network namespaces."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return links.stdout + netns.stdout


def test_every_node_answers_on_its_own_address_with_its_own_host_key(ssh_fleet: Fleet) -> None:
    addresses = [node.address for node in ssh_fleet.nodes]
    index = ssh_fleet.index
    assert addresses == [f"10.231.{index}.2", f"10.231.{index}.3", f"10.231.{index}.4:2222"]
    for node in ssh_fleet.nodes:
        done = _ssh(ssh_fleet.ssh_argv(node, "sh", "-c", "id -un; ip -4 -o addr show eth0"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == ssh_fleet.user
        assert f" {node.host}/24 " in done.stdout
    keys = [line.split()[2] for line in ssh_fleet.known_hosts.read_text().splitlines()]
    assert len(set(keys)) == 3


def test_a_changed_host_key_is_refused(ssh_fleet: Fleet) -> None:
    node = ssh_fleet.nodes[2]
    wrong = ssh_fleet.wrong_known_hosts(node)
    done = _ssh(ssh_fleet.ssh_argv(node, "true", known_hosts=wrong))
    assert done.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in done.stderr
    assert _ssh(ssh_fleet.ssh_argv(ssh_fleet.nodes[0], "true", known_hosts=wrong)).returncode == 0


def test_each_node_has_a_home_of_its_own(ssh_fleet: Fleet) -> None:
    first, second, _ = ssh_fleet.nodes
    home = Path(ensure_user(ssh_fleet.user).pw_dir)
    name = f"only-on-{first.name}-{os.getpid()}"
    done = _ssh(ssh_fleet.ssh_argv(first, "sh", "-c", f"mkdir ~/{name} && echo ~"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(home)
    try:
        assert (first.home / name).is_dir()
        assert not (home / name).exists()
        listing = _ssh(ssh_fleet.ssh_argv(second, "ls", "-a", str(home)))
        assert listing.returncode == 0, listing.stderr
        assert name not in listing.stdout
    finally:
        (first.home / name).rmdir()


def test_a_node_reaches_the_host_and_runs_the_venv_python(ssh_fleet: Fleet) -> None:
    code = (
        "import socket, sys, runnerscale; "
        "socket.create_connection((sys.argv[1], int(sys.argv[2]))).sendall(b'hello')"
    )
    with _listener(ssh_fleet.host_address) as server:
        port = str(server.getsockname()[1])
        for node in ssh_fleet.nodes:
            argv = ["env", f"PYTHONPATH={ROOT / 'src'}", sys.executable, "-c", code]
            done = _ssh(ssh_fleet.ssh_argv(node, *argv, ssh_fleet.host_address, port))
            assert done.returncode == 0, done.stderr
            connection, (peer, _) = server.accept()
            with connection:
                assert connection.recv(5) == b"hello"
            assert peer == node.host


def test_a_cut_link_makes_only_that_node_unreachable_until_restored(ssh_fleet: Fleet) -> None:
    cut = ssh_fleet.nodes[1]
    ssh_fleet.link_down(cut)
    try:
        done = _ssh(ssh_fleet.ssh_argv(cut, "true"), timeout=20)
        assert done.returncode == 255
        assert all(_answers(ssh_fleet, node) for node in ssh_fleet.nodes if node != cut)
        ps = ssh_fleet.run_on(cut, ["ps", "-e", "-o", "comm="])  # the node itself still runs
        assert "sshd" in ps.stdout
    finally:
        ssh_fleet.link_up(cut)
    deadline = time.monotonic() + 20
    while not _answers(ssh_fleet, cut):
        assert time.monotonic() < deadline, f"{cut.name} did not answer after its link came back"
        time.sleep(0.2)


def test_a_slow_node_starts_every_command_late_and_still_forwards(ssh_fleet: Fleet) -> None:
    slow = ssh_fleet.nodes[0]
    ssh_fleet.slow(slow, 1.5)
    try:
        began = time.monotonic()
        done = _ssh(ssh_fleet.ssh_argv(slow, "echo", "late"))
        assert done.returncode == 0, done.stderr
        assert done.stdout == "late\n"
        assert time.monotonic() - began >= 1.5
        with _listener(ssh_fleet.host_address) as server:
            argv = ssh_fleet.ssh_argv(slow)
            argv = argv[: argv.index("--")]  # no command: a forwarded connection (-W)
            target = f"{ssh_fleet.host_address}:{server.getsockname()[1]}"
            with subprocess.Popen(
                [*argv, "-W", target],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            ) as forward:
                try:
                    sent, _ = forward.stdin, forward.stderr
                    assert sent is not None
                    sent.write("through\n")
                    sent.close()
                    connection, _ = server.accept()
                    with connection:
                        assert connection.recv(8) == b"through\n"
                    assert forward.wait(timeout=30) == 0
                finally:
                    forward.kill()
    finally:
        ssh_fleet.slow(slow, 0)


async def test_a_slow_node_forwards_a_unix_socket_to_asyncssh(ssh_fleet: Fleet) -> None:
    node = ssh_fleet.nodes[1]
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await received.put(await reader.readline())
        writer.write(b"pong\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    path = node.home / "forwarded.sock"  # the node sees it in the user's home
    server = await asyncio.start_unix_server(serve, path=str(path))
    path.chmod(0o666)
    ssh_fleet.slow(node, 1)
    try:
        async with asyncssh.connect(
            node.host,
            node.port,
            username=ssh_fleet.user,
            client_keys=[str(ssh_fleet.key_file)],
            known_hosts=str(ssh_fleet.known_hosts),
        ) as connection:
            home = ensure_user(ssh_fleet.user).pw_dir
            reader, writer = await connection.open_unix_connection(f"{home}/forwarded.sock")
            writer.write(b"ping\n")
            assert await reader.readline() == b"pong\n"
            writer.close()
            assert await received.get() == b"ping\n"
    finally:
        ssh_fleet.slow(node, 0)
        server.close()
        await server.wait_closed()
        path.unlink()


def test_run_on_sees_only_the_node_s_processes(ssh_fleet: Fleet) -> None:
    node = ssh_fleet.nodes[2]
    ps = ssh_fleet.run_on(node, ["ps", "-e", "-o", "pid=,comm="])
    processes = dict(line.split(maxsplit=1) for line in ps.stdout.strip().splitlines())
    assert processes["1"] == "sshd"
    assert "pytest" not in ps.stdout
    home = ssh_fleet.run_on(node, ["sh", "-c", "id -un; echo ~"], user=ssh_fleet.user)
    assert home.stdout.split() == [ssh_fleet.user, ensure_user(ssh_fleet.user).pw_dir]


def test_a_closed_fleet_leaves_nothing_even_with_processes_running() -> None:
    fleet = Fleet.start(2)
    marker = f"{6000 + os.getpid() % 1000}.123"  # a sleep no one else runs
    try:
        node = fleet.nodes[0]
        escaped = "setsid nohup sleep {0} >/dev/null 2>&1 < /dev/null & sleep {0}"
        session = subprocess.Popen(
            fleet.ssh_argv(node, "sh", "-c", escaped.format(marker)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        fleet.run_on(node, ["sh", "-c", f"setsid sleep {marker} >/dev/null 2>&1 &"])
        deadline = time.monotonic() + 20
        while _pids_running(marker) < 3:
            assert time.monotonic() < deadline, "the sleeps did not start"
            time.sleep(0.1)
    finally:
        fleet.close()
    session.wait(timeout=30)
    assert _pids_running(marker) == 0
    assert f"rsf{fleet.index}" not in _names()
    assert not fleet.root.exists()
    assert not (STATE / f"rsf{fleet.index}").exists()


def _pids_running(needle: str) -> int:
    done = subprocess.run(
        ["pgrep", "-f", f"sleep {needle}"], capture_output=True, text=True, check=False
    )
    return len(done.stdout.split())


def test_a_fleet_whose_test_process_was_killed_is_swept_by_the_next() -> None:
    code = (
        "from tests.sshfleet import Fleet; import time; "
        "fleet = Fleet.start(1); print(fleet.index, fleet.root, flush=True); time.sleep(600)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        try:
            assert owner.stdout is not None
            index, root = owner.stdout.readline().split()
        finally:
            owner.send_signal(signal.SIGKILL)
    assert f"rsf{index}n1" in _names()
    fleet = Fleet.start(1)
    fleet.close()
    assert f"rsf{index}" not in _names()
    assert not Path(root).exists()
