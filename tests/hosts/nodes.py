"""Nodes of ssh pools for the hosts tests, made from an ``ssh:`` block without a whole file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runnerscale.hosts.fleet import FleetNode
from runnerscale.providers.ssh.settings import SshConfig, SshHost


def fleet_node(
    *,
    pool: str = "vps",
    labels: tuple[str, ...] = ("self-hosted", "linux", "auto"),
    host: dict[str, Any] | None = None,
    **settings: Any,
) -> FleetNode:
    """A node of a pool whose ``ssh:`` block is ``settings`` (defaults: docker mode, node1)."""
    block: dict[str, Any] = {
        "user": "runner",
        "known_hosts": "/etc/runnerscale/known_hosts",
        "image": "runnerscale-runner:latest",
        "hosts": [host or {"address": "node1"}],
        **settings,
    }
    config = SshConfig.model_validate(block, context={"base_dir": Path("/")})
    entry: SshHost = config.hosts[0]
    return FleetNode(pool, labels, config, entry)
