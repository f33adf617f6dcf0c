"""What the external backend's tests share: an in-memory :class:`InstanceAccess` (the daemon's
side is our own boundary), the test providers under ``bin/``, and a provider built over one of
them with a config file and a state directory of its own."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runnerscale.instance_access import BootStatus, InstanceAccess, InstanceGrant, InstanceReport
from runnerscale.providers.external import ExternalProvider
from runnerscale.providers.external.contract import arch_from_labels
from runnerscale.providers.external.settings import ExternalConfig
from runnerscale.providers.registry import BackendContext

__all__ = [
    "BIN",
    "DOWNLOAD",
    "ENVIRON",
    "METADATA_URL",
    "USER_DATA_OPTIONS",
    "Call",
    "MemoryAccess",
    "Rig",
    "calls",
    "group_alive",
    "hanging_pid",
]

#: The test providers.
BIN = Path(__file__).parent / "bin"
METADATA_URL = "http://127.0.0.1:9/api/v1/metadata"
CALLBACK_URL = "http://127.0.0.1:9/api/v1/callbacks"
#: The daemon's environment, as the tests give it: secrets that must not reach a provider,
#: a proxy that must.
ENVIRON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/root",
    "GITHUB_TOKEN": "ghp_DaemonToken0123456789",
    "RUNNERSCALE_ADMIN_TOKEN": "admin-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "http_proxy": "http://proxy.invalid:3128",
    "LXD_SOCKET": "/var/lib/lxd/unix.socket",
}
#: garm's ``user_data_options``, as it always sends them (the zero value).
USER_DATA_OPTIONS = {
    "disable_updates_on_boot": False,
    "extra_packages": None,
    "enable_boot_debug": False,
}
#: The runner download GitHub offers (what becomes the bootstrap's tools).
DOWNLOAD = {
    "os": "linux",
    "architecture": "x64",
    "download_url": "https://github.com/actions/runner/releases/download/v2.330.0/r.tar.gz",
    "filename": "actions-runner-linux-x64-2.330.0.tar.gz",
    "sha256_checksum": "abc123",
}


@dataclass
class MemoryAccess:
    """InstanceAccess in memory: grants by runner name, and the reports a test makes."""

    grants: dict[str, InstanceGrant] = field(default_factory=dict)
    jitconfigs: dict[str, str] = field(default_factory=dict)
    lifetimes: dict[str, float] = field(default_factory=dict)
    reports: dict[str, InstanceReport] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)

    def grant(
        self, *, pool: str, runner_name: str, jitconfig: str, lifetime: float
    ) -> InstanceGrant:
        grant = InstanceGrant(
            runner_name=runner_name,
            token=f"itok-{secrets.token_hex(16)}",
            metadata_url=METADATA_URL,
            callback_url=CALLBACK_URL,
            expires_at=1e12,
        )
        self.grants[runner_name] = grant
        self.jitconfigs[runner_name] = jitconfig
        self.lifetimes[runner_name] = lifetime
        return grant

    def revoke(self, runner_name: str) -> None:
        self.revoked.append(runner_name)
        self.grants.pop(runner_name, None)
        self.reports.pop(runner_name, None)

    def report(self, runner_name: str) -> InstanceReport | None:
        return self.reports.get(runner_name)

    def say(self, runner_name: str, status: BootStatus, message: str) -> None:
        """The instance reports its status (as its boot script would, over HTTP)."""
        self.reports[runner_name] = InstanceReport(
            status=status, message=message, at=0.0, failed=status == "failed"
        )


@dataclass(frozen=True)
class Call:
    """One run of a test provider, as it recorded it."""

    command: str
    env: dict[str, str]
    stdin: bytes

    @property
    def document(self) -> Any:
        return json.loads(self.stdin)


def calls(state: Path, command: str | None = None) -> list[Call]:
    """The runs a test provider recorded under its state directory, oldest first."""
    found = []
    folder = state / "calls"
    for directory in sorted(folder.iterdir()) if folder.is_dir() else ():
        name = directory.name.split("-")[1].split(".")[0]
        if command is not None and name != command:
            continue
        lines = (directory / "env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        found.append(Call(name, env, (directory / "stdin").read_bytes()))
    return found


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def group_alive(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[2]) == pgid and fields[0] not in "ZX":
            members.append(int(entry.name))
    return members


async def hanging_pid(rig: Rig) -> int:
    """The pid of the ``hanging`` provider's run, once it has started (it writes it)."""
    pid_file = rig.state / "hanging.pid"
    for _ in range(1000):
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text:
            return int(text)
        await asyncio.sleep(0.01)
    raise AssertionError(f"the hanging provider never wrote {pid_file}")


class Rig:
    """A test provider in a directory of its own: its config file, its state, and the
    runnerscale provider over it. ``program`` is one of ``bin/`` or an absolute path; with
    ``config_file`` given, that file is the provider's (not written here)."""

    def __init__(
        self,
        root: Path,
        program: str,
        *,
        instance_access: InstanceAccess | None = None,
        config_file: Path | None = None,
        **switches: str,
    ) -> None:
        self.root = root
        self.state = root / "state"
        self.config_file = config_file or root / f"{program}.conf"
        self.access = MemoryAccess()
        #: What the providers grant through: :attr:`access`, or the real endpoints' registry.
        self.instance_access: InstanceAccess = instance_access or self.access
        self.events: list[tuple[str, str]] = []
        #: The daemon's environment its providers are given (by default :data:`ENVIRON`).
        self.environ: Mapping[str, str] = ENVIRON
        #: The provider program (one of ``bin/`` by default).
        self.executable = BIN / program
        if config_file is None:
            self.configure(**switches)

    def configure(self, **switches: str) -> None:
        """Rewrite the provider's config file (STATE and the provider's own switches)."""
        lines = [f"STATE={self.state}", *(f"{key}={value}" for key, value in switches.items())]
        self.config_file.write_text("\n".join(lines) + "\n")

    def provider(
        self,
        *,
        pool: str = "lxd",
        controller_id: str = "ctl-test",
        environ: Mapping[str, str] | None = None,
        labels: frozenset[str] = frozenset({"self-hosted", "linux", "x64"}),
        downloads: Callable[[], Awaitable[list[dict[str, str]]]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        **settings: Any,
    ) -> ExternalProvider:
        config = ExternalConfig.model_validate(
            {
                "executable": str(self.executable),
                "config_file": str(self.config_file),
                "image": "ubuntu:24.04",
                "flavor": "default",
                **settings,
            }
        )

        async def runner_downloads() -> list[dict[str, str]]:
            return [dict(DOWNLOAD)]

        context = BackendContext(
            pool=pool,
            controller_id=controller_id,
            state_dir=self.root,
            labels=labels,
            record=lambda event, outcome: self.events.append((event, outcome)),
            instance_access=self.instance_access,
            boot_timeout=600.0,
            target_url="https://github.com/acme/app",
            runner_group="ci",
            runner_downloads=downloads or runner_downloads,
        )
        return ExternalProvider(
            config,
            context,
            self.instance_access,
            arch=config.arch or arch_from_labels(labels),
            environ=self.environ if environ is None else environ,
            monotonic=monotonic,
            kill_grace=0.3,
        )

    def calls(self, command: str | None = None) -> list[Call]:
        return calls(self.state, command)

    def instance_dirs(self) -> Iterator[Path]:
        folder = self.state / "instances"
        return iter(sorted(folder.iterdir()) if folder.is_dir() else ())
