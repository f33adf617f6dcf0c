"""The SSH backend's provider: the nodes of a pool, reached over SSH, as one elastic pool.

Why it looks the way it does:

*One connection and one health watch per node, nothing shared between nodes.* Each node
(:mod:`.nodes`) has its pooled connection and a task that checks it every ``health_interval``
(started on first use, stopped by :meth:`SshProvider.close`). What is done on a node waits only
on that node: there is no lock over the provider, so a slow node (seconds per command) delays
only the creations placed on it, and a silent one is given up on by whatever waits for it
(a listing, a creation, a removal) as soon as its health check marks it down.

*Placement is decided apart* (:mod:`.placement`, pure): a runner goes to an up node of its
label group by the pool's policy, counting the instances last seen on each node and the
creations in flight there (:class:`~runnerscale.protocols.PlacingProvider`'s contract). The
choice and the count of the creation it starts happen without a pause in between, so
concurrent creations spread too. :meth:`SshProvider.placement` reports the nodes' states, cheap
and without I/O, for the scaler and the status.

*Two modes, one per pool:* process mode (:mod:`.process`: the configured command in a fresh
folder, as the SSH user, in a session of its own) and docker mode (:mod:`.containers`: the
Docker backend's provider on the node's engine, reached through the connection). Either works
on one node with the node's own ids (runner names); this module makes them unique across the
pool (``<node>/<runner name>``) and names the node in every instance's detail.

*A node that goes away takes nothing with it.* ``list`` and ``get`` report a down node's
instances as they were last seen (running, the detail saying since when the node is down), so
the controller removes nothing while it is away and does not count its runners twice;
``delete`` of such an instance fails (the controller retries later). When the node answers
again its real state is listed and reconciled. What each node holds is also kept in a small
file under the daemon's state directory (:mod:`.memory`, written only when it changed), so a
restarted daemon reports the runners of a node that does not answer the same way (their state
unknown) instead of taking them as vanished: the janitor then neither finishes a busy runner
there nor records its job as lost.

*The host's architecture and accelerators* (for ``auto`` labels) are asked of every node that
answers, over connections of its own (:func:`node_traces`: the daemon asks from a thread that
may not run the provider's event loop), and judged as ``hosts check`` judges them
(:mod:`.facts`); the nodes of a pool must agree.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runnerscale.model import Instance, InstanceSpec, labels_beyond, normalize_labels
from runnerscale.protocols import Placement, Provider, ProviderError
from runnerscale.providers.registry import BackendContext
from runnerscale.providers.ssh.connection import (
    HostKeyRefused,
    NodeAddress,
    NodeConnection,
    NodeUnreachable,
    SshOptions,
)
from runnerscale.providers.ssh.facts import TRACES_SCRIPT, NodeTraces
from runnerscale.providers.ssh.memory import NodeMemory
from runnerscale.providers.ssh.nodes import Node, split_instance_id, stop_watching
from runnerscale.providers.ssh.placement import choose_node, label_group
from runnerscale.providers.ssh.process import ProcessRunners, ProcessSettings
from runnerscale.providers.ssh.settings import SshConfig

__all__ = ["SshProvider", "node_traces"]

log = logging.getLogger("runnerscale.providers.ssh")

_T = TypeVar("_T")
#: Controller ids and pool names are folder names on the nodes (process mode).
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: What a node's failure looks like: it did not answer, or it is not the node we know.
_NODE_FAILURES = (NodeUnreachable, HostKeyRefused)


class _NodeDownError(Exception):
    """The node was marked down while something waited for it."""


class SshProvider:
    """Runs a pool's runners on its nodes over SSH. See the module docstring for the design."""

    def __init__(self, settings: SshConfig, context: BackendContext) -> None:
        pool = context.pool
        for what, value in (("pool name", pool), ("controller id", context.controller_id)):
            if not _SAFE_NAME.fullmatch(value):
                raise ProviderError(
                    f"pool {pool!r}: the ssh backend names folders and containers on the nodes "
                    f"after the {what} {value!r}: use letters, digits, '.', '_' and '-'"
                )
        self.settings = settings
        self.context = context
        options = SshOptions.of(settings)
        self._nodes = tuple(
            Node(
                str(host.node),
                NodeConnection(host.node, options),
                pool=pool,
                slots=host.slots,
                # (a label the pool has already sets the node apart from none)
                labels=labels_beyond(host.labels, context.labels),
            )
            for host in settings.hosts
        )
        self._by_name = {node.name: node for node in self._nodes}
        self._memory = NodeMemory(context.state_dir, context.controller_id, pool)
        for name, recalled in self._memory.load().items():
            if name in self._by_name:
                self._by_name[name].recall(recalled.instances, recalled.recorded_at)
        make = self._runners_factory()
        self._runners: dict[str, Provider] = {
            node.name: make(node.name, node.connection) for node in self._nodes
        }
        self._watchers: builtins.list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        nodes = ", ".join(node.name for node in self._nodes)
        mode = self.settings.mode
        return f"SshProvider(pool={self.context.pool!r}, mode={mode}, nodes=[{nodes}])"

    def _runners_factory(self) -> Callable[[str, NodeConnection], Provider]:
        """How runners are run on one node: the pool's mode."""
        settings, context = self.settings, self.context
        if settings.mode == "process":
            command = settings.runner_command
            assert command is not None  # process mode always has one (its default)
            process = ProcessSettings(
                pool=context.pool,
                controller_id=context.controller_id,
                work_dir=settings.work_dir,
                command=command,
                env=dict(settings.env),
                stop_grace=settings.stop_grace,
                command_timeout=settings.command_timeout,
            )
            return lambda node, connection: ProcessRunners(node, connection, process)
        try:
            from runnerscale.providers.docker.provider import (  # noqa: PLC0415 - an extra
                DockerSettings,
            )
            from runnerscale.providers.ssh.containers import (  # noqa: PLC0415 - the same
                NodeContainers,
            )
        except ImportError:
            raise ProviderError(
                f"pool {context.pool}: the ssh backend's docker mode needs the docker package: "
                "pip install 'runnerscale[ssh,docker]'"
            ) from None
        assert settings.image is not None  # the settings require it in docker mode
        command = settings.runner_command
        template = DockerSettings.from_options(
            settings.container,
            pool=context.pool,
            image=settings.image,
            command=command,
            env=dict(settings.env),
            stop_grace=settings.stop_grace,
            controller_id=context.controller_id,
        )
        socket = settings.docker_socket
        return lambda node, connection: NodeContainers(node, connection, template, socket)

    # -- health

    def _watch(self) -> None:
        """Start every node's health watch, once, on first use."""
        if self._watchers:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # asked outside an event loop (a status read): nothing to start there
        interval = self.settings.health_interval
        timeout = 3 * self.settings.connect_timeout
        self._watchers = [
            asyncio.create_task(
                node.watch(interval, timeout), name=f"ssh-health {self.context.pool} {node.name}"
            )
            for node in self._nodes
        ]

    async def _first_checks(self, nodes: builtins.list[Node]) -> None:
        """Right after start: wait until one of ``nodes`` is up, or each has been checked."""
        waiting = {
            asyncio.ensure_future(node.checked.wait())
            for node in nodes
            if not node.checked.is_set()
        }
        try:
            while waiting and not any(node.up for node in nodes):
                _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiting:
                waiter.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _on(self, node: Node, work: Awaitable[_T]) -> _T:
        """``work`` on ``node``: a node that did not answer is marked down (and the error
        names the pool)."""
        try:
            return await work
        except _NODE_FAILURES as error:
            node.mark_down(str(error))
            raise ProviderError(f"pool {self.context.pool!r}: {error}") from None
        except ProviderError as error:
            if not node.connection.connected:  # (the engine's socket went with the connection)
                node.mark_down(str(error))
            raise

    async def _unless_down(self, node: Node, work: Awaitable[_T]) -> _T:
        """``work`` on ``node``, given up as soon as the node is marked down (raising
        :class:`_NodeDownError`): a node that stopped answering holds nobody up for longer than
        its health check takes to notice."""
        task = asyncio.ensure_future(self._on(node, work))
        down = asyncio.ensure_future(node.down.wait())
        try:
            await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (task, down):
                future.cancel()
            await asyncio.gather(task, down, return_exceptions=True)
        if not task.cancelled() and task.exception() is None:
            return task.result()
        if node.down.is_set():
            raise _NodeDownError(node.name)
        error = task.exception()
        assert error is not None  # (only a node going down cancels the work)
        raise error

    def _remember(self) -> None:
        """Keep what the nodes hold now in the memory file (written only when it changed)."""
        self._memory.update({node.name: node.instances.values() for node in self._nodes})

    def _node_of(self, instance_id: str) -> tuple[Node, str] | None:
        split = split_instance_id(instance_id)
        if split is None or split[0] not in self._by_name:
            return None
        return self._by_name[split[0]], split[1]

    # -- the PlacingProvider protocol

    def placement(self) -> Placement:
        self._watch()
        return Placement(
            nodes=tuple(node.state() for node in self._nodes),
            unreachable=frozenset(
                name for node in self._nodes if not node.up for name in node.instances
            ),
        )

    async def _place(self, spec: InstanceSpec) -> Node:
        """The node for ``spec`` (see :mod:`.placement`), or why there is none."""
        pool = self.context.pool
        labels = sorted(normalize_labels(spec.labels))
        group = label_group([node.state() for node in self._nodes], labels)
        if not group:
            own = sorted({label for node in self._nodes for label in node.extra_labels})
            raise ProviderError(
                f"pool {pool!r}: no node serves the labels {labels}: a runner goes only to a "
                f"node whose own labels ({', '.join(own) or 'none'}) are all among its labels"
            )
        members = [self._by_name[state.name] for state in group]
        await self._first_checks(members)
        chosen = choose_node(
            [node.state() for node in self._nodes], labels, self.settings.placement
        )
        if chosen is None:
            why = "; ".join(node.down_since() for node in members)
            raise ProviderError(f"pool {pool!r}: no node for the labels {labels} is up: {why}")
        return self._by_name[chosen.name]

    # -- the Provider protocol

    async def create(self, spec: InstanceSpec) -> Instance:
        self._watch()
        node = await self._place(spec)
        name = spec.runner_name
        node.creating.add(name)  # counted by the next placement at once: no await before
        try:
            instance = await self._unless_down(node, self._runners[node.name].create(spec))
        except _NodeDownError:
            raise ProviderError(
                f"pool {spec.pool!r}: runner {name} was being created when "
                f"{node.down_since()}; what it left there is removed once the node is back"
            ) from None
        finally:
            node.creating.discard(name)
        node.seen_one(name, instance)
        self._remember()
        log.info("pool %s: runner %s placed on node %s", spec.pool, name, node.name)
        return node.outward(instance)

    async def delete(self, instance_id: str) -> None:
        self._watch()
        found = self._node_of(instance_id)
        if found is None:
            return  # not an instance of this pool's nodes: nothing to delete
        node, name = found
        if not node.up and node.checked.is_set():
            raise ProviderError(
                f"pool {self.context.pool!r}: cannot remove runner {name} now: "
                f"{node.down_since()}; will retry"
            )
        try:
            await self._unless_down(node, self._runners[node.name].delete(name))
        except _NodeDownError:
            raise ProviderError(
                f"pool {self.context.pool!r}: runner {name} was being removed when "
                f"{node.down_since()}; will retry"
            ) from None
        node.seen_one(name, None)
        self._remember()

    async def get(self, instance_id: str) -> Instance | None:
        self._watch()
        found = self._node_of(instance_id)
        if found is None:
            return None
        node, name = found
        with contextlib.suppress(_NodeDownError):
            if node.up or not node.checked.is_set():
                instance = await self._unless_down(node, self._runners[node.name].get(name))
                node.seen_one(name, instance)
                self._remember()
                return None if instance is None else node.outward(instance)
        return next((i for i in node.remembered() if i.runner_name == name), None)

    async def list(self) -> builtins.list[Instance]:
        self._watch()
        listed = await asyncio.gather(
            *(self._list_node(node) for node in self._nodes), return_exceptions=True
        )
        self._remember()
        for found in listed:
            if isinstance(found, BaseException):
                raise found  # (once every node's listing has ended)
        return [instance for found in listed if isinstance(found, list) for instance in found]

    async def _list_node(self, node: Node) -> builtins.list[Instance]:
        with contextlib.suppress(_NodeDownError):
            if node.up or not node.checked.is_set():
                since = node.generation
                found = await self._unless_down(node, self._runners[node.name].list())
                node.seen(found, since)
                return [node.outward(instance) for instance in found]
        return node.remembered()

    async def close(self) -> None:
        """Stop the health watches, close the clients and connections. Runners keep running:
        the next daemon adopts them."""
        watchers, self._watchers = self._watchers, []
        await stop_watching(watchers)
        for runners in self._runners.values():
            await runners.close()
        for node in self._nodes:
            await node.connection.close()


