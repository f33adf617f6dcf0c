"""The control API of a daemon under test, reached as ``runnerscale status`` reaches it: over
the daemon's unix socket by default, or its TCP listener with the bearer token
(:mod:`runnerscale.controlclient`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from runnerscale.config import load_config
from runnerscale.controlclient import async_client
from runnerscale.daemon import Daemon
from tests.e2e.harness import ENV


def control_client(daemon: Daemon | Path, **options: Any) -> httpx.AsyncClient:
    """A client of the control API of ``daemon``: one in this process, or the one run (as
    :func:`tests.e2e.harness.start_daemon_process` runs it) with the config at that path."""
    if isinstance(daemon, Daemon):
        return async_client(daemon.config, **options)
    config = load_config(daemon, env={**ENV, "HOME": str(daemon.parent)})
    return async_client(config, **options)
