"""One pooled SSH connection per node: opened on first use, shared by every caller, kept
alive, reopened after a loss; host keys always verified.

Why one connection, multiplexed: a runner's creation is a few short commands, and an SSH
handshake costs more than all of them; concurrent callers share one transport as channels.
sshd allows ``MaxSessions`` (10 by default) sessions per connection, so at most
:data:`MAX_SESSIONS` commands run at once and the rest wait their turn.

Why lazy and self-healing: a node that went away must not take the pool down. Nothing is
opened until a caller needs the node; a lost connection (the keepalive notices a dead link
within ``keepalive_interval`` times :data:`KEEPALIVE_COUNT_MAX`) is dropped, and the next
caller opens a new one, or gets :class:`NodeUnreachable` saying why it cannot. A command whose
channel could not even open on a connection found dead is retried once on a fresh one (it
never started); a command that started is never repeated, since it may have had its effect.

Why host keys are checked here, not only by asyncssh: asyncssh refuses a key it cannot match
with one generic message. The client below is asked about every key ``known_hosts`` does not
hold, so the refusal can say whether the node is unknown or its key *changed*, which key it
offered (fingerprint), which file was read and what to run. An unknown node is trusted only
with ``accept_new_host_keys`` (its key is then appended to ``known_hosts``); a changed key is
always refused.

Secrets travel on a command's stdin, never in its command line (every user on the node can
read that), and nothing here logs a command's input or output.

A forwarded UNIX socket (the node's Docker engine) is a local socket of our own, in a private
directory, that opens a channel to the remote socket per local connection on whatever
connection is current: it keeps its path across reconnects, and a caller never sees a stale
listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.address import NodeAddress

if TYPE_CHECKING:
    from runnerscale.providers.ssh.settings import SshConfig

__all__ = [
    "KEEPALIVE_COUNT_MAX",
    "MAX_SESSIONS",
    "CommandResult",
    "HostKeyRefused",
    "NodeAddress",
    "NodeConnection",
    "NodeUnreachable",
    "SshOptions",
    "public_key_line",
]

log = logging.getLogger(__name__)

#: Keepalive probes a connection may leave unanswered before it counts as lost.
KEEPALIVE_COUNT_MAX = 3
#: Commands at once on one connection (below sshd's default MaxSessions of 10).
MAX_SESSIONS = 8
#: How much of a failed command's stderr its error shows (the end, where the cause is).
_STDERR_TAIL = 400
_COPY_CHUNK = 64 * 1024


class NodeUnreachable(ProviderError):  # noqa: N818 - the name the provider codes against
    """The node did not answer, refused the login, or the connection was lost (the message
    names the node and the cause)."""


class HostKeyRefused(ProviderError):  # noqa: N818 - the name the provider codes against
    """The node's host key is unknown or changed (the message names the node, the key's
    fingerprint, the known_hosts file and how to fix it)."""


@dataclass(frozen=True)
class CommandResult:
    """What a command on a node did."""

    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SshOptions:
    """How to reach a pool's nodes (the same for every node)."""

    user: str
    known_hosts: Path
    #: None: the SSH agent ($SSH_AUTH_SOCK) and the default keys of ~/.ssh.
    key_file: Path | None = None
    #: Trust a node not in known_hosts on first connection (appending its key there).
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    command_timeout: float = 60.0

    @classmethod
    def of(cls, config: SshConfig) -> SshOptions:
        """The options a pool's ``ssh:`` block gives."""
        return cls(
            user=config.user,
            known_hosts=config.known_hosts,
            key_file=config.key_file,
            accept_new_host_keys=config.accept_new_host_keys,
            connect_timeout=config.connect_timeout,
            keepalive_interval=config.keepalive_interval,
            command_timeout=config.command_timeout,
        )


