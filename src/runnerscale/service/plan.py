"""What the unit must say for one validated config: its user, groups and writable folders.

Why from the config: the sandbox of the system service (``ProtectSystem=strict``) lets the
daemon write only where the unit says, and the config is what says where it writes (a SQLite
file outside the state directory, a local pool's ``work_root``, a control socket elsewhere);
a docker pool on the local socket needs the socket's group; a local pool that runs its runners
as another user (``local.user``) needs the daemon to be root. Deciding this from the same
``Config`` the daemon will load keeps the unit and the daemon in agreement, and each decision
that is not obvious comes with a note the command prints.
"""

from __future__ import annotations

import grp
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runnerscale.config.control import UnixControl, control_address
from runnerscale.config.schema import Config
from runnerscale.service.layout import SYSTEM_USER, Layout, Scope
from runnerscale.service.unit import UnitSpec

__all__ = ["DEFAULT_PATH", "Plan", "entry_point", "plan_unit", "service_environment"]

#: systemd's default ``PATH`` for services.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where the Docker SDK finds the engine when a pool names no ``docker.host``.
DOCKER_SOCKET = Path("/var/run/docker.sock")


@dataclass(frozen=True)
class Plan:
    """The unit to write, and what to tell the person installing it."""

    spec: UnitSpec
    notes: list[str]


def entry_point() -> list[str]:
    """The installed ``runnerscale`` program beside this Python (a virtual environment's, or
    the system's), by absolute path; else this Python running the package."""
    beside = Path(sys.executable).parent / "runnerscale"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "runnerscale"]


def service_environment(layout: Layout, values: Mapping[str, str]) -> dict[str, str]:
    """The environment the daemon will load its config with under the unit: the environment
    file's ``values``, its state directory and home (and nothing of the installer's shell)."""
    return {**values, "RUNNERSCALE_STATE_DIR": str(layout.state_dir), "HOME": str(layout.home)}


def plan_unit(config: Config, layout: Layout, config_path: Path, command: list[str]) -> Plan:
    """The unit for ``config`` (validated with :func:`service_environment`)."""
    notes: list[str] = []
    entry_folder = str(Path(command[0]).parent)
    path = DEFAULT_PATH
    if entry_folder not in path.split(":"):
        path = f"{entry_folder}:{path}"
    spec = UnitSpec(
        layout=layout,
        command=[*command, "run", "-c", str(config_path)],
        path=path,
        user=None,
    )
    if layout.scope is Scope.USER:
        return Plan(spec, notes)
    user: str | None = SYSTEM_USER
    as_other = [pool for pool in config.pools if getattr(pool.settings, "user", None)]
    if as_other:
        user = None
        names = ", ".join(
            f"{pool.name} (as {getattr(pool.settings, 'user', '')})" for pool in as_other
        )
        notes.append(
            f"the daemon runs as root: local pools run their runners as another user ({names}), "
            "which only root may do; remove local.user to run it as the user "
            f"{SYSTEM_USER}"
        )
    groups, docker_notes = _docker_access(config, layout)
    notes += docker_notes
    notes += [
        f"{path} is under {tmp}, which the service sees as a private folder of its own "
        "(PrivateTmp): it will not find what is there now, and what it writes there is gone "
        "when it stops; move it elsewhere (the state under /var/lib)"
        for path in (config_path, *_written(config))
        if (tmp := _private_tmp(path)) is not None
    ]
    if user is not None:
        notes += [
            _unreadable_note(user, path)
            for path in (config_path, Path(command[0]))
            if not _others_can_read(path)
        ]
    spec = UnitSpec(
        layout=layout,
        command=spec.command,
        path=path,
        user=user,
        groups=groups,
        writable=_writable(config, layout),
        after=["docker.service"] if groups else [],
    )
    return Plan(spec, notes)


