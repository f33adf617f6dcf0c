"""Where ``service install`` puts each file, for the system's service manager or a user's.

Why one place: install writes these files, uninstall removes them and status reads them, and
the three must agree without keeping a list of what was written. Every path is the one the
target system sees (the unit names them); ``on_disk`` is where it is written, under
``--root`` when a test or a packager asks for the files in a folder of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runnerscale.config.paths import default_state_dir

__all__ = ["SERVICE", "SYSTEM_USER", "UNIT", "Layout", "Scope", "layout_for"]

#: The unit's name, without its suffix; also the system user's and the folders' name.
SERVICE = "runnerscale"
UNIT = f"{SERVICE}.service"
#: The dedicated user the system service runs as (made by systemd-sysusers).
SYSTEM_USER = SERVICE


class Scope(enum.Enum):
    """Which service manager runs the daemon: the system's (as a dedicated user, sandboxed) or
    a user's (as that user, while they are logged in or lingering)."""

    SYSTEM = "system"
    USER = "user"

    @property
    def systemctl(self) -> list[str]:
        """``systemctl`` for this manager."""
        return ["systemctl"] if self is Scope.SYSTEM else ["systemctl", "--user"]


@dataclass(frozen=True)
class Layout:
    """The files of one installation, as the target system sees them."""

    scope: Scope
    root: Path
    unit: Path
    env_file: Path
    #: The sysusers.d entry that makes the system user (system scope only).
    sysusers: Path | None
    #: The daemon's default state directory (``$RUNNERSCALE_STATE_DIR`` in the unit).
    state_dir: Path
    #: The service's home directory (``~`` in the config).
    home: Path

    def on_disk(self, path: Path) -> Path:
        """Where ``path`` of the target system is written here."""
        return self.root / path.relative_to("/")

    @property
    def real_root(self) -> bool:
        """Whether the files go to this system itself (no ``--root``)."""
        return self.root == Path("/")


def layout_for(scope: Scope, root: Path, env: Mapping[str, str]) -> Layout:
    """The system scope's fixed places, or a user's (``env``: that user's environment, for
    ``$HOME``, ``$XDG_CONFIG_HOME`` and the default state directory)."""
    if scope is Scope.SYSTEM:
        state = Path("/var/lib") / SERVICE
        return Layout(
            scope=scope,
            root=root,
            unit=Path("/etc/systemd/system") / UNIT,
            env_file=Path("/etc") / SERVICE / f"{SERVICE}.env",
            sysusers=Path("/etc/sysusers.d") / f"{SERVICE}.conf",
            state_dir=state,
            home=state,
        )
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config").absolute()
    return Layout(
        scope=scope,
        root=root,
        unit=config_home / "systemd" / "user" / UNIT,
        env_file=config_home / SERVICE / f"{SERVICE}.env",
        sysusers=None,
        state_dir=default_state_dir(env),
        home=home.absolute(),
    )
