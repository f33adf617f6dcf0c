"""``runnerscale hosts check``: whether each node of the ssh pools can serve runners, and why
not.

Why judged apart from probed: what makes a node unusable (no engine, a runner that is not
there, a clock far off, a disk nearly full, an architecture the pool's labels contradict) is a
rule over facts, tested as a plain function; :mod:`runnerscale.hosts.probe` only asks. Every
node is asked at once, each over its own connection, so one slow or dead node delays only its
own line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runnerscale.hostlabels import HostLabelError, expand_labels
from runnerscale.hosts.fleet import FleetNode
from runnerscale.hosts.probe import NodeFacts, probe
from runnerscale.model import AUTO_LABEL
from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.connection import NodeConnection

__all__ = ["MAX_CLOCK_SKEW", "MIN_FREE_DISK", "NodeReport", "check_fleet", "judge"]

#: A node's clock may be this far off (seconds): beyond, the runner's tokens and TLS fail.
MAX_CLOCK_SKEW = 60.0
#: Below this much free disk where runners go, a node cannot take a job (bytes).
MIN_FREE_DISK = 2 * 1024**3


@dataclass(frozen=True)
class NodeReport:
    """One node's verdict: unusable when it has problems; notes are worth knowing."""

    node: FleetNode
    facts: NodeFacts | None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: The labels its runners get: the pool's (``auto`` expanded) and the node's own.
    labels: tuple[str, ...] = ()
    #: Runners it may hold: its configured slots, else its CPU count (None: unknown).
    slots: int | None = None

    @property
    def usable(self) -> bool:
        return not self.problems


def judge(node: FleetNode, facts: NodeFacts | None, failure: str = "") -> NodeReport:
    """The verdict on a node from what it told (``facts``), or from why it could not be asked
    (``failure``: unreachable, host key refused)."""
    if facts is None:
        return NodeReport(node, None, (failure or "the node could not be asked",))
    settings = node.settings
    problems: list[str] = []
    notes: list[str] = []
    user = settings.user
    if settings.mode == "docker":
        socket = settings.docker_socket
        if facts.socket == "missing":
            problems.append(
                f"no Docker engine socket at {socket}: install Docker (apt-get install docker.io) "
                "or set docker_socket"
            )
        elif facts.socket == "denied":
            problems.append(
                f"{user} may not use {socket}: add it to the docker group (runnerscale hosts "
                "bootstrap does)"
            )
        elif facts.engine is None:
            problems.append(
                f"the engine at {socket} did not answer: {facts.engine_error or 'no reply'}"
            )
        elif not facts.engine.image_present:
            message = (
                f"the image {settings.image} is not on the node: runnerscale hosts bootstrap "
                "builds it there"
            )
            if settings.container.pull == "never":
                problems.append(message + " (pull: never)")
            else:
                notes.append(message + " (or the engine pulls it at the first runner)")
    elif not facts.runner_present:
        program = (settings.runner_command or ("?",))[0]
        problems.append(
            f"the runner command {program} is not on the node or not executable by {user}: "
            "unpack the runner there (runnerscale hosts bootstrap --runner-tarball PATH)"
        )
    host = facts.host_facts(node)
    labels: tuple[str, ...] = ()
    try:
        labels = expand_labels(node.pool_labels, host, pool=node.pool)
    except HostLabelError as error:
        problems.append(f"{error} (on this node)")
    if host.arch is None and any(label.strip().lower() == AUTO_LABEL for label in node.pool_labels):
        problems.append(
            f"its architecture ({facts.machine or 'unknown'}) has no GitHub label: write the "
            "pool's labels out instead of auto"
        )
    labels = labels + tuple(label for label in node.host.labels if label not in labels)
    if facts.disk_free is not None and facts.disk_free < MIN_FREE_DISK:
        problems.append(
            f"only {_size(facts.disk_free)} free in {facts.disk_path}: a runner needs at least "
            f"{_size(MIN_FREE_DISK)}; free some space"
        )
    if facts.clock_skew is not None and abs(facts.clock_skew) > MAX_CLOCK_SKEW:
        problems.append(
            f"its clock is {facts.clock_skew:+.0f}s off this host's: GitHub refuses a runner "
            "whose clock is wrong; run a time sync (systemd-timesyncd or chrony)"
        )
    slots = node.host.slots if node.host.slots is not None else facts.cpus
    if node.host.slots is not None and facts.cpus is not None and node.host.slots > facts.cpus:
        notes.append(f"{node.host.slots} slots on {facts.cpus} CPUs: runners will share CPUs")
    return NodeReport(node, facts, tuple(problems), tuple(notes), labels, slots)


async def check_node(
    node: FleetNode, connect: Callable[[FleetNode], NodeConnection] | None = None
) -> NodeReport:
    """Ask one node and judge it (never raises for the node's own failures)."""
    connection = (connect or _connect)(node)
    try:
        facts = await probe(node, connection)
    except ProviderError as error:  # unreachable, host key refused, a command that failed
        return judge(node, None, str(error).removeprefix(f"node {node.name}: "))
    finally:
        await connection.close()
    return judge(node, facts)


async def check_fleet(
    nodes: Sequence[FleetNode], connect: Callable[[FleetNode], NodeConnection] | None = None
) -> list[NodeReport]:
    """Every node asked at once; the reports in the nodes' order."""
    return list(await asyncio.gather(*(check_node(node, connect) for node in nodes)))


def _connect(node: FleetNode) -> NodeConnection:
    return NodeConnection(node.address, node.options())


def _size(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"
