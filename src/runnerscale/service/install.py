"""Install, uninstall and inspect the service: the files, the user, and systemd's part.

Why here and not in the command: each step has an order that matters (the user exists before
folders are given to it; the service is stopped before its unit goes; the secrets' file is
0600 from its first byte) and says what it did, so that a person, or a package's script, can
see exactly what changed. What is kept on uninstall (the state, the user) is said, not
silently left.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runnerscale.files import make_dirs, write_atomic
from runnerscale.service import envfile, unit
from runnerscale.service.layout import SERVICE, SYSTEM_USER, UNIT, Layout, Scope
from runnerscale.service.manager import Manager
from runnerscale.service.plan import Plan

__all__ = ["Outcome", "install", "installed", "status_lines", "uninstall"]

#: The sysusers.d line of the system user: a system account, home in the state directory,
#: no login shell.
SYSUSERS_LINE = f'u {SYSTEM_USER} - "runnerscale autoscaler" /var/lib/{SERVICE} /usr/sbin/nologin\n'


@dataclass
class Outcome:
    """What a step did, line by line, and the commands run or left to run."""

    lines: list[str] = field(default_factory=list)
    systemd: Manager | None = None

    def all_lines(self) -> list[str]:
        return self.lines + (self.systemd.lines() if self.systemd is not None else [])


def installed(layout: Layout) -> list[Path]:
    """The files of an installation that exist, as the target system names them."""
    files = [layout.unit, layout.env_file, layout.sysusers]
    return [path for path in files if path is not None and layout.on_disk(path).exists()]


def install(plan: Plan, values: Mapping[str, str]) -> Outcome:
    """Write the environment file, the system user's entry and the unit; make the folders
    the daemon writes; then create the user and enable and (re)start the service, or list
    those commands. Raises ``EnvFileError``, ``ManagerError`` or ``OSError``."""
    spec = plan.spec
    layout = spec.layout
    outcome = Outcome(lines=[f"note: {note}" for note in plan.notes])
    env_text = envfile.render(values)  # refuses a value it cannot hold, before any write
    env_file = layout.on_disk(layout.env_file)
    private_parent = 0o700 if layout.scope is Scope.USER else 0o755
    make_dirs(env_file.parent, private_parent)
    write_atomic(env_file, env_text.encode(), 0o600)
    named = ", ".join(values) or "none: the config references no variable"
    outcome.lines.append(f"wrote {layout.env_file} (mode 0600; variables: {named})")
    systemd = Manager.for_layout(layout)
    if spec.user is not None and layout.sysusers is not None:
        sysusers = layout.on_disk(layout.sysusers)
        make_dirs(sysusers.parent, 0o755)
        write_atomic(sysusers, SYSUSERS_LINE.encode(), 0o644)
        outcome.lines.append(f"wrote {layout.sysusers} (the system user {spec.user})")
        systemd.run(["systemd-sysusers", str(layout.sysusers)], systemd=False)
    unit_file = layout.on_disk(layout.unit)
    make_dirs(unit_file.parent, 0o755)
    write_atomic(unit_file, unit.render(spec).encode(), 0o644)
    outcome.lines.append(f"wrote {layout.unit}")
    for folder in spec.writable:
        make_dirs(layout.on_disk(folder), 0o700)
        owner = _give(folder, spec.user, layout)
        outcome.lines.append(f"made {folder} writable for the service ({owner})")
    systemctl = layout.scope.systemctl
    systemd.run([*systemctl, "daemon-reload"])
    systemd.run([*systemctl, "enable", UNIT])
    systemd.run([*systemctl, "restart", UNIT])
    outcome.systemd = systemd
    if layout.scope is Scope.USER:
        outcome.lines.append(
            "note: a user's services stop when their last session ends; "
            f"`loginctl enable-linger {_user_name()}` keeps this one running"
        )
    return outcome


def _give(folder: Path, user: str | None, layout: Layout) -> str:
    """Hand ``folder`` to the service's user, where that user exists (on this system)."""
    if user is None:
        return "ReadWritePaths"
    if not layout.real_root:
        return f"ReadWritePaths; chown it to {user} on the target system"
    account = pwd.getpwnam(user)  # made by systemd-sysusers just before
    os.chown(layout.on_disk(folder), account.pw_uid, account.pw_gid)
    return f"ReadWritePaths, owned by {user}"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def uninstall(layout: Layout) -> Outcome:
    """Stop and disable the service, end the runners it left, remove the files install
    wrote; keep (and name) the state and the user. Raises ``ManagerError`` or ``OSError``."""
    outcome = Outcome()
    unit_file = layout.on_disk(layout.unit)
    kept = [str(layout.state_dir)]
    if unit_file.exists():
        text = unit_file.read_text()
        kept += [path for path in unit.setting(text, "ReadWritePaths") if path not in kept]
    systemd = Manager.for_layout(layout)
    systemctl = layout.scope.systemctl
    systemd.run([*systemctl, "disable", "--now", UNIT], check=False)
    # KillMode=process left the local backend's runners running: no daemon will adopt them.
    systemd.run([*systemctl, "kill", "--kill-who=all", UNIT], check=False)
    for path in (layout.unit, layout.env_file, layout.sysusers):
        if path is not None and layout.on_disk(path).exists():
            layout.on_disk(path).unlink()
            outcome.lines.append(f"removed {path}")
    env_folder = layout.on_disk(layout.env_file).parent
    if env_folder.is_dir() and not any(env_folder.iterdir()):
        env_folder.rmdir()
        outcome.lines.append(f"removed {layout.env_file.parent} (empty)")
    systemd.run([*systemctl, "daemon-reload"])
    systemd.run([*systemctl, "reset-failed", UNIT], check=False)
    outcome.systemd = systemd
    outcome.lines.append(
        f"kept the state: {', '.join(kept)} (the state database, the control API's token, "
        "runners' folders); remove it when you no longer need it, or install again to go on "
        "with it"
    )
    if layout.scope is Scope.SYSTEM:
        outcome.lines.append(
            f"kept the user {SYSTEM_USER}, who may still own files (userdel {SYSTEM_USER})"
        )
    return outcome


def status_lines(layout: Layout) -> list[str]:
    """Which of the installation's files exist (the environment file by its variables'
    names, never their values)."""
    lines = []
    for path in (layout.unit, layout.env_file):
        on_disk = layout.on_disk(path)
        if not on_disk.exists():
            lines.append(f"{path}: not installed")
            continue
        if path == layout.env_file:
            mode = on_disk.stat().st_mode & 0o777
            try:
                names = ", ".join(envfile.parse(on_disk.read_text())) or "none"
            except OSError as error:
                names = f"unreadable ({error.strerror})"
            lines.append(f"{path}: mode {mode:04o}, variables: {names}")
        else:
            lines.append(f"{path}: installed")
    if shutil.which("systemctl") is None:
        lines.append("systemctl is not installed here")
    return lines
