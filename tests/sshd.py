"""A real OpenSSH server on loopback for tests, and the pieces a fleet of them is made of.

Why a real server: the SSH backend's connection handling (host key checks, keepalives,
multiplexed channels, socket forwarding) must hold against OpenSSH itself; a fake would only
test the fake.

``SshServer.start()`` makes a private directory under the system temp dir with an ed25519 host
key, an ed25519 client key, an ``authorized_keys`` file and an ``sshd_config`` (a free
127.0.0.1 port, no PAM, no DNS lookups, ``StrictModes no`` because the files live under the
world-writable temp dir), starts Debian's ``/usr/sbin/sshd -D -e -f CONFIG`` (its log goes to
``sshd.log`` in that directory) and waits until it answers with its SSH banner. The
``authorized_keys`` path holds no ``%u``, so the client key logs in as any user: the dedicated
test user ``rsnode`` (``TEST_USER``, made here if missing, with a home) by default, and
``root`` too. ``known_hosts`` has the server's ``[127.0.0.1]:PORT`` line;
``wrong_known_hosts()`` writes one with another key for the same address (the changed host key
a client must refuse).

The test run's interpreter may live under ``/root`` (pyenv), which other users cannot enter; so
that the test user can run the venv's ``python`` there (a stand-in runner in process mode),
sshd then runs in a mount namespace of its own where ``/root`` is a tmpfs showing only that
folder (``mount_script``). The rest of the filesystem is the host's.

Fixture (exposed to ``tests/providers``; elsewhere from a ``conftest.py`` with
``from tests.sshd import ssh_server``): ``ssh_server``, one server per session (under 0.1 s to
start; nothing is shared between tests but the server and the user's home, so a test keeps its
files in a folder of its own there).

No ``sshd``: the fixture skips, saying that ``bash scripts/install-system-deps`` installs it.
The fleet of nodes (``tests/sshfleet.py``) builds on ``generate_key``, ``ensure_user``,
``sshd_config`` and ``Sshd``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

__all__ = [
    "SSHD",
    "TEST_USER",
    "SshLogin",
    "SshServer",
    "Sshd",
    "ensure_user",
    "generate_key",
    "hidden_from_users",
    "known_hosts_line",
    "mount_script",
    "require_sshd",
    "ssh_server",
    "sshd_argv",
    "sshd_config",
]

SSHD = Path("/usr/sbin/sshd")
#: The dedicated non-root user tests log in as.
TEST_USER = "rsnode"
#: sshd's privilege separation directory: it refuses to start without it.
PRIVSEP_DIR = Path("/run/sshd")
ROOT_HOME = Path("/root")
MISSING = (
    f"{SSHD} is not installed: run `bash scripts/install-system-deps` "
    "(it installs Debian's openssh-server)"
)
START_TIMEOUT = 20.0


def require_sshd() -> None:
    """Skip the test (with the reason) where no sshd can run: not installed, or not root
    (a server that logs users in switches to them, and the fleet makes namespaces)."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    if os.geteuid() != 0:
        pytest.skip("the OpenSSH test servers need root (sshd switches to the logged-in user)")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)


def ensure_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The OS user ``name``, made (with a home and a shell) if missing. Its password is ``*``
    (no password, but not locked: without PAM, sshd refuses a locked account even for a key)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        try:  # another session may have made it meanwhile
            entry = pwd.getpwnam(name)
        except KeyError:
            pytest.fail(f"cannot create the test user {name!r}: {done.stderr.strip()}")
    if name != "root" and _locked(name):
        subprocess.run(["usermod", "--password", "*", name], check=True, timeout=60)
    home = Path(entry.pw_dir)
    if not home.exists():
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    return entry


def _locked(name: str) -> bool:
    with contextlib.suppress(OSError):
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) > 1:
                return fields[1].startswith("!")
    return False


def hidden_from_users() -> list[Path]:
    """The folders under ``/root`` (closed to other users) that this test run's interpreter,
    its venv and this checkout live in: a test user must run the venv's ``python`` with
    runnerscale importable on a server, as a runner would (CI may clone under ``/root``)."""
    needed = (Path(sys.base_prefix), Path(sys.prefix), Path(__file__).parents[1])
    folders = {
        ROOT_HOME / path.resolve().relative_to(ROOT_HOME).parts[0]
        for path in needed
        if path.resolve().is_relative_to(ROOT_HOME) and path.resolve() != ROOT_HOME
    }
    return sorted(folders)


