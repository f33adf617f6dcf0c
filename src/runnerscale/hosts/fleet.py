"""Which nodes a configuration's ssh pools name, and how to log in to each.

Why apart: ``check``, ``bootstrap`` and the scrape configuration all walk the same nodes,
narrowed by ``--pool`` and ``--host`` with the same errors when those name nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runnerscale.providers.ssh.connection import NodeAddress, SshOptions
from runnerscale.providers.ssh.settings import SshConfig, SshHost

if TYPE_CHECKING:
    from runnerscale.config.schema import PoolsConfig

__all__ = ["FleetError", "FleetNode", "fleet_nodes"]


class FleetError(Exception):
    """The configuration has no node that the command was asked about (says what it has)."""


@dataclass(frozen=True)
class FleetNode:
    """One node of one ssh pool."""

    pool: str
    #: The pool's labels as written (``auto`` included).
    pool_labels: tuple[str, ...]
    settings: SshConfig
    host: SshHost

    @property
    def address(self) -> NodeAddress:
        return self.host.node

    @property
    def name(self) -> str:
        """The node as the pool's ``hosts`` list writes it."""
        return str(self.address)

    def options(self, user: str | None = None) -> SshOptions:
        """How to log in: as the pool's user, or as ``user`` (bootstrap's admin) with the same
        key and known_hosts."""
        options = SshOptions.of(self.settings)
        return options if user is None else replace(options, user=user)


def fleet_nodes(
    config: PoolsConfig, *, pool: str | None = None, hosts: Sequence[str] = ()
) -> list[FleetNode]:
    """The nodes of the file's ssh pools (of ``pool`` only, when given; of the addresses in
    ``hosts`` only, when given), in the order written. Raises :class:`FleetError`."""
    ssh_pools = [p for p in config.pools if isinstance(p.settings, SshConfig)]
    if not ssh_pools:
        raise FleetError(
            "the configuration has no ssh pool (provider: ssh); the hosts commands work on "
            "the nodes of ssh pools"
        )
    if pool is not None:
        chosen = [p for p in ssh_pools if p.name == pool]
        if not chosen:
            names = ", ".join(p.name for p in ssh_pools)
            raise FleetError(f"no ssh pool is named {pool!r}; the ssh pools: {names}")
        ssh_pools = chosen
    nodes = [
        FleetNode(p.name, tuple(p.labels), p.settings, host)
        for p in ssh_pools
        if isinstance(p.settings, SshConfig)
        for host in p.settings.hosts
    ]
    if hosts:
        wanted = {_parse(text): text for text in hosts}
        nodes = [node for node in nodes if node.address in wanted]
        missing = [
            text
            for address, text in wanted.items()
            if address not in {node.address for node in nodes}
        ]
        if missing:
            raise FleetError(
                f"no ssh pool{'' if pool is None else f' {pool!r}'} has the node "
                f"{', '.join(missing)}; add it to the pool's hosts first"
            )
    return nodes


def _parse(text: str) -> NodeAddress:
    try:
        return NodeAddress.parse(text)
    except ValueError as error:
        raise FleetError(f"--host {text!r} {error}") from None
