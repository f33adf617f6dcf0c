"""What the SSH backend's tests share: a pool's ``ssh:`` block for loopback servers, providers
over it, the stand-in runner, and reading a node's runner folders without the provider.

The nodes are OpenSSH servers on loopback (``tests/sshd.py``), logged in as the test user (or
root, whose engine socket docker mode reaches); their runners are local processes, so the
tests read their folders and ``/proc`` directly."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runnerscale.protocols import Provider
from runnerscale.providers.registry import BackendContext
from runnerscale.providers.ssh.provider import SshProvider
from runnerscale.providers.ssh.settings import SshConfig
from tests.processes import processes_under
from tests.providers.test_conformance_docker import BOOTED, RUN_SH
from tests.sshd import Sshd, SshServer, mount_script, sshd_argv

__all__ = [
    "BOOTED",
    "NodeServer",
    "SshBackendParts",
    "folders_under",
    "home_of",
    "kill_all_under",
    "provider",
    "runner_script",
    "ssh_config",
    "tags_of",
    "unique",
]


class RunnerScript:
    """The Docker conformance suite's ``run.sh`` (it runs until it is stopped, and only with
    a JIT config), in a folder every user may read (the test user runs it)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rs-ssh-runner-"))
        self.folder.chmod(0o755)
        self.path = self.folder / "run.sh"
        self.path.write_text(RUN_SH)
        self.path.chmod(0o755)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def runner_script() -> Iterator[RunnerScript]:
    script = RunnerScript()
    try:
        yield script
    finally:
        script.remove()


class NodeServer(SshServer):
    """A loopback server that is a machine of its own to the test user: the user's home there
    is a folder of this server's (``home``), in a mount namespace of its sshd, so the runner
    folders of two such nodes never see each other. Stopping it (``sshd.stop()``) cuts its
    connections but not its runners (they run in sessions of their own), as a node's sshd
    dying would; ``sshd.start(host, port)`` brings it back with the same keys and home.

    With ``gate``, every command waits while ``gate`` exists (a node that stalls) and then
    runs."""

    def __init__(self, root: Path, port: int, user: str) -> None:
        super().__init__(root, port, user)
        self.home = root / "home"
        self.gate = root / "gate"
        script = mount_script(
            stage=root / "server" / "stage",
            home=self.home,
            user_home=home_of(user),
            then=sshd_argv(self.config),
        )
        self.sshd = Sshd(
            ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script], self.log
        )

    def _prepare(self) -> None:
        super()._prepare()
        self.home.mkdir(mode=0o755)
        entry = pwd.getpwnam(self.user)
        os.chown(self.home, entry.pw_uid, entry.pw_gid)
        gated = self.root / "gated.sh"
        gated.write_text(
            f"#!/bin/sh\nwhile [ -e {self.gate} ]; do sleep 0.05; done\n"
            'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        gated.chmod(0o755)

    def _configure(self) -> None:
        super()._configure()
        with self.config.open("a") as config:
            config.write(f"ForceCommand {self.root / 'gated.sh'}\n")

    def runner_pids(self) -> list[int]:
        """The process groups of the runners in its home (from their pid files)."""
        found = []
        for path in self.home.glob("*/*/*/*/pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                found.append(int(path.read_text().split()[0]))
        return found

    def kill_runners(self) -> None:
        for pid in self.runner_pids():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def ssh_config(
    servers: Sequence[SshServer], folder: Path, *, user: str | None = None, **block: Any
) -> SshConfig:
    """A pool's ``ssh:`` block over ``servers`` (one host each, unless ``hosts`` is given):
    their key, their known_hosts lines (in ``folder``), short timeouts."""
    known = folder / "known_hosts"
    known.write_text("".join(server.known_hosts.read_text() for server in servers))
    values: dict[str, Any] = {
        "user": user or servers[0].user,
        "key_file": str(servers[0].key_file),
        "known_hosts": str(known),
        "hosts": [{"address": server.address} for server in servers],
        "connect_timeout": 3,
        "command_timeout": 30,
        "health_interval": 0.5,
        "stop_grace": 5,
    }
    values.update(block)
    return SshConfig.model_validate(values, context={"base_dir": Path("/")})


def provider(
    config: SshConfig,
    pool: str,
    controller_id: str,
    state_dir: Path,
    labels: Sequence[str] = (),
) -> SshProvider:
    """A provider of ``config`` for a pool with ``labels``, keeping its memory of the nodes
    under ``state_dir``."""
    context = BackendContext(
        pool=pool,
        controller_id=controller_id,
        state_dir=state_dir,
        labels=frozenset(label.lower() for label in labels),
    )
    return SshProvider(config, context)


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def folders_under(root: Path) -> list[Path]:
    """Runner folders under a work_dir: ``<controller>/<pool>/<runner>``."""
    return sorted(path for path in root.glob("*/*/*") if path.is_dir())


def kill_all_under(root: Path) -> None:
    for _ in range(3):
        pids = processes_under(root)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def tags_of(root: Path, name: str) -> Mapping[str, str] | None:
    """A runner folder's owner, as its path says it."""
    found = [path for path in root.glob(f"*/*/{name}") if path.is_dir()]
    if not found:
        return None
    (folder,) = found
    return {"controller": folder.parent.parent.name, "pool": folder.parent.name, "runner": name}


class SshBackendParts:
    """What the conformance suite's backends of both modes share: providers of the pool's
    ``ssh:`` block (``config``) for any pool and controller id (mixed into a
    ``BackendUnderTest``)."""

    config: SshConfig
    folder: Path
    pool: str
    controller_id: str

    def context(self, pool: str | None = None, controller_id: str | None = None) -> BackendContext:
        return BackendContext(
            pool=pool or self.pool,
            controller_id=controller_id or self.controller_id,
            state_dir=self.folder,
        )

    def provider(self, *, pool: str | None = None, controller_id: str | None = None) -> Provider:
        return SshProvider(self.config, self.context(pool, controller_id))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
