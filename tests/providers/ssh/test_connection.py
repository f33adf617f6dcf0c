"""The node connection against a real OpenSSH server on loopback (``tests/sshd.py``): commands,
stdin, exit codes, one shared connection for concurrent callers, reconnects after the server
drops it, host keys (changed, unknown, trusted on first use), the agent, and a forwarded UNIX
socket that survives a reconnect. No secret given on stdin reaches a log record."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.connection import (
    MAX_SESSIONS,
    HostKeyRefused,
    NodeAddress,
    NodeConnection,
    NodeUnreachable,
    SshOptions,
)
from tests.sshd import SshServer, _descendants, generate_key, known_hosts_line, ssh_server

__all__ = ["ssh_server"]

pytestmark = pytest.mark.ssh

SECRET = "jitconfig-Th1s-Must-N3ver-Be-Logged-0123456789"


def options_for(server: SshServer, **changes: object) -> SshOptions:
    base = SshOptions(
        user=server.user,
        known_hosts=server.known_hosts,
        key_file=server.key_file,
        connect_timeout=5.0,
        keepalive_interval=15.0,
        command_timeout=20.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def address_of(server: SshServer) -> NodeAddress:
    return NodeAddress.parse(server.address)


@pytest.fixture
async def node(ssh_server: SshServer) -> AsyncIterator[NodeConnection]:
    connection = NodeConnection(address_of(ssh_server), options_for(ssh_server))
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
def own_server() -> Iterator[SshServer]:
    """A server of this module's own: the tests that drop its connections or restart it
    must not disturb the session's."""
    server = SshServer.start()
    try:
        yield server
    finally:
        server.stop()


