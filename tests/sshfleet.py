"""A fleet of SSH nodes on this machine: network namespaces, each with its own sshd and address.

Why: the SSH backend places runners on several hosts, marks one down when its link goes, and
reconciles it when it comes back; that needs hosts that really are apart on the network, with
real OpenSSH servers, and links a test can cut.

``Fleet.start(count)`` claims a free ``10.231.N.0/24`` (N unique per fleet, claimed under
``/run/runnerscale-sshfleet`` so two test sessions never share one) and makes:

- a Linux bridge ``rsfN`` with the host's address ``10.231.N.1/24`` (``host_address``: what
  nodes reach the host on, so a fake GitHub for runners on nodes listens there);
- per node k (from 1): a network namespace ``rsfNnK`` whose ``eth0`` (``10.231.N.(k+1)/24``,
  default route via the host) is the peer of the host-side veth ``rsfNhK`` in the bridge;
- per node, its own ed25519 host key and sshd on port 22, except the last node (with
  ``alt_port_nodes=1``, the default) on port 2222, so that ``address:port`` is exercised; its
  ``address`` is written as a pool's ``hosts`` entry would (``10.231.N.2``, ``10.231.N.4:2222``);
- one client key (``key_file``) authorized for every user on every node, and one
  ``known_hosts`` with every node's key.

Each node's sshd runs in PID and mount namespaces of its own (``unshare --pid --mount``), as the
first process there: what a command on the node starts stays there (``ps`` shows only the node's
processes), and everything dies with the node. In its mount namespace the SSH user's home is
the node's own folder (``Node.home`` on the host), so runner folders of two nodes never see each
other; the rest of the filesystem is the host's (the venv and the repository are readable there,
and ``/root`` shows the interpreter's folder when it lives there: ``tests.sshd.mount_script``).

Faults: ``link_down(node)`` / ``link_up(node)`` take the host side of its veth down and up
(packets are dropped: open connections stall without a reset); ``slow(node, seconds)`` makes
every command on the node start that much later (an sshd ``ForceCommand`` that sleeps, then
runs ``$SSH_ORIGINAL_COMMAND``; forwarding is untouched). ``run_on(node, argv)`` runs a command
inside the node's namespaces, for assertions.

``close()`` kills every process in the fleet's namespaces, deletes the links, the namespaces,
the bridge and the files; a fleet whose test process died (``kill -9``) is swept by the next
``Fleet.start``.

Fixture (exposed to ``tests/providers``; elsewhere from a ``conftest.py`` with
``from tests.sshfleet import ssh_fleet``):
``ssh_fleet``, three nodes per test module (the third on port 2222). A test that cuts a link or
slows a node restores it in a ``finally``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sshd import (
    TEST_USER,
    Sshd,
    SshLogin,
    ensure_user,
    generate_key,
    known_hosts_line,
    mount_script,
    require_sshd,
    sshd_argv,
    sshd_config,
)

__all__ = ["Fleet", "Node", "ssh_fleet"]

#: One folder per claimed fleet index, holding its owner (pid and start time) and its files.
STATE = Path("/run/runnerscale-sshfleet")
NAME = "rsf"
ALT_PORT = 2222
TOOLS = ("ip", "unshare", "nsenter", "runuser")

SLOW_COMMAND = """\
#!/bin/sh
# The test fleet's ForceCommand: wait the node's delay (Fleet.slow), then run what was asked.
delay=$(cat "$1" 2>/dev/null) || delay=0
case "$delay" in "" | 0) ;; *) sleep "$delay" ;; esac
if [ -n "${SSH_ORIGINAL_COMMAND+set}" ]; then
    exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$SHELL" -l
