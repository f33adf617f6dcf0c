"""``runnerscale hosts bootstrap``: prepare the nodes of ssh pools, idempotently, in place of a
per-node setup script.

Why steps that check before they apply: a second run must change nothing and say so, and a
run that failed half-way must finish the rest when run again. Each :class:`Step` asks the node
whether its change is needed (``check``: what it would change, or None) and only then makes
it (``apply``); which steps a node gets is decided from its pool's settings and the
command's options alone (:func:`plan`), before anything is asked. Steps run in order and stop
at the first failure on a node (a later step may need an earlier one: the folder needs the
user), other nodes carry on.

Commands run as the admin user (``--admin-user``, root by default; another user through
``sudo -n``), over the backend's own connection: the same known_hosts, the same key.
Everything a command needs is in its arguments, shell-quoted, or streamed on its stdin
(image archives, runner tarballs); no secret is involved.
"""

from __future__ import annotations

import asyncio
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runnerscale.hosts.fleet import FleetNode
from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.connection import CommandResult, NodeConnection, public_key_line

__all__ = [
    "NODE_EXPORTER",
    "AuthorizedKey",
    "BootstrapError",
    "BootstrapOptions",
    "EngineGroup",
    "Image",
    "NodeExporter",
    "NodeOutcome",
    "RunnerFiles",
    "RunnerUser",
    "Shell",
    "Step",
    "WorkDir",
    "bootstrap_fleet",
    "bootstrap_node",
    "default_build_context",
    "plan",
]

#: Debian's package of the Prometheus node exporter (listens on :9100).
NODE_EXPORTER = "prometheus-node-exporter"
#: How long the long steps may take on a node: an image build, loading an archive, apt-get.
BUILD_TIMEOUT = 3600.0
LOAD_TIMEOUT = 1800.0
APT_TIMEOUT = 900.0

#: Shell functions every step's script starts with: a user's home, a path with ~ in it.
_FUNCTIONS = r"""
home_of() { getent passwd "$1" | cut -d: -f6; }
expand() {
  case "$2" in
    "~") home_of "$1" ;;
    "~/"*) printf '%s/%s\n' "$(home_of "$1")" "${2#\~/}" ;;
    *) printf '%s\n' "$2" ;;
  esac
}
"""


def default_build_context() -> Path | None:
    """images/runner of the checkout this runnerscale runs from (None when installed from a
    wheel: then give --image-archive or --build-context)."""
    folder = Path(__file__).resolve().parents[3] / "images" / "runner"
    return folder if (folder / "Dockerfile").is_file() else None


class BootstrapError(Exception):
    """A node cannot be prepared as asked (the message says what is missing and what to do)."""


@dataclass(frozen=True)
class BootstrapOptions:
    """What the command was asked to do beyond the pools' settings."""

    admin_user: str = "root"
    monitoring: bool = False
    #: A ``docker save`` tarball to ``docker load`` where the image is missing (offline nodes).
    image_archive: Path | None = None
    #: The folder to ``docker build`` the image from (images/runner) where it is missing.
    build_context: Path | None = None
    #: The official runner's tarball, unpacked where a process pool's command expects it.
    runner_tarball: Path | None = None


class Shell:
    """The admin user's commands on one node: as root, or through ``sudo -n``."""

    def __init__(self, connection: NodeConnection, admin_user: str) -> None:
        self.connection = connection
        self.sudo = admin_user != "root"

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["sudo", "-n", "--", *argv] if self.sudo else list(argv)

    async def run(
        self, argv: Sequence[str], *, limit: float | None = None, check: bool = True
    ) -> CommandResult:
        return await self.connection.run(self.argv(argv), timeout=limit, check=check)

    async def script(
        self, script: str, *args: str, limit: float | None = None, check: bool = True
    ) -> CommandResult:
        """``sh -c`` with the shared functions, ``args`` as ``$1``..."""
        return await self.run(
            ["sh", "-c", _FUNCTIONS + script, "-", *args], limit=limit, check=check
        )

    async def send(
        self, source: Path, script: str, *args: str, limit: float | None = None
    ) -> CommandResult:
        """A script that reads the local file ``source`` on its stdin."""
        argv = self.argv(["sh", "-c", _FUNCTIONS + script, "-", *args])
        return await self.connection.send(argv, source, timeout=limit)