def mount_script(
    *, stage: Path, home: Path | None = None, user_home: Path | None = None, then: Sequence[str]
) -> str:
    """A shell script, for a private mount namespace, that shows the servers' processes what a
    machine of their own would: ``home`` as the user's home (``user_home``), the folders of
    ``hidden_from_users()`` through ``/root`` (a tmpfs, or the node's home when the user is
    root), then execs ``then``. ``stage`` is an empty folder it uses on the way."""
    lines = ["set -e"]
    reveal = hidden_from_users()
    if reveal:
        lines.append(f"mount --bind {ROOT_HOME} {_q(stage)}")
    if home is not None and user_home is not None and user_home == ROOT_HOME:
        lines.append(f"mount --bind {_q(home)} {ROOT_HOME}")
    elif reveal:
        lines.append(f"mount -t tmpfs -o mode=0711 runnerscale-test {ROOT_HOME}")
    for folder in reveal:
        staged = stage / folder.relative_to(ROOT_HOME)
        lines.append(f"mkdir -p {_q(folder)} && mount --bind {_q(staged)} {_q(folder)}")
    if reveal:
        lines.append(f"umount -l {_q(stage)}")
    if home is not None and user_home is not None and user_home != ROOT_HOME:
        lines.append(f"mount --bind {_q(home)} {_q(user_home)}")
    lines.append(f"exec {shlex.join(then)}")
    return "\n".join(lines) + "\n"


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def generate_key(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (private, mode 0600) and ``path.pub``; the public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def known_hosts_line(host: str, port: int, public_line: str) -> str:
    """The ``known_hosts`` line OpenSSH writes for a host key at ``host:port``."""
    key_type, key = public_line.split()[:2]
    address = host if port == 22 else f"[{host}]:{port}"
    return f"{address} {key_type} {key}\n"


def sshd_config(
    *,
    listen: str,
    port: int,
    host_key: Path,
    authorized_keys: Path,
    pid_file: Path,
    force_command: str | None = None,
) -> str:
    """An ``sshd_config`` for a test server: keys only, no PAM, no DNS lookups, room for the
    many channels one pooled connection multiplexes."""
    lines = [
        f"ListenAddress {listen}:{port}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "UseDNS no",
        # The files are under the system temp dir, which is world-writable.
        "StrictModes no",
        "LogLevel VERBOSE",
        "MaxSessions 200",
        "MaxStartups 100:30:200",
        "LoginGraceTime 30",
        "AllowTcpForwarding yes",
        "AllowStreamLocalForwarding yes",
        "StreamLocalBindUnlink yes",
        "X11Forwarding no",
        "PrintMotd no",
        "PrintLastLog no",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    if force_command is not None:
        lines.append(f"ForceCommand {force_command}")
    return "\n".join(lines) + "\n"


class SshLogin:
    """How a test logs in to its servers with the system ``ssh`` client: as ``user`` with
    ``key_file``, host keys checked against ``known_hosts`` only, never a prompt."""

    user: str
    key_file: Path
    known_hosts: Path

    def client_argv(
        self,
        host: str,
        port: int,
        command: Sequence[str],
        *,
        user: str | None = None,
        known_hosts: Path | None = None,
        timeout: float = 5.0,
    ) -> list[str]:
        """The command line that runs ``command`` (shell-quoted) at ``host:port``."""
        return [
            "ssh",
            *("-F", "/dev/null", "-i", str(self.key_file)),
            *("-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"),
            *("-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}"),
            *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"),
            *("-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(timeout))}"),
            *("-p", str(port), f"{user or self.user}@{host}"),
            *("--", shlex.join(command)),
        ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(host: str, port: int) -> bool:
    """Whether an SSH server answers at ``host:port`` with its banner."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.settimeout(2.0)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def sshd_argv(config: Path) -> list[str]:
    """sshd in the foreground, logging to its stderr."""
    return [str(SSHD), "-D", "-e", "-f", str(config)]


class Sshd:
    """One sshd process (``argv``: ``sshd_argv`` or a command that ends up exec'ing it), its
    stderr in ``log``; stopped with every process it started that is still its descendant."""

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        self.argv = list(argv)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, host: str, port: int) -> bool:
        """Start it and wait for its banner at ``host:port``; False if it exited first."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _answers(host, port):
                return True
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"sshd did not answer on {host}:{port} in {START_TIMEOUT:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        doomed = _descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


def _descendants(root: int) -> list[int]:
    """Every process whose chain of parents leads to ``root`` (per-connection sshd children
    start sessions of their own, so the process group alone does not hold them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            # After the command name in parentheses: the state, then the parent's pid.
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshServer(SshLogin):
    """One throwaway sshd on 127.0.0.1: ``start()`` it, log in as ``user`` (or root) with
    ``key_file`` checking ``known_hosts``, ``stop()`` it."""

    host = "127.0.0.1"

    def __init__(self, root: Path, port: int, user: str) -> None:
        self.root = root
        self.port = port
        self.user = user
        client = root / "client"
        server = root / "server"
        #: The client's private key (ed25519, mode 0600, no passphrase).
        self.key_file = client / "id_ed25519"
        #: The server's ``[127.0.0.1]:PORT`` host key line, alone.
        self.known_hosts = client / "known_hosts"
        self.host_key = server / "ssh_host_ed25519_key"
        self.authorized_keys = root / "authorized_keys"
        self.config = server / "sshd_config"
        self.log = server / "sshd.log"
        command = sshd_argv(self.config)
        if user != "root" and hidden_from_users():
            # A mount namespace of its own, where the user can reach the venv's interpreter.
            script = mount_script(stage=server / "stage", then=command)
            command = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script]
        self.sshd = Sshd(command, self.log)

    @classmethod
    def start(cls, user: str = TEST_USER, attempts: int = 3) -> SshServer:
        require_sshd()
        ensure_user(user)
        root = Path(tempfile.mkdtemp(prefix="runnerscale-sshd-"))
        root.chmod(0o711)  # the user reads authorized_keys by its name; nothing is listed
        server = cls(root, _free_port(), user)
        try:
            server._prepare()
            for attempt in range(attempts):
                server._configure()
                if server.sshd.start(server.host, server.port):
                    break
                if attempt == attempts - 1:
                    pytest.fail(f"sshd did not start:\n{server.sshd.tail()}", pytrace=False)
                server.port = _free_port()  # most likely someone took the port meanwhile
        except BaseException:
            server.stop()
            raise
        return server

    def _prepare(self) -> None:
        for folder in (self.key_file.parent, self.host_key.parent, self.host_key.parent / "stage"):
            folder.mkdir(mode=0o700)
        self.host_public = generate_key(self.host_key, "runnerscale test sshd")
        public = generate_key(self.key_file, "runnerscale test client")
        self.authorized_keys.write_text(public + "\n")
        self.authorized_keys.chmod(0o644)

    def _configure(self) -> None:
        self.config.write_text(
            sshd_config(
                listen=self.host,
                port=self.port,
                host_key=self.host_key,
                authorized_keys=self.authorized_keys,
                pid_file=self.root / "server" / "sshd.pid",
            )
        )
        self.known_hosts.write_text(known_hosts_line(self.host, self.port, self.host_public))

    @property
    def address(self) -> str:
        """The server as a pool's ``hosts`` entry writes it: ``127.0.0.1:PORT``."""
        return f"{self.host}:{self.port}"

    def wrong_known_hosts(self) -> Path:
        """A ``known_hosts`` with another ed25519 key for this server's address: what a client
        sees when the server's host key changed (it must refuse to connect)."""
        path = self.root / "client" / "known_hosts.wrong"
        if not path.exists():
            other = generate_key(self.root / "client" / "other_host_key", "another host")
            path.write_text(known_hosts_line(self.host, self.port, other))
        return path

    def ssh_argv(
        self, *command: str, user: str | None = None, known_hosts: Path | None = None
    ) -> list[str]:
        """The system ``ssh`` client's command line to run ``command`` on this server."""
        return self.client_argv(self.host, self.port, command, user=user, known_hosts=known_hosts)

    def stop(self) -> None:
        self.sshd.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SshServer]:
    """One sshd on 127.0.0.1 for the whole session (user ``rsnode``; ``root`` works too)."""
    server = SshServer.start()
    try:
        yield server
    finally:
        server.stop()