"""


@dataclass(frozen=True)
class Node:
    """One host of the fleet."""

    name: str  #: ``node1``, ``node2``, ...
    address: str  #: as a pool's ``hosts`` entry writes it: ``10.231.7.2``, ``10.231.7.4:2222``
    host: str  #: its IP address
    port: int
    netns: str  #: its network namespace (``ip netns``)
    veth: str  #: the host side of its link, in the fleet's bridge
    home: Path  #: the host folder that is the SSH user's home on this node


class Fleet(SshLogin):
    """Nodes as network namespaces with an sshd each; ``close()`` leaves nothing."""

    def __init__(self, index: int, root: Path, user: str) -> None:
        self.index = index
        self.root = root
        self.user = user
        self.bridge = f"{NAME}{index}"
        #: The host's address on the fleet's network (nodes reach the host there).
        self.host_address = f"10.231.{index}.1"
        #: The client's private key, authorized for every user on every node.
        self.key_file = root / "client" / "id_ed25519"
        #: Every node's host key, as OpenSSH writes them.
        self.known_hosts = root / "client" / "known_hosts"
        self.nodes: tuple[Node, ...] = ()
        self._sshd: dict[str, Sshd] = {}
        self._host_keys: dict[str, str] = {}
        self._closed = False

    @classmethod
    def start(cls, count: int = 3, *, user: str = TEST_USER, alt_port_nodes: int = 1) -> Fleet:
        """``count`` nodes, the last ``alt_port_nodes`` of them on port 2222, logged into as
        ``user`` (made if missing; ``root`` works too)."""
        require_sshd()
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"{', '.join(missing)} not installed: bash scripts/install-system-deps")
        ensure_user(user)
        _sweep_abandoned()
        index = _claim_index()
        root = Path(tempfile.mkdtemp(prefix=f"runnerscale-sshfleet-{index}-"))
        (STATE / f"{NAME}{index}" / "root").write_text(str(root))
        fleet = cls(index, root, user)
        atexit.register(fleet.close)
        try:
            fleet._build(count, alt_port_nodes)
        except BaseException:
            fleet.close()
            raise
        return fleet

    def _build(self, count: int, alt_port_nodes: int) -> None:
        self.root.chmod(0o711)  # users read authorized_keys and the ForceCommand by name
        for folder, mode in (("client", 0o700), ("public", 0o755)):
            (self.root / folder).mkdir(mode=mode)
        authorized = self.root / "authorized_keys"
        authorized.write_text(generate_key(self.key_file, "runnerscale test fleet") + "\n")
        authorized.chmod(0o644)
        slow_command = self.root / "public" / "slow-command"
        slow_command.write_text(SLOW_COMMAND)
        slow_command.chmod(0o755)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        nodes = []
        for number in range(1, count + 1):
            port = ALT_PORT if number > count - alt_port_nodes else 22
            node = self._add_node(number, port, authorized, slow_command)
            nodes.append(node)
            self.nodes = tuple(nodes)
        self.known_hosts.write_text(
            "".join(known_hosts_line(n.host, n.port, self._host_keys[n.name]) for n in nodes)
        )

    def _add_node(self, number: int, port: int, authorized: Path, slow_command: Path) -> Node:
        host = f"10.231.{self.index}.{number + 1}"
        folder = self.root / f"node{number}"
        server = folder / "server"
        account = pwd.getpwnam(self.user)
        node = Node(
            name=f"node{number}",
            address=host if port == 22 else f"{host}:{port}",
            host=host,
            port=port,
            netns=f"{NAME}{self.index}n{number}",
            veth=f"{NAME}{self.index}h{number}",
            home=folder / "home",
        )
        folder.mkdir(mode=0o711)
        server.mkdir(mode=0o700)
        (server / "stage").mkdir(mode=0o700)
        node.home.mkdir(mode=0o755)
        os.chown(node.home, account.pw_uid, account.pw_gid)
        self._delay_file(node).write_text("0\n")
        self._delay_file(node).chmod(0o644)
        _ip("netns", "add", node.netns)
        _ip("link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        _ip("link", "set", node.veth, "master", self.bridge, "up")
        _ip("-n", node.netns, "addr", "add", f"{host}/24", "dev", "eth0")
        _ip("-n", node.netns, "link", "set", "eth0", "up")
        _ip("-n", node.netns, "link", "set", "lo", "up")
        _ip("-n", node.netns, "route", "add", "default", "via", self.host_address)
        host_key = server / "ssh_host_ed25519_key"
        self._host_keys[node.name] = generate_key(host_key, f"runnerscale test {node.name}")
        config = server / "sshd_config"
        config.write_text(
            sshd_config(
                listen=host,
                port=port,
                host_key=host_key,
                authorized_keys=authorized,
                pid_file=server / "sshd.pid",
                force_command=f"{slow_command} {self._delay_file(node)}",
            )
        )
        script = mount_script(
            stage=server / "stage",
            home=node.home,
            user_home=Path(account.pw_dir),
            then=sshd_argv(config),
        )
        sshd = Sshd(
            [
                *("ip", "netns", "exec", node.netns),
                *("unshare", "--mount", "--propagation", "slave"),
                *("--pid", "--fork", "--mount-proc", "--kill-child"),
                *("sh", "-c", script),
            ],
            self.sshd_log(node),
        )
        self._sshd[node.name] = sshd
        if not sshd.start(host, port):
            pytest.fail(f"sshd of {node.name} did not start:\n{sshd.tail()}", pytrace=False)
        return node

    def sshd_log(self, node: Node) -> Path:
        """The node's sshd log (``LogLevel VERBOSE``): logins, forwardings, why one failed."""
        return self.root / node.name / "server" / "sshd.log"

    def _delay_file(self, node: Node) -> Path:
        return self.root / "public" / f"{node.name}.delay"

    def node(self, key: str) -> Node:
        """The node by its name (``node2``) or address (``10.231.7.4:2222``)."""
        for node in self.nodes:
            if key in (node.name, node.address):
                return node
        raise KeyError(f"no node {key!r} in the fleet: {[n.name for n in self.nodes]}")

    def link_down(self, node: Node) -> None:
        """Cut the node's link: packets to and from it are dropped from now on."""
        _ip("link", "set", node.veth, "down")

    def link_up(self, node: Node) -> None:
        _ip("link", "set", node.veth, "up")

    def slow(self, node: Node, seconds: float) -> None:
        """Every command started on the node from now on waits ``seconds`` first (0: none)."""
        self._delay_file(node).write_text(f"{seconds:g}\n")

    def run_on(
        self,
        node: Node,
        argv: Sequence[str],
        *,
        user: str | None = None,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the node's network, mount and PID namespaces (as root, or as
        ``user``), whatever its link; ``check`` fails the test on a non-zero exit."""
        init = self._init_pid(node)
        command = ["nsenter", "--target", str(init), "--net", "--mount", "--pid", "--"]
        if user is not None:
            command += ["runuser", "-u", user, "--"]
        done = subprocess.run(
            [*command, *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(argv)} on {node.name} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done

    def _init_pid(self, node: Node) -> int:
        """The host pid of the first process of the node's PID namespace (its sshd)."""
        process = self._sshd[node.name].process
        if process is None:
            raise RuntimeError(f"{node.name} is not running")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if not children:
            raise RuntimeError(f"{node.name}'s sshd is gone:\n{self._sshd[node.name].tail()}")
        return int(children[0])

    def ssh_argv(
        self, node: Node, *command: str, user: str | None = None, known_hosts: Path | None = None
    ) -> list[str]:
        """The system ``ssh`` client's command line to run ``command`` on the node."""
        return self.client_argv(node.host, node.port, command, user=user, known_hosts=known_hosts)

    def wrong_known_hosts(self, node: Node) -> Path:
        """A ``known_hosts`` like the fleet's but with another key for ``node``: what a client
        sees when that node's host key changed."""
        path = self.root / "client" / f"known_hosts.wrong-{node.name}"
        if not path.exists():
            other = generate_key(self.root / "client" / f"other_key_{node.name}", "another host")
            path.write_text(
                "".join(
                    known_hosts_line(
                        n.host, n.port, other if n == node else self._host_keys[n.name]
                    )
                    for n in self.nodes
                )
            )
        return path

    def close(self) -> None:
        """Stop everything and remove it all; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for sshd in self._sshd.values():
            sshd.stop()
        _teardown(self.index, self.root)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _ip_json(*args: str) -> list[dict[str, object]]:
    output = _ip("-j", *args).stdout.strip()
    names: list[dict[str, object]] = json.loads(output) if output else []
    return names


def _claim_index() -> int:
    """A fleet index whose subnet, bridge and namespaces nothing uses, claimed atomically."""
    STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    in_use = json.dumps(_ip_json("addr", "show")) + json.dumps(_ip_json("route", "show"))
    links = {str(link.get("ifname")) for link in _ip_json("link", "show")}
    for index in range(1, 255):
        claim = STATE / f"{NAME}{index}"
        try:
            claim.mkdir(mode=0o700)
        except FileExistsError:
            continue
        if f'"10.231.{index}.' in in_use or f"{NAME}{index}" in links:
            claim.rmdir()
            continue
        (claim / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        return index
    pytest.fail(f"no free 10.231.N.0/24 subnet for a test fleet (see {STATE})")


def _start_time(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _sweep_abandoned() -> None:
    """Tear down the fleets whose test process is gone (killed before it could)."""
    if not STATE.exists():
        return
    for claim in STATE.iterdir():
        match = re.fullmatch(rf"{NAME}(\d+)", claim.name)
        if match is None:
            continue
        try:
            pid, started = (claim / "owner").read_text().split()
        except (OSError, ValueError):
            continue  # being claimed right now
        if _start_time(int(pid)) == started:
            continue
        root = claim / "root"
        _teardown(int(match.group(1)), Path(root.read_text()) if root.exists() else None)


def _teardown(index: int, root: Path | None) -> None:
    """Kill every process in fleet ``index``'s namespaces; delete its links, namespaces,
    bridge and files, and its claim last."""
    namespaces = [
        str(entry["name"])
        for entry in _ip_json("netns", "list")
        if re.fullmatch(rf"{NAME}{index}n\d+", str(entry.get("name")))
    ]
    for netns in namespaces:
        for pid in _ip("netns", "pids", netns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    links = [
        str(link["ifname"])
        for link in _ip_json("link", "show")
        if re.fullmatch(rf"{NAME}{index}(h\d+)?", str(link.get("ifname")))
    ]
    for link in sorted(links, key=len, reverse=True):  # the veths, then the bridge
        _ip("link", "delete", link, check=False)
    for netns in namespaces:
        _ip("netns", "delete", netns, check=False)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(STATE / f"{NAME}{index}", ignore_errors=True)


@pytest.fixture(scope="module")
def ssh_fleet() -> Iterator[Fleet]:
    """Three nodes for the test module: ``10.231.N.2``, ``10.231.N.3``, ``10.231.N.4:2222``."""
    fleet = Fleet.start(3)
    try:
        yield fleet
    finally:
        fleet.close()
