"""Running ``runnerscale hosts ...`` as a user does, in a process of its own that sees an ssh
backend (the real one when installed, else the ssh block registered by the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runnerscale.providers import registry
from tests.plugins.entry_points import install, python_path
from tests.sshd import SshServer


def pool_file(path: Path, server: SshServer, *, user: str, ssh: str, hosts: str = "") -> Path:
    """A configuration with one ssh pool ``nodes`` on ``server`` (``ssh``: more of the block,
    indented by six; ``hosts``: more entries), the GitHub token left as a ${VAR}: the hosts
    commands do not read it."""
    path.write_text(
        f"""\
github:
  token: ${{GITHUB_TOKEN}}
targets:
  - repo: acme/app
pools:
  - name: nodes
    labels: [self-hosted, linux, auto]
    provider: ssh
    max_runners: 4
    ssh:
      user: {user}
      key_file: {server.key_file}
      known_hosts: {server.known_hosts}
{ssh}      hosts:
        - address: {server.address}
          slots: 2
{hosts}"""
    )
    return path


def runnerscale(site: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``runnerscale ARGUMENTS`` (``site``: where the tests' ssh backend may be installed)."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GITHUB_TOKEN", None)
    if "ssh" not in registry.installed():
        install(site, {"ssh": "tests.providers.ssh.settings_backend:BACKEND"})
        env["PYTHONPATH"] = python_path(site)
    command = [sys.executable, "-m", "runnerscale", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
