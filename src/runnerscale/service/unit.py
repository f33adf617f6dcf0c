"""The systemd unit that runs ``runnerscale run``, as text.

Why each setting (the unit carries the short form of these as comments):

* ``Type=exec``: the service is up once the daemon's program runs; a bad config or a port in
  use fails ``systemctl start`` instead of passing silently. ``Restart=on-failure`` brings it
  back after a crash or a lost database, not after ``systemctl stop``.
* ``KillMode=process``: stopping (or restarting, to upgrade) the daemon signals the daemon
  alone. The local backend's runners are processes in the unit's control group; they outlive
  a daemon that stops, finish their jobs, and the next daemon adopts them
  (``docs/backends/local.md``). With the default (``control-group``) every restart would kill
  the jobs. ``service uninstall`` ends them on purpose (``systemctl kill``).
* ``ExecReload`` sends SIGHUP, on which the daemon reloads its config (``systemctl reload``).
* ``EnvironmentFile`` holds the secrets (0600, root's); ``Environment`` only what is not
  secret: the state directory and ``PATH``.
* System scope: a dedicated user, ``NoNewPrivileges``, ``ProtectSystem=strict`` with the state
  directory (``StateDirectory``, made by systemd, 0700) and every other folder the daemon
  writes (``ReadWritePaths``) writable, ``PrivateTmp``, ``UMask=0077``. The local backend's
  runners are children of the daemon and share its sandbox.

``quote`` writes a word as systemd's command-line and path parsers read it back: ``%`` and
``$`` would otherwise be specifiers and variables.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from runnerscale.service.layout import SERVICE, Layout, Scope

__all__ = ["UnitSpec", "quote", "render", "setting"]

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@")


@dataclass(frozen=True)
class UnitSpec:
    """What the unit says, decided from the validated config (``plan.py``)."""

    layout: Layout
    #: ``ExecStart``'s words: the entry point, ``run -c CONFIG``.
    command: list[str]
    #: ``PATH`` for the daemon (its entry point's folder first: a local pool's
    #: ``runnerscale sim-runner`` must find the same program).
    path: str
    #: ``User=`` (system scope); None runs as the manager's user (root, or the user).
    user: str | None
    #: ``SupplementaryGroups=``: the Docker socket's group, for docker pools.
    groups: list[str] = field(default_factory=list)
    #: Folders the daemon writes besides its state directory (``ReadWritePaths=``).
    writable: list[Path] = field(default_factory=list)
    #: Units to start after when they are started too (``After=``): docker.service.
    after: list[str] = field(default_factory=list)


def quote(word: str, *, command: bool = False) -> str:
    """``word`` as one word of a unit's setting; ``command`` for a command line, where ``$``
    is a variable too."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if command:
        escaped = escaped.replace("$", "$$")
    if word and all(character in _PLAIN for character in word):
        return escaped
    return f'"{escaped}"'


def render(spec: UnitSpec) -> str:
    """The unit file's text."""
    layout = spec.layout
    system = layout.scope is Scope.SYSTEM
    lines = [
        "# Written by `runnerscale service install`; `runnerscale service uninstall` removes it.",
        "# Change it with a drop-in (systemctl edit), which an install again does not overwrite.",
        "[Unit]",
        "Description=runnerscale: autoscaler for GitHub Actions self-hosted runners",
    ]
    if system:  # a user's manager cannot wait for the system's units
        after = ["network-online.target", *spec.after]
        lines += [f"After={' '.join(after)}", "Wants=network-online.target"]
    lines += ["", "[Service]", "Type=exec"]
    if spec.user is not None:
        lines += [f"User={spec.user}", f"Group={spec.user}"]
    if spec.groups:
        lines.append(f"SupplementaryGroups={' '.join(spec.groups)}")
    lines += [
        f"EnvironmentFile={quote(str(layout.env_file))}",
        f"Environment={quote(f'RUNNERSCALE_STATE_DIR={layout.state_dir}')}",
        f"Environment={quote(f'PATH={spec.path}')}",
        f"ExecStart={' '.join(quote(word, command=True) for word in spec.command)}",
        "# SIGHUP: the daemon reads its config again.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5s",
        "# Stop the daemon only: local runners finish their jobs and the next start adopts them.",
        "KillMode=process",
        "UMask=0077",
        "NoNewPrivileges=yes",
    ]
    if system:
        lines += [
            f"StateDirectory={SERVICE}",
            "StateDirectoryMode=0700",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
        ]
        if spec.writable:
            lines.append(f"ReadWritePaths={' '.join(quote(str(p)) for p in spec.writable)}")
    wanted_by = "multi-user.target" if system else "default.target"
    lines += ["", "[Install]", f"WantedBy={wanted_by}", ""]
    return "\n".join(lines)


def setting(unit_text: str, key: str) -> list[str]:
    """The words of every ``key=`` line of a unit ``render`` wrote, unquoted (for uninstall to
    say which folders it keeps)."""
    words: list[str] = []
    for line in unit_text.splitlines():
        if line.startswith(f"{key}="):
            words += shlex.split(line.partition("=")[2].replace("%%", "%"))
    return words