def drop_connections(server: SshServer, sig: int = signal.SIGKILL) -> None:
    """What a crashed or killed sshd session looks like to the client: every process serving a
    connection (the listener's descendants) gets ``sig``."""
    assert server.sshd.process is not None
    for pid in _descendants(server.sshd.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def fingerprint(public_key: Path) -> str:
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()[1]


async def wait_until_disconnected(connection: NodeConnection, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while connection.connected:
            await asyncio.sleep(0.05)


# -- commands -------------------------------------------------------------------------------


async def test_a_command_runs_and_a_list_is_shell_quoted(node: NodeConnection) -> None:
    assert not node.connected
    done = await node.run(["printf", "%s|", "two words", "it's", "$HOME", "a;b"])
    assert node.connected
    assert (done.exit_status, done.stdout, done.stderr) == (0, "two words|it's|$HOME|a;b|", "")
    shell = await node.run('echo "$USER" && echo err >&2')
    assert (shell.stdout, shell.stderr) == ("rsnode\n", "err\n")


async def test_exit_codes_and_check(node: NodeConnection) -> None:
    done = await node.run(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (done.exit_status, done.stderr) == (3, "oops\n")
    with pytest.raises(ProviderError) as raised:
        await node.run(["sh", "-c", "echo 'disk full' >&2; exit 7", "--secret-argument"])
    message = str(raised.value)
    assert message == f"node {node.address}: sh exited with status 7: disk full"
    assert "--secret-argument" not in message
    assert not isinstance(raised.value, NodeUnreachable)
    killed = await node.run(["sh", "-c", "kill -9 $$"], check=False)
    assert killed.exit_status == 128 + signal.SIGKILL


async def test_stdin_reaches_the_command(node: NodeConnection) -> None:
    done = await node.run(["cat"], stdin="line one\nline two\n")
    assert done.stdout == "line one\nline two\n"
    read = await node.run(["sh", "-c", 'read -r s; [ "$s" = "$1" ]', "-", SECRET], stdin=SECRET)
    assert read.exit_status == 0


async def test_without_input_a_command_reads_end_of_file(node: NodeConnection) -> None:
    assert (await node.run(["cat"], timeout=5)).stdout == ""
    ignored = await node.run(["true"], stdin="x" * 2_000_000)  # exits before reading it
    assert ignored.exit_status == 0


async def test_a_file_is_streamed_to_a_commands_stdin(node: NodeConnection, tmp_path: Path) -> None:
    source = tmp_path / "blob"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    done = await node.send(["sh", "-c", "sha256sum | cut -d' ' -f1"], source)
    assert done.stdout.strip() == digest
    with pytest.raises(ProviderError, match=r"sh exited with status 4: no\n?$"):
        await node.send(["sh", "-c", "cat >/dev/null; echo no >&2; exit 4"], source)


async def test_a_command_that_outlasts_its_timeout(node: NodeConnection) -> None:
    with pytest.raises(NodeUnreachable, match=r"sleep did not finish within 0\.5s$"):
        await node.run(["sleep", "10"], timeout=0.5)
    assert (await node.run(["true"])).exit_status == 0  # the connection is still good


async def test_concurrent_callers_share_one_connection(node: NodeConnection) -> None:
    """Every command on the node shows the same client port: one TCP connection, opened by
    whichever caller came first while the others waited for it. More commands than
    MAX_SESSIONS at once wait their turn rather than fail."""
    count = MAX_SESSIONS * 2 + 3
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(node.run(["sh", "-c", 'sleep 0.3; echo "$SSH_CONNECTION"']) for _ in range(count))
    )
    elapsed = asyncio.get_running_loop().time() - started
    assert len({result.stdout for result in results}) == 1
    assert elapsed < count * 0.3 / 2  # they ran side by side
    assert (await node.check()) < 5.0


# -- losing the connection ------------------------------------------------------------------


async def test_a_dropped_connection_is_reopened_by_the_next_caller(own_server: SshServer) -> None:
    node = NodeConnection(address_of(own_server), options_for(own_server))
    try:
        before = (await node.run(["sh", "-c", 'echo "$SSH_CONNECTION"'])).stdout
        drop_connections(own_server)
        await wait_until_disconnected(node)
        after = (await node.run(["sh", "-c", 'echo "$SSH_CONNECTION"'])).stdout
        assert after != before  # a new connection (another client port)
    finally:
        await node.close()


async def test_a_command_cut_off_by_a_lost_connection_is_not_repeated(
    own_server: SshServer, tmp_path: Path
) -> None:
    node = NodeConnection(address_of(own_server), options_for(own_server))
    try:
        await node.run(["true"])
        running = asyncio.create_task(node.run(["sleep", "30"]))
        await asyncio.sleep(0.5)
        drop_connections(own_server)
        with pytest.raises(NodeUnreachable, match=rf"^node {own_server.address}: sleep was cut"):
            await running
    finally:
        await node.close()


async def test_a_stopped_server_is_unreachable_until_it_returns(own_server: SshServer) -> None:
    node = NodeConnection(address_of(own_server), options_for(own_server))
    try:
        await node.run(["true"])
        own_server.sshd.stop()
        await wait_until_disconnected(node)
        with pytest.raises(NodeUnreachable) as raised:
            await node.run(["true"])
        assert str(raised.value).startswith(f"node {own_server.address}: cannot connect: ")
        assert "refused" in str(raised.value).lower()
        assert not node.connected
        assert own_server.sshd.start(own_server.host, own_server.port)
        assert (await node.run(["echo", "back"])).stdout == "back\n"
    finally:
        await node.close()


async def test_the_keepalive_notices_a_server_that_stopped_answering(
    own_server: SshServer,
) -> None:
    """The server's session processes are frozen (SIGSTOP): the TCP connection stays open but
    nothing answers, as when a link goes down; three missed keepalives close it, and the next
    caller gets a fresh connection."""
    node = NodeConnection(address_of(own_server), options_for(own_server, keepalive_interval=0.3))
    try:
        await node.run(["true"])
        assert own_server.sshd.process is not None
        frozen = _descendants(own_server.sshd.process.pid)
        drop_connections(own_server, signal.SIGSTOP)
        try:
            await wait_until_disconnected(node, within=5.0)
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
        assert (await node.run(["echo", "fresh"])).stdout == "fresh\n"
    finally:
        await node.close()


async def test_an_address_nothing_listens_on(ssh_server: SshServer) -> None:
    with socket_bound() as port:
        node = NodeConnection(NodeAddress("127.0.0.1", port), options_for(ssh_server))
        with pytest.raises(NodeUnreachable, match=rf"^node 127\.0\.0\.1:{port}: cannot connect: "):
            await node.check()
        await node.close()


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- logging in -----------------------------------------------------------------------------


async def test_a_key_the_node_does_not_accept(ssh_server: SshServer, tmp_path: Path) -> None:
    generate_key(tmp_path / "stranger", "not authorized")
    node = NodeConnection(
        address_of(ssh_server), options_for(ssh_server, key_file=tmp_path / "stranger")
    )
    with pytest.raises(NodeUnreachable) as raised:
        await node.check()
    assert str(raised.value) == (
        f"node {ssh_server.address}: refused the login of rsnode with the key "
        f"{tmp_path / 'stranger'}: add its public key to ~rsnode/.ssh/authorized_keys on the node"
    )


async def test_an_unreadable_key_file(ssh_server: SshServer, tmp_path: Path) -> None:
    node = NodeConnection(
        address_of(ssh_server), options_for(ssh_server, key_file=tmp_path / "missing")
    )
    with pytest.raises(ProviderError, match=r"cannot use the key file .*missing: .*omit key_file"):
        await node.check()


@pytest.fixture
def ssh_agent(ssh_server: SshServer) -> Iterator[Path]:
    """An ssh-agent holding the server's client key; its socket."""
    folder = Path(tempfile.mkdtemp(prefix="rs-agent-"))
    socket_path = folder / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        for _ in range(100):
            if socket_path.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(ssh_server.key_file)], env=env, check=True)
        yield socket_path
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