# -- the nodes' architecture and accelerators


async def _traces(settings: SshConfig) -> tuple[dict[str, NodeTraces], dict[str, str]]:
    options = SshOptions.of(settings)
    timeout = 3 * settings.connect_timeout

    async def ask(address: NodeAddress) -> NodeTraces:
        connection = NodeConnection(address, options)
        try:
            async with asyncio.timeout(timeout):
                done = await connection.run(["sh", "-c", TRACES_SCRIPT])
            return NodeTraces.parse(done.stdout)
        finally:
            await connection.close()

    addresses = settings.nodes
    answers = await asyncio.gather(*(ask(address) for address in addresses), return_exceptions=True)
    traces: dict[str, NodeTraces] = {}
    failures: dict[str, str] = {}
    for address, answer in zip(addresses, answers, strict=True):
        if isinstance(answer, NodeTraces) and answer.machine:
            traces[str(address)] = answer
        elif isinstance(answer, TimeoutError):
            failures[str(address)] = f"did not answer within {timeout:g}s"
        elif isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer
        else:
            failures[str(address)] = str(answer) or "no answer"
    return traces, failures


def node_traces(settings: SshConfig) -> tuple[dict[str, NodeTraces], dict[str, str]]:
    """What each node says of its architecture and accelerators (:mod:`.facts`), asked over
    connections of its own in a thread of its own (blocking: the daemon asks at start, from
    its event loop's thread or a worker's); and why the others did not answer. Both by node,
    as configured."""
    result: builtins.list[tuple[dict[str, NodeTraces], dict[str, str]]] = []
    errors: builtins.list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(_traces(settings)))
        except BaseException as error:  # handed to the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run, name="ssh-host-facts", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
