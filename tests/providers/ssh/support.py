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

from runnerscale.providers.registry import BackendContext
from runnerscale.providers.ssh.provider import SshProvider
from runnerscale.providers.ssh.settings import SshConfig
from tests.sshd import SshServer

__all__ = [
    "BOOTED",
    "RUN_SH",
    "folders_under",
    "home_of",
    "kill_all_under",
    "processes_under",
    "provider",
    "runner_script",
    "ssh_config",
    "tags_of",
    "unique",
]

BOOTED = "run.sh: started"
#: The stand-in for the official run.sh: it keeps running with the JIT config it was given,
#: until it is stopped, and exits at once when the JIT config did not reach it.
RUN_SH = f"""\
#!/bin/sh
[ -n "$ACTIONS_RUNNER_INPUT_JITCONFIG" ] || {{ echo "run.sh: no JIT config"; exit 2; }}
echo "{BOOTED}"
trap 'exit 0' TERM INT
while :; do sleep 1 & wait $!; done
"""


class RunnerScript:
    """``RUN_SH`` in a folder every user may read (the test user runs it)."""

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


def provider(config: SshConfig, pool: str, controller_id: str) -> SshProvider:
    return SshProvider(
        config,
        BackendContext(pool=pool, controller_id=controller_id, state_dir=Path("/nonexistent")),
    )


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def folders_under(root: Path) -> list[Path]:
    """Runner folders under a work_dir: ``<controller>/<pool>/<runner>``."""
    return sorted(path for path in root.glob("*/*/*") if path.is_dir())


def processes_under(root: Path) -> list[int]:
    """Processes whose working directory is in ``root`` (runners, their launchers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == str(root) or cwd.startswith(f"{root}/")):
            found.append(int(entry.name))
    return found


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


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