class Step(ABC):
    """One thing a node needs: checked first, applied only when needed."""

    @abstractmethod
    async def check(self, shell: Shell) -> str | None:
        """What :meth:`apply` would change (said as done: "created the user runner"), or
        None when nothing needs to change. Raises :class:`BootstrapError` when it cannot be
        done as asked."""

    @abstractmethod
    async def apply(self, shell: Shell) -> None:
        """Make the change (raises ``ProviderError`` or :class:`BootstrapError`)."""


@dataclass(frozen=True)
class RunnerUser(Step):
    """The user runnerscale logs in as, with a home. Its password is ``*``: no password, but
    not locked (sshd refuses a locked account even for a key without PAM)."""

    user: str

    async def check(self, shell: Shell) -> str | None:
        found = await shell.run(["id", "-u", self.user], check=False)
        return None if found.exit_status == 0 else f"created the user {self.user}"

    def command(self) -> list[str]:
        return ["useradd", "--create-home", "--user-group", "--shell", "/bin/bash",
                "--password", "*", self.user]  # fmt: skip

    async def apply(self, shell: Shell) -> None:
        await shell.run(self.command())


@dataclass(frozen=True)
class AuthorizedKey(Step):
    """The pool's public key in the user's ``~/.ssh/authorized_keys``, so the daemon can log
    in as them."""

    user: str
    key_file: Path

    def public_line(self) -> str:
        return public_key_line(self.key_file)

    async def check(self, shell: Shell) -> str | None:
        blob = self.public_line().split()[1]
        found = await shell.script(
            'f="$(home_of "$1")/.ssh/authorized_keys"; [ -f "$f" ] && grep -qF "$2" "$f"',
            self.user,
            blob,
            check=False,
        )
        if found.exit_status == 0:
            return None
        return f"authorized the pool's key {self.key_file.name} for {self.user}"

    async def apply(self, shell: Shell) -> None:
        await shell.script(
            'h=$(home_of "$1"); g=$(id -gn "$1"); install -d -m 700 -o "$1" -g "$g" "$h/.ssh"'
            ' && printf "%s\\n" "$2" >> "$h/.ssh/authorized_keys"'
            ' && chown "$1:$g" "$h/.ssh/authorized_keys" && chmod 600 "$h/.ssh/authorized_keys"',
            self.user,
            self.public_line(),
        )


@dataclass(frozen=True)
class WorkDir(Step):
    """Process mode: the folder runner folders go in, owned by the user."""

    user: str
    path: str

    async def check(self, shell: Shell) -> str | None:
        found = await shell.script(
            'd=$(expand "$1" "$2"); echo "$d"; [ -d "$d" ] && [ "$(stat -c %U "$d")" = "$1" ]',
            self.user,
            self.path,
            check=False,
        )
        if found.exit_status == 0:
            return None
        return f"created {found.stdout.strip() or self.path} for {self.user}"

    async def apply(self, shell: Shell) -> None:
        await shell.script(
            'd=$(expand "$1" "$2"); install -d -o "$1" -g "$(id -gn "$1")" -m 0750 "$d"',
            self.user,
            self.path,
        )


@dataclass(frozen=True)
class EngineGroup(Step):
    """Docker mode: the user may use the engine's socket (is in its group, docker)."""

    user: str
    socket: str

    async def check(self, shell: Shell) -> str | None:
        found = await shell.script(
            '[ -S "$2" ] || exit 3; g=$(stat -c %G "$2"); echo "$g";'
            ' [ "$(id -u "$1")" = 0 ] && exit 0;'
            ' id -nG "$1" | tr " " "\\n" | grep -qx "$g" && exit 0; exit 1',
            self.user,
            self.socket,
            check=False,
        )
        group = found.stdout.strip()
        if found.exit_status == 3:
            raise BootstrapError(
                f"no Docker engine socket at {self.socket}: install Docker first (apt-get "
                "install docker.io), or set the pool's docker_socket"
            )
        if found.exit_status == 0:
            return None
        if group in ("root", ""):
            raise BootstrapError(
                f"{self.socket} belongs to the group {group or '?'}: give the engine a docker "
                f"group (Debian's docker.io does) rather than {self.user} root's group"
            )
        return f"added {self.user} to the group {group} (of {self.socket})"

    def command(self, group: str) -> list[str]:
        return ["usermod", "--append", "--groups", group, self.user]

    async def apply(self, shell: Shell) -> None:
        found = await shell.run(["stat", "-c", "%G", self.socket])
        await shell.run(self.command(found.stdout.strip()))