async def test_without_a_key_file_the_agent_logs_in(
    ssh_server: SshServer, ssh_agent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
    monkeypatch.setenv("HOME", str(tmp_path))  # no default keys of ~/.ssh to fall back on
    node = NodeConnection(address_of(ssh_server), options_for(ssh_server, key_file=None))
    assert (await node.run(["id", "-un"])).stdout == "rsnode\n"
    await node.close()


# -- host keys ------------------------------------------------------------------------------


async def test_a_changed_host_key_is_refused_with_how_to_fix_it(ssh_server: SshServer) -> None:
    wrong = ssh_server.wrong_known_hosts()
    before = wrong.read_text()
    for accept_new in (False, True):  # trusting new nodes never trusts a changed key
        node = NodeConnection(
            address_of(ssh_server),
            options_for(ssh_server, known_hosts=wrong, accept_new_host_keys=accept_new),
        )
        with pytest.raises(HostKeyRefused) as raised:
            await node.run(["true"])
        assert not node.connected
        port = ssh_server.port
        offered = fingerprint(ssh_server.host_key.with_suffix(".pub"))
        assert str(raised.value) == (
            f"node 127.0.0.1:{port}: its host key CHANGED: it offered ssh-ed25519 key "
            f"{offered}, which is not the key {wrong} holds for it; refusing to connect (the "
            "node may have been reinstalled, or someone is impersonating it). If the change "
            "is expected, check the fingerprint on the node (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub), then: "
            f"ssh-keygen -R '[127.0.0.1]:{port}' -f {wrong} && "
            f"ssh-keyscan -p {port} 127.0.0.1 >> {wrong}"
        )
    assert wrong.read_text() == before


async def test_an_unknown_host_is_refused_unless_new_keys_are_accepted(
    ssh_server: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known_hosts.write_text(f"# nodes\nother.example.net ssh-ed25519 {other}")
    offered = fingerprint(ssh_server.host_key.with_suffix(".pub"))
    node = NodeConnection(address_of(ssh_server), options_for(ssh_server, known_hosts=known_hosts))
    with pytest.raises(HostKeyRefused) as raised:
        await node.check()
    assert str(raised.value) == (
        f"node {ssh_server.address}: its host key is not in {known_hosts} (it offered "
        f"ssh-ed25519 key {offered}); refusing to connect. Add it after checking the "
        f"fingerprint on the node: ssh-keyscan -p {ssh_server.port} 127.0.0.1 >> {known_hosts}; "
        "or set accept_new_host_keys: true to trust new nodes on first connection"
    )

    trusting = NodeConnection(
        address_of(ssh_server),
        options_for(ssh_server, known_hosts=known_hosts, accept_new_host_keys=True),
    )
    with caplog.at_level(logging.WARNING, logger="runnerscale"):
        await trusting.check()
    await trusting.close()
    added = known_hosts_line("127.0.0.1", ssh_server.port, ssh_server.host_public)
    assert known_hosts.read_text().endswith("\n" + added)
    assert f"trusting its new host key (ssh-ed25519 key {offered})" in caplog.text
    # Now it is known: a node without accept_new_host_keys connects.
    await node.check()
    await node.close()


async def test_a_missing_known_hosts_file_is_made_for_a_new_node(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    strict = NodeConnection(
        address_of(ssh_server), options_for(ssh_server, known_hosts=known_hosts)
    )
    with pytest.raises(HostKeyRefused, match="its host key is not in"):
        await strict.check()
    trusting = NodeConnection(
        address_of(ssh_server),
        options_for(ssh_server, known_hosts=known_hosts, accept_new_host_keys=True),
    )
    await trusting.check()
    await trusting.close()
    assert known_hosts.read_text() == known_hosts_line(
        "127.0.0.1", ssh_server.port, ssh_server.host_public
    )


# -- forwarding -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A UNIX-socket echo server the node's user can reach (the node is this machine)."""
    folder = Path(tempfile.mkdtemp(prefix="rs-echo-"))
    os.chmod(folder, 0o755)
    path = folder / "echo.sock"

    handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, path=str(path))
    path.chmod(0o777)
    try:
        yield str(path)
    finally:
        server.close()
        await server.wait_closed()
        # Connections still open end here, their handlers with them: a handler left to be
        # cancelled when the loop closes trips Python 3.11's start_server callback, which
        # asks a cancelled task for its exception (an error in whichever test runs then).
        for writer in handlers.values():
            writer.close()
        if handlers:
            await asyncio.wait(handlers, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


async def round_trip(local: str, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(local)
    writer.write(payload)
    writer.write_eof()
    received = await reader.read()
    writer.close()
    await writer.wait_closed()
    return received


async def test_a_forwarded_socket_survives_a_reconnect(own_server: SshServer) -> None:
    node = NodeConnection(address_of(own_server), options_for(own_server))
    try:
        async with echo_server() as remote:
            local = await node.forward_socket(remote)
            assert await node.forward_socket(remote) == local
            folder = Path(local).parent
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            payload = os.urandom(300_000)
            assert await round_trip(local, payload) == payload
            together = await asyncio.gather(*(round_trip(local, b"x%d" % i) for i in range(5)))
            assert together == [b"x%d" % i for i in range(5)]

            drop_connections(own_server)
            await wait_until_disconnected(node)
            assert await round_trip(local, b"after the reconnect") == b"after the reconnect"
            assert node.connected
        await node.close()
        assert not folder.exists()
    finally:
        await node.close()


async def test_closing_with_a_forwarded_connection_open_logs_no_error(
    ssh_server: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that keeps its connection to the forwarded socket (the Docker SDK's pool does)
    is cut off by ``close()`` without an error: on Python 3.11 the server's callback logs a
    piping task that ends cancelled as "Exception in callback" (the daemon's every stop)."""
    node = NodeConnection(address_of(ssh_server), options_for(ssh_server))
    async with echo_server() as remote:
        local = await node.forward_socket(remote)
        reader, writer = await asyncio.open_unix_connection(local)
        writer.write(b"kept open")
        assert await reader.readexactly(9) == b"kept open"
        await node.close()
        assert await reader.read() == b""  # cut off
        writer.close()
        for _ in range(3):  # the server's callbacks run
            await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- secrets --------------------------------------------------------------------------------


async def test_no_secret_given_on_stdin_reaches_a_log_record(
    own_server: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, asyncssh's too
    caplog.set_level(logging.DEBUG, logger="asyncssh")  # (the daemon's log setup quiets it)
    node = NodeConnection(address_of(own_server), options_for(own_server))
    try:
        await node.run(["sh", "-c", "cat > /dev/null"], stdin=SECRET)
        await node.run(["sh", "-c", "cat > /dev/null; exit 1"], stdin=SECRET, check=False)
        drop_connections(own_server)
        await wait_until_disconnected(node)
        await node.run(["sh", "-c", "cat > /dev/null"], stdin=SECRET)
    finally:
        await node.close()
    assert caplog.records  # the connection did log
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    assert SECRET not in own_server.log.read_text()