def _unreadable_note(user: str, path: Path) -> str:
    """What stops ``user`` from reading ``path``, and the fix: a folder on the way closed to
    others (the file's own mode would not help), or the file itself."""
    closed = next(
        (folder for folder in reversed(path.parents) if not _mode_allows(folder, stat.S_IXOTH)),
        None,
    )
    if closed is not None:
        return (
            f"the service's user {user} cannot read {path}: the folder {closed} is closed to "
            f"it; chgrp {user} and chmod g+x that folder, or move the file where it can reach"
        )
    return (
        f"the service's user {user} cannot read {path} (only its owner and group can "
        f"reach it): chgrp {user} on it, or chmod o+r if it holds no secret"
    )


def _mode_allows(path: Path, bit: int) -> bool:
    """Whether ``path``'s mode has ``bit`` (False when it cannot be looked at)."""
    try:
        return bool(path.stat().st_mode & bit)
    except OSError:
        return False


def _others_can_read(path: Path) -> bool:
    """Whether a user with no claim on ``path`` (not its owner, not in its group) can read
    it: every folder on the way open to others (``o+x``), the file readable (``o+r``)."""
    return _mode_allows(path, stat.S_IROTH) and all(
        _mode_allows(folder, stat.S_IXOTH) for folder in path.parents
    )


#: The folders a unit with ``PrivateTmp=yes`` sees as its own, empty at each start.
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 - named, not used


def _private_tmp(path: Path) -> Path | None:
    """The private temporary folder ``path`` is under, if any."""
    return next((tmp for tmp in PRIVATE_TMP if path.absolute().is_relative_to(tmp)), None)


def _written(config: Config) -> list[Path]:
    """The folders the daemon writes: its state, the control socket's, the local runners'."""
    wanted = [config.state_dir]
    control = control_address(config.server.control, config.state_dir)
    if isinstance(control, UnixControl):
        wanted.append(control.path.parent)
    wanted += [config.local_work_root(pool) for pool in config.pools if pool.provider == "local"]
    return wanted


def _writable(config: Config, layout: Layout) -> list[Path]:
    """The folders the daemon writes outside its state directory, outermost only."""
    kept: list[Path] = []
    for folder in sorted(set(_written(config)), key=lambda p: len(p.parts)):
        if not any(folder.is_relative_to(outer) for outer in [layout.state_dir, *kept]):
            kept.append(folder)
    return kept


def _docker_access(config: Config, layout: Layout) -> tuple[list[str], list[str]]:
    """The groups that open the local Docker sockets the docker pools use, and notes."""
    sockets: dict[Path, None] = {}
    for pool in config.pools:
        if pool.provider != "docker":
            continue
        host = getattr(pool.settings, "host", None)
        if host is None:
            sockets[DOCKER_SOCKET] = None
        elif host.startswith("unix://"):
            sockets[Path(host.removeprefix("unix://"))] = None
    groups: dict[str, None] = {}
    notes: list[str] = []
    for socket in sockets:
        try:
            group = _group_name(os.stat(layout.on_disk(socket)).st_gid, layout)
        except OSError:
            group = None
        if group is None:
            group = "docker"
            notes.append(
                f"no Docker socket at {socket} (or its group has no name): the unit asks for "
                "the group docker, which Docker's package makes; install Docker before starting "
                "the service"
            )
        elif group == "root":
            notes.append(
                f"the Docker socket {socket} belongs to the group root: give it a group of its "
                "own (dockerd --group) for the service's user to reach it"
            )
            continue
        groups[group] = None
    if groups:
        notes.append(
            f"the service's user joins the group {', '.join(groups)} to reach the Docker engine: "
            "that is as good as root on this host (docs/backends/docker.md)"
        )
    return list(groups), notes


def _group_name(gid: int, layout: Layout) -> str | None:
    if layout.real_root:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return None
    return next(_names_in(layout.on_disk(Path("/etc/group")), gid), None)


def _names_in(group_file: Path, gid: int) -> Iterator[str]:
    try:
        lines = group_file.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[2] == str(gid):
            yield fields[0]