@dataclass(frozen=True)
class Image(Step):
    """Docker mode: the pool's image on the node's engine: loaded from an archive (offline
    nodes), else built there from images/runner."""

    image: str
    socket: str
    archive: Path | None = None
    context: Path | None = None

    def docker(self, *argv: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.socket}", *argv]

    async def present(self, shell: Shell) -> bool:
        found = await shell.run(
            self.docker("image", "inspect", "--format", "{{.Id}}", self.image), check=False
        )
        if found.exit_status == 127:
            raise BootstrapError("no docker command on the node: install docker.io")
        return found.exit_status == 0

    async def check(self, shell: Shell) -> str | None:
        if await self.present(shell):
            return None
        if self.archive is not None:
            return f"loaded {self.image} from {self.archive.name}"
        if self.context is None:
            raise BootstrapError(
                f"the image {self.image} is not on the node: give --image-archive FILE (made "
                f"with docker save {self.image} -o FILE), or run from a checkout with "
                "images/runner (--build-context)"
            )
        return f"built {self.image} from {self.context}"

    async def apply(self, shell: Shell) -> None:
        if self.archive is not None:
            await shell.send(
                self.archive, 'exec docker -H "unix://$1" load -q', self.socket, limit=LOAD_TIMEOUT
            )
            if not await self.present(shell):
                raise BootstrapError(
                    f"{self.archive} holds no image {self.image}: make it with "
                    f"docker save {self.image} -o FILE"
                )
            return
        assert self.context is not None
        with tempfile.TemporaryDirectory(prefix="runnerscale-context-") as scratch:
            bundle = Path(scratch) / "context.tar"
            await asyncio.to_thread(_tar, self.context, bundle)
            await shell.send(
                bundle,
                'd=$(mktemp -d) && trap \'rm -rf "$d"\' EXIT && tar -x -C "$d"'
                ' && DOCKER_BUILDKIT=1 docker -H "unix://$1" build -q -t "$2" "$d"',
                self.socket,
                self.image,
                limit=BUILD_TIMEOUT,
            )


