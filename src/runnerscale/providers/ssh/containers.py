"""Docker mode on one node: each runner is a container on the node's Docker engine, made by
the Docker backend's own provider, reached through the node's SSH connection.

Why it looks the way it does: the containers must be what the Docker backend makes (its
limits, its tmpfs work folder, its cache volumes, its labels to find them again, its crash
leftovers, its secret handling), so this is that provider, pointed at the node's engine: the
engine's UNIX socket on the node (``docker_socket``) is forwarded over the node's pooled
connection to a private local socket (:meth:`NodeConnection.forward_socket`, which keeps its
path across reconnects), and one :class:`~runnerscale.providers.docker.provider.DockerProvider`
per node talks to it. Every container also carries the node's name (:data:`LABEL_NODE`), and
each node's provider sees only containers with its own: two nodes may share one engine (a test
does), and neither lists, adopts or removes the other's. The forward is made on first use, so
a node that is away fails only what is asked of it. This module imports the Docker SDK: it is
loaded only for a pool in docker mode.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
from collections.abc import Iterator

from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.providers.docker.provider import LABEL_PREFIX, DockerProvider, DockerSettings
from runnerscale.providers.ssh.connection import NodeConnection

__all__ = ["LABEL_NODE", "NodeContainers"]

#: The node a container runs on (as the pool's ``hosts`` list writes it).
LABEL_NODE = LABEL_PREFIX + "node"


class NodeContainers:
    """The runners of one pool on one node, in docker mode (see the module docstring). Its
    instance ids are container names (runner names); the provider adds the node."""

    def __init__(
        self, node: str, connection: NodeConnection, settings: DockerSettings, socket: str
    ) -> None:
        self.node = node
        self.connection = connection
        #: The pool's container settings, for this node (its label), without the engine yet.
        self.settings = dataclasses.replace(
            settings, owner_labels={**settings.owner_labels, LABEL_NODE: node}
        )
        self.socket = socket
        self._provider: DockerProvider | None = None
        self._forwarding = asyncio.Lock()

    def __repr__(self) -> str:
        return f"NodeContainers(node={self.node!r}, pool={self.settings.pool!r})"

    async def engine(self) -> DockerProvider:
        """The Docker backend's provider on this node's engine (forwarding it on first use)."""
        if self._provider is None:
            async with self._forwarding:  # this node's only: other nodes never wait on it
                if self._provider is None:
                    local = await self.connection.forward_socket(self.socket)
                    self._provider = DockerProvider(
                        dataclasses.replace(self.settings, host=f"unix://{local}")
                    )
        return self._provider

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """The Docker provider's errors, saying which node's engine (its local socket's path
        means nothing to a reader)."""
        try:
            yield
        except ProviderError as error:
            raise ProviderError(f"node {self.node} (engine {self.socket} there): {error}") from None

    async def create(self, spec: InstanceSpec) -> Instance:
        engine = await self.engine()
        with self._named():
            return await engine.create(spec)

    async def delete(self, instance_id: str) -> None:
        engine = await self.engine()
        with self._named():
            await engine.delete(instance_id)

    async def get(self, instance_id: str) -> Instance | None:
        engine = await self.engine()
        with self._named():
            return await engine.get(instance_id)

    async def list(self) -> builtins.list[Instance]:
        engine = await self.engine()
        with self._named():
            return await engine.list()

    async def close(self) -> None:
        """Close the engine's client (the forward is the connection's, closed with it)."""
        if self._provider is not None:
            await self._provider.close()