def public_key_line(key_file: Path) -> str:
    """The OpenSSH public key line of a private key file (what ``authorized_keys`` holds).
    Raises ``ProviderError`` when it cannot be read."""
    try:
        key = asyncssh.read_private_key(key_file)
    except (OSError, asyncssh.KeyImportError, ValueError) as error:
        raise ProviderError(
            f"cannot read the key {key_file}: {getattr(error, 'strerror', None) or error} "
            "(a readable private key without a passphrase)"
        ) from None
    return key.export_public_key("openssh").decode().strip()


class KeyVerdict(Enum):
    """What known_hosts says of a key the node offered that it does not hold."""

    UNKNOWN = "unknown"  # no key at all for this node
    CHANGED = "changed"  # other keys for this node: this one is not among them


def judge_host_key(known: asyncssh.SSHKnownHosts, address: NodeAddress, peer: str) -> KeyVerdict:
    """Whether a key known_hosts did not match is the key of an unknown node or a changed one
    (called only for keys asyncssh found no match for)."""
    port = None if address.port == 22 else address.port
    trusted = asyncssh.match_known_hosts(known, address.host, peer, port)[0]
    return KeyVerdict.CHANGED if trusted else KeyVerdict.UNKNOWN


def _describe(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"


def host_key_refusal(
    address: NodeAddress, verdict: KeyVerdict, key: asyncssh.SSHKey, known_hosts: Path
) -> str:
    """The message of a refused host key: what the node offered, what the file says, and the
    commands that fix it."""
    name = shlex.quote(address.known_hosts_name)
    keyscan = (
        f"ssh-keyscan{'' if address.port == 22 else f' -p {address.port}'} "
        f"{shlex.quote(address.host)} >> {shlex.quote(str(known_hosts))}"
    )
    if verdict is KeyVerdict.CHANGED:
        return (
            f"node {address}: its host key CHANGED: it offered {_describe(key)}, which is not "
            f"the key {known_hosts} holds for it; refusing to connect (the node may have been "
            "reinstalled, or someone is impersonating it). If the change is expected, check "
            "the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then: "
            f"ssh-keygen -R {name} -f {shlex.quote(str(known_hosts))} && {keyscan}"
        )
    return (
        f"node {address}: its host key is not in {known_hosts} (it offered {_describe(key)}); "
        f"refusing to connect. Add it after checking the fingerprint on the node: {keyscan}; "
        "or set accept_new_host_keys: true to trust new nodes on first connection"
    )


def _append_known_host(path: Path, address: NodeAddress, key: asyncssh.SSHKey) -> None:
    line = " ".join(key.export_public_key("openssh").decode().split()[:2])
    previous = path.read_bytes() if path.exists() else b""
    separator = "" if not previous or previous.endswith(b"\n") else "\n"
    with path.open("a", encoding="utf-8") as file:
        file.write(f"{separator}{address.known_hosts_name} {line}\n")


def _program(command: str | Sequence[str]) -> str:
    """A command's program only (for messages): its arguments may say more than needed."""
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        return words[0] if words else command
    return command[0] if command else ""


class _Client(asyncssh.SSHClient):
    """Asked by asyncssh about keys known_hosts does not hold; told when the link is lost."""

    def __init__(self, node: NodeConnection, known: asyncssh.SSHKnownHosts) -> None:
        self._node = node
        self._known = known
        self.refusal: str | None = None
        self.authenticated = False

    def auth_completed(self) -> None:
        self.authenticated = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        node = self._node
        verdict = judge_host_key(self._known, node.address, addr)
        if verdict is KeyVerdict.UNKNOWN and node.options.accept_new_host_keys:
            try:
                _append_known_host(node.options.known_hosts, node.address, key)
            except OSError as error:
                self.refusal = (
                    f"node {node.address}: cannot add its host key to "
                    f"{node.options.known_hosts}: {error.strerror or error}"
                )
                return False
            log.warning(
                "node %s: trusting its new host key (%s) and adding it to %s "
                "(accept_new_host_keys)",
                node.address,
                _describe(key),
                node.options.known_hosts,
            )
            return True
        self.refusal = host_key_refusal(node.address, verdict, key, node.options.known_hosts)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.authenticated:  # not a connection that failed while it was being opened
            self._node._lost(exc)


class NodeConnection:
    """One pooled SSH connection to one node: opened on first use, kept alive, reopened after a
    loss."""

    def __init__(self, address: NodeAddress, options: SshOptions) -> None:
        self.address = address
        self.options = options
        self._conn: asyncssh.SSHClientConnection | None = None
        self._opening = asyncio.Lock()
        self._sessions = asyncio.Semaphore(MAX_SESSIONS)
        self._closing = False
        self._forwards: dict[str, tuple[str, asyncio.Server]] = {}
        self._pipes: set[asyncio.Task[None]] = set()
        self._socket_dir: Path | None = None

    def __repr__(self) -> str:
        return f"NodeConnection({self.address}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (a lost one is noticed by the keepalive)."""
        return self._conn is not None and not self._conn.is_closed()

    # -- commands ---------------------------------------------------------------------------

    async def run(
        self,
        command: str | Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a limit per command, on the node
        check: bool = True,
    ) -> CommandResult:
        """Run ``command`` on the node (a list is shell-quoted; a string goes to the login
        shell as it is) and wait for it. ``stdin`` is its input: the only way a secret may
        reach it. Raises :class:`NodeUnreachable` when the node cannot be reached, the
        connection is lost meanwhile or the command outlasts ``timeout`` (default: the
        options' ``command_timeout``), and with ``check`` a ``ProviderError`` naming the node,
        the program and the end of its stderr when it exits non-zero."""
        data = b"" if stdin is None else stdin.encode()

        async def feed(process: asyncssh.SSHClientProcess[bytes]) -> None:
            process.stdin.write(data)
            process.stdin.write_eof()

        return await self._execute(command, feed, timeout, check)

    async def send(
        self,
        command: str | Sequence[str],
        source: Path,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a limit per command, on the node
        check: bool = True,
    ) -> CommandResult:
        """Run ``command`` with the local file ``source`` as its stdin, streamed (an image
        archive for ``docker load``, a tarball for ``tar -x``); otherwise as :meth:`run`."""

        async def feed(process: asyncssh.SSHClientProcess[bytes]) -> None:
            with source.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, _COPY_CHUNK * 4):
                    process.stdin.write(chunk)
                    await process.stdin.drain()
            process.stdin.write_eof()

        return await self._execute(command, feed, timeout, check)

    async def _execute(
        self,
        command: str | Sequence[str],
        feed: Callable[[asyncssh.SSHClientProcess[bytes]], Awaitable[None]],
        given_limit: float | None,
        check: bool,
    ) -> CommandResult:
        line = command if isinstance(command, str) else shlex.join(command)
        program = _program(command)
        limit = self.options.command_timeout if given_limit is None else given_limit
        started = time.monotonic()
        async with self._sessions:
            try:
                async with asyncio.timeout(limit):
                    process = await self._open_process(line)
                    try:
                        # Fed while its output is read: a command that writes much before it
                        # has read all its input never waits on us.
                        _, (stdout, stderr) = await asyncio.gather(
                            _fed(feed, process), process.communicate()
                        )
                    finally:
                        process.close()
            except TimeoutError:
                raise NodeUnreachable(
                    f"node {self.address}: {program} did not finish within {limit:g}s"
                ) from None
            except (asyncssh.Error, OSError) as error:
                raise self._unreachable(f"{program} was cut off", error) from None
        status = process.exit_status
        if status is None or (status < 0 and process.exit_signal is None):
            raise self._unreachable(f"{program} was cut off", None)
        if status < 0:
            signal_name = process.exit_signal[0] if process.exit_signal else ""
            status = 128 + _signal_number(signal_name)
        result = CommandResult(status, _text(stdout), _text(stderr))
        log.debug(
            "node %s: %s exited %d after %.2fs",
            self.address,
            program,
            status,
            time.monotonic() - started,
        )
        if check and status != 0:
            tail = result.stderr.strip()[-_STDERR_TAIL:] or "(no stderr)"
            raise ProviderError(
                f"node {self.address}: {program} exited with status {status}: {tail}"
            )
        return result

    async def check(self) -> float:
        """A round trip to the node (connecting when needed); its duration in seconds. Raises
        :class:`NodeUnreachable` or :class:`HostKeyRefused`."""
        limit = self.options.connect_timeout * 2
        started = time.monotonic()
        try:
            await self.run("true", check=True, timeout=limit)
        except NodeUnreachable:
            if time.monotonic() - started < limit:
                raise  # refused, reset, closed: its own words say why
            # "true did not finish" would puzzle an operator: say what was asked.
            raise NodeUnreachable(
                f"node {self.address}: no answer within {limit:g}s (a health check: the node "
                "or its network is down, or it is overloaded)"
            ) from None
        return time.monotonic() - started

    async def _open_process(self, line: str) -> asyncssh.SSHClientProcess[bytes]:
        conn = await self._connection()
        try:
            return await conn.create_process(line, encoding=None)
        except asyncssh.ChannelOpenError:
            if not conn.is_closed():
                raise
        # The connection was found dead at the channel's opening: the command never
        # started, so it is safe to try once more on a fresh one.
        conn = await self._connection()
        return await conn.create_process(line, encoding=None)

    # -- forwarding -------------------------------------------------------------------------

    async def forward_socket(self, remote_path: str) -> str:
        """A local UNIX socket (in a private directory, mode 0700) whose connections reach
        the node's UNIX socket ``remote_path``; the same path for the life of this object,
        across reconnects. Connects now, so an unreachable node raises here."""
        await self._connection()
        if remote_path in self._forwards:
            return self._forwards[remote_path][0]
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="runnerscale-ssh-"))
        local = str(self._socket_dir / f"{len(self._forwards)}.sock")

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._pipes.add(task)
            try:
                await self._pipe(reader, writer, remote_path)
            except asyncio.CancelledError:
                # close() ended it. Not re-raised: the server's callback on Python 3.11 logs a
                # task that ends cancelled as "Exception in callback" (fixed in 3.12).
                pass
            finally:
                self._pipes.discard(task)

        server = await asyncio.start_unix_server(serve, path=local)
        os.chmod(local, 0o600)
        self._forwards[remote_path] = (local, server)
        return local

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote_path: str
    ) -> None:
        try:
            try:
                conn = await self._connection()
                try:
                    remote_reader, remote_writer = await conn.open_unix_connection(remote_path)
                except asyncssh.ChannelOpenError:
                    if not conn.is_closed():
                        raise
                    conn = await self._connection()
                    remote_reader, remote_writer = await conn.open_unix_connection(remote_path)
            except (ProviderError, asyncssh.Error, OSError) as error:
                log.warning(
                    "node %s: cannot forward a connection to %s: %s",
                    self.address,
                    remote_path,
                    error,
                )
                return
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_copy(reader, remote_writer))
                    group.create_task(_copy(remote_reader, writer))
            except* (asyncssh.Error, OSError):
                pass  # one side went away: both are closed below
            finally:
                remote_writer.close()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # -- the connection ---------------------------------------------------------------------

    async def _connection(self) -> asyncssh.SSHClientConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        async with self._opening:  # concurrent callers share one attempt
            conn = self._conn
            if conn is not None and not conn.is_closed():
                return conn
            if self._closing:
                raise NodeUnreachable(f"node {self.address}: its connection is closed")
            self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        known = self._known_hosts()
        client = _Client(self, known)
        try:
            options = asyncssh.SSHClientConnectionOptions(
                username=self.options.user,
                known_hosts=known,
                client_keys=() if self.options.key_file is None else [self.options.key_file],
                agent_path=() if self.options.key_file is None else None,
                config=[],  # not ~/.ssh/config: the pool's settings say everything
                preferred_auth="publickey",
                password=None,
                kbdint_auth=False,
                connect_timeout=self.options.connect_timeout,
                login_timeout=self.options.connect_timeout,
                keepalive_interval=self.options.keepalive_interval,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
            )
        except (OSError, asyncssh.KeyImportError, ValueError) as error:
            raise ProviderError(
                f"node {self.address}: cannot use the key file {self.options.key_file}: "
                f"{getattr(error, 'strerror', None) or error} (give a readable private key "
                "without a passphrase, or omit key_file to use the SSH agent)"
            ) from None
        started = time.monotonic()
        try:
            conn = await asyncssh.connect(
                self.address.host,
                self.address.port,
                client_factory=lambda: client,
                options=options,
            )
        except asyncssh.HostKeyNotVerifiable as error:
            raise HostKeyRefused(
                client.refusal
                or f"node {self.address}: its host key was refused ({error.reason}); check "
                f"{self.options.known_hosts}"
            ) from None
        except asyncssh.PermissionDenied:
            how = (
                f"the key {self.options.key_file}"
                if self.options.key_file
                else "the SSH agent's keys"
            )
            raise NodeUnreachable(
                f"node {self.address}: refused the login of {self.options.user} with {how}: "
                f"add its public key to ~{self.options.user}/.ssh/authorized_keys on the node"
            ) from None
        except TimeoutError:
            raise NodeUnreachable(
                f"node {self.address}: did not answer within "
                f"{self.options.connect_timeout:g}s (connect_timeout)"
            ) from None
        except (asyncssh.Error, OSError) as error:
            raise self._unreachable("cannot connect", error) from None
        log.info(
            "node %s: connected as %s in %.2fs",
            self.address,
            self.options.user,
            time.monotonic() - started,
        )
        return conn

    def _known_hosts(self) -> asyncssh.SSHKnownHosts:
        path = self.options.known_hosts
        try:
            return asyncssh.read_known_hosts(str(path))
        except FileNotFoundError:
            return asyncssh.import_known_hosts("")  # every node is unknown
        except (OSError, ValueError) as error:
            raise ProviderError(
                f"node {self.address}: cannot read known_hosts {path}: "
                f"{getattr(error, 'strerror', None) or error}"
            ) from None

    def _lost(self, exc: Exception | None) -> None:
        if self._closing:
            return
        log.warning("node %s: connection lost%s", self.address, f": {_reason(exc)}" if exc else "")

    def _unreachable(self, what: str, error: BaseException | None) -> NodeUnreachable:
        cause = _reason(error) if error is not None else "the connection was lost"
        return NodeUnreachable(f"node {self.address}: {what}: {cause}")

    async def close(self) -> None:
        """Close the connection, the forwarded sockets and their private directory."""
        self._closing = True
        for _, server in self._forwards.values():
            server.close()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)
        self._forwards.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(asyncssh.Error, OSError):
                await conn.wait_closed()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


async def _fed(
    feed: Callable[[asyncssh.SSHClientProcess[bytes]], Awaitable[None]],
    process: asyncssh.SSHClientProcess[bytes],
) -> None:
    """``feed(process)``, where a command that exits before reading all of its input is not
    an error (its exit status tells); a lost connection shows in its output's end."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, asyncssh.Error):
        await feed(process)


async def _copy(
    source: asyncio.StreamReader | asyncssh.SSHReader[bytes],
    target: asyncio.StreamWriter | asyncssh.SSHWriter[bytes],
) -> None:
    while data := await source.read(_COPY_CHUNK):
        target.write(data)
        await target.drain()
    if target.can_write_eof():
        target.write_eof()


def _reason(error: BaseException | None) -> str:
    if isinstance(error, asyncssh.DisconnectError):
        return error.reason or type(error).__name__
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)  # asyncio's own wording names no cause
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _text(output: object) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return "" if output is None else str(output)


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return 0