def _tar(folder: Path, target: Path) -> None:
    with tarfile.open(target, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            bundle.add(path, arcname=str(path.relative_to(folder)), recursive=False)


@dataclass(frozen=True)
class RunnerFiles(Step):
    """Process mode: the runner where the pool's command expects it, unpacked from the
    official tarball when missing."""

    user: str
    program: str
    tarball: Path | None = None

    def unpack_flag(self) -> str:
        """tar's decompression option for the tarball's name (stdin has no name to go by)."""
        name = self.tarball.name if self.tarball is not None else ""
        for suffixes, flag in (((".tar.gz", ".tgz"), "-z"), ((".tar.xz", ".txz"), "-J"),
                               ((".tar.bz2", ".tbz2"), "-j")):  # fmt: skip
            if name.endswith(suffixes):
                return flag
        return "--"

    async def check(self, shell: Shell) -> str | None:
        if "/" not in self.program:
            raise BootstrapError(
                f"the runner command {self.program} is not a path: write where the runner "
                "goes, e.g. command: [/opt/actions-runner/run.sh]"
            )
        found = await shell.script(
            'p=$(expand "$1" "$2"); echo "$p"; [ -f "$p" ] && [ -x "$p" ]',
            self.user,
            self.program,
            check=False,
        )
        if found.exit_status == 0:
            return None
        where = found.stdout.strip() or self.program
        if self.tarball is None:
            raise BootstrapError(
                f"the runner command {where} is not on the node: give --runner-tarball PATH "
                "(the official actions-runner-linux-*.tar.gz) to unpack it there"
            )
        return f"unpacked {self.tarball.name} into {where.rsplit('/', 1)[0]}"

    async def apply(self, shell: Shell) -> None:
        assert self.tarball is not None
        await shell.send(
            self.tarball,
            'p=$(expand "$1" "$2"); d=$(dirname "$p"); g=$(id -gn "$1");'
            ' install -d -o "$1" -g "$g" "$d" && tar -x "$3" --no-same-owner -C "$d"'
            ' && chown -R "$1:$g" "$d"',
            self.user,
            self.program,
            self.unpack_flag(),
            limit=LOAD_TIMEOUT,
        )
        if await self.check(shell) is not None:
            raise BootstrapError(
                f"{self.tarball.name} did not put {self.program} there: give the official "
                "runner tarball, or the command that it holds"
            )


@dataclass(frozen=True)
class NodeExporter(Step):
    """With --monitoring: Debian's Prometheus node exporter (port 9100)."""

    async def check(self, shell: Shell) -> str | None:
        found = await shell.run(["dpkg-query", "-W", "-f", "${Status}", NODE_EXPORTER], check=False)
        if found.exit_status == 127:
            raise BootstrapError(
                "not a Debian-based node (no dpkg-query): install the Prometheus node exporter "
                "yourself"
            )
        if found.stdout.strip() == "install ok installed":
            return None
        return f"installed {NODE_EXPORTER} (apt-get)"

    def command(self) -> list[str]:
        return ["env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c",
                f"apt-get update -q && apt-get install -y -q --no-install-recommends "
                f"{NODE_EXPORTER}"]  # fmt: skip

    async def apply(self, shell: Shell) -> None:
        await shell.run(self.command(), limit=APT_TIMEOUT)


def plan(node: FleetNode, options: BootstrapOptions) -> list[Step]:
    """The steps ``node`` gets, in order, from its pool's settings and the options alone."""
    settings = node.settings
    user = settings.user
    steps: list[Step] = [RunnerUser(user)]
    if settings.key_file is not None and user != options.admin_user:
        # (The admin logged in with the pool's key: as that same user, it is authorized.)
        steps.append(AuthorizedKey(user, settings.key_file))
    if settings.mode == "docker":
        assert settings.image is not None  # docker mode requires it
        steps.append(EngineGroup(user, settings.docker_socket))
        steps.append(
            Image(
                settings.image,
                settings.docker_socket,
                archive=options.image_archive,
                context=None if options.image_archive is not None else options.build_context,
            )
        )
    else:
        steps.append(WorkDir(user, settings.work_dir))
        program = (settings.runner_command or ("",))[0]
        steps.append(RunnerFiles(user, program, options.runner_tarball))
    if options.monitoring:
        steps.append(NodeExporter())
    return steps


@dataclass
class NodeOutcome:
    """What bootstrap did on one node: its changes, and why it stopped if it failed."""

    node: FleetNode
    changes: list[str] = field(default_factory=list)
    failure: str = ""


async def bootstrap_node(
    node: FleetNode,
    options: BootstrapOptions,
    connect: Callable[[FleetNode, str], NodeConnection] | None = None,
) -> NodeOutcome:
    """Run the node's steps in order, each applied only when its check says so."""
    outcome = NodeOutcome(node)
    connection = (connect or _connect)(node, options.admin_user)
    shell = Shell(connection, options.admin_user)
    try:
        for step in plan(node, options):
            change = await step.check(shell)
            if change is not None:
                await step.apply(shell)
                outcome.changes.append(change)
    except (BootstrapError, ProviderError) as error:
        outcome.failure = str(error).removeprefix(f"node {node.name}: ")
    finally:
        await connection.close()
    return outcome


async def bootstrap_fleet(
    nodes: Sequence[FleetNode],
    options: BootstrapOptions,
    connect: Callable[[FleetNode, str], NodeConnection] | None = None,
) -> list[NodeOutcome]:
    """Every node at once; the outcomes in the nodes' order."""
    return list(await asyncio.gather(*(bootstrap_node(n, options, connect) for n in nodes)))


def _connect(node: FleetNode, admin_user: str) -> NodeConnection:
    return NodeConnection(node.address, node.options(user=admin_user))
