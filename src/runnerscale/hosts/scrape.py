"""The Prometheus scrape configuration for a fleet's node exporters (``hosts bootstrap
--monitoring``): one target per node, at its host and the exporter's port, labelled with its
pool, its name and its own labels.

Why printed rather than installed: the monitoring host is the user's, and its configuration
has other jobs in it; a ``scrape_configs`` block (valid for ``promtool check config`` on its
own) is what they paste. Targets are reached at the node's address: across the internet that
means a VPN between the nodes and the monitoring host (docs/backends/ssh.md), never port 9100
open to the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from runnerscale.hosts.fleet import FleetNode

__all__ = ["EXPORTER_PORT", "JOB_NAME", "scrape_config"]

#: Where Debian's prometheus-node-exporter listens.
EXPORTER_PORT = 9100
JOB_NAME = "runnerscale-nodes"


def _target(node: FleetNode) -> str:
    host = node.address.host
    return f"[{host}]:{EXPORTER_PORT}" if ":" in host else f"{host}:{EXPORTER_PORT}"


def scrape_config(nodes: Sequence[FleetNode]) -> str:
    """The YAML text of a ``scrape_configs`` list with one job for ``nodes``; a host in more
    than one pool is one target (its pools joined by commas)."""
    targets: dict[str, dict[str, Any]] = {}
    for node in nodes:
        target = _target(node)
        entry = targets.setdefault(
            target, {"targets": [target], "labels": {"pool": node.pool, "node": node.name}}
        )
        labels: dict[str, str] = entry["labels"]
        if node.pool not in labels["pool"].split(","):
            labels["pool"] += f",{node.pool}"
        earlier = set(labels.get("node_labels", "").split(","))
        own = sorted((earlier | set(node.host.labels)) - {""})
        if own:
            labels["node_labels"] = ",".join(own)
    document = {
        "scrape_configs": [
            {"job_name": JOB_NAME, "static_configs": list(targets.values())},
        ]
    }
    header = (
        "# Prometheus: the node exporters of runnerscale's ssh pools (runnerscale hosts "
        "bootstrap --monitoring).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
