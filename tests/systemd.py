"""Debian's ``systemd-analyze verify`` on a unit that ``runnerscale service install`` wrote
(``--root``): it loads the unit as the manager would (an unknown key, a bad value, a command
that is not executable), but never resolves ``User=`` nor reads ``EnvironmentFile=``. Some
problems (an unknown key) it only prints, and still exits 0: :func:`verify` requires its output
to be empty too. ``--root`` is of no use for it (it wants a whole system tree:
``sysinit.target``); the unit is given by its path."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def verify(unit: Path, *options: str, env: dict[str, str] | None = None) -> None:
    """``systemd-analyze OPTIONS verify UNIT`` passes, saying nothing."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: bash scripts/install-system-deps"
    done = subprocess.run(
        [analyze, *options, "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
