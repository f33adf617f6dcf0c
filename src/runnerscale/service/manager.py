"""Telling systemd: run its commands where it runs, else list them for the person to run.

Why: ``service install`` must work on a host that runs systemd (enable and start the service
at once), in a container or chroot without it, and under ``--root`` (a package's files): the
files are the same, only who runs ``systemctl`` differs. systemd runs when
``/run/systemd/system`` exists (``sd_booted``); under ``--root`` the commands are for the
system the files are meant for, and are only listed.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runnerscale.service.layout import Layout

__all__ = ["BOOTED_MARK", "Manager", "ManagerError"]

#: Exists when the system was booted with systemd and it runs now.
BOOTED_MARK = Path("/run/systemd/system")


class ManagerError(RuntimeError):
    """A command that must succeed failed; the message says which, and what it printed."""


@dataclass
class Manager:
    """Runs commands where it may, and collects the others in ``pending``."""

    #: Whether this is the system the files are for (no ``--root``).
    here: bool
    #: Whether systemd runs on it.
    booted: bool
    pending: list[list[str]] = field(default_factory=list)
    done: list[list[str]] = field(default_factory=list)

    @classmethod
    def for_layout(cls, layout: Layout) -> Manager:
        return cls(here=layout.real_root, booted=layout.real_root and BOOTED_MARK.is_dir())

    def run(self, command: list[str], *, check: bool = True, systemd: bool = True) -> None:
        """Run ``command`` now if it can run here (``systemd``: it needs systemd running),
        else keep it for :meth:`lines`. A failure raises, unless ``check`` is off."""
        if not (self.booted if systemd else self.here):
            self.pending.append(command)
            return
        try:
            done = subprocess.run(  # noqa: S603 - systemctl and systemd-sysusers, no shell
                command, capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            raise ManagerError(
                f"{command[0]} is not installed here: run {shlex.join(command)} where it is"
            ) from None
        if done.returncode != 0 and check:
            output = (done.stderr or done.stdout).strip()
            raise ManagerError(f"{shlex.join(command)} failed ({done.returncode}): {output}")
        self.done.append(command)

    def show(self, command: list[str]) -> int | None:
        """Run ``command`` with its output on ours and return its exit code, if systemd
        runs; None if it does not."""
        if not self.booted:
            return None
        return subprocess.run(command, check=False).returncode  # noqa: S603 - systemctl, no shell

    def lines(self) -> list[str]:
        """What was run, and what is left for the person to run."""
        lines = [f"ran: {shlex.join(command)}" for command in self.done]
        if self.pending:
            lines.append(
                "left to run where the service is, in this order (systemd does not run here, "
                "or --root was given):"
            )
            lines += [f"  {shlex.join(command)}" for command in self.pending]
        return lines
