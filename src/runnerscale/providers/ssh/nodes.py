"""One node of an SSH pool as its provider knows it: reachable or not (and why, and since
when), its slots, the instances last seen on it, the creations in flight there.

Why it looks the way it does:

*Health is watched per node, apart from the work.* Each node has its own task that checks it
every few seconds (a round trip on its pooled connection, which reconnects after a loss) and
learns its slots from ``nproc`` when the pool does not give them. A node that fails a check, or
whose connection is lost during an operation, is marked down with the reason; the next check
that succeeds marks it up again. A transition is logged once: a warning with the reason when
it goes down, an info line when it is back. Nothing here is shared between nodes, so a slow or
silent node delays only what is done on it.

*A down node's instances are remembered, not forgotten.* The provider lists each node's
instances when it can and keeps the last answer. While a node is down those instances are still
reported (as running, with a detail saying the node is down since when), so the controller
neither counts their runners as gone nor removes them: when the node comes back, its real state
is listed again and reconciled. Right after a restart, a node starts with what the provider's
memory file recorded of it (:mod:`.memory`, :meth:`Node.recall`): while it does not answer,
those instances are reported the same way, their detail saying that their state is unknown
since the restart; its first full listing replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from runnerscale.model import Instance, normalize_labels
from runnerscale.protocols import NodeState, ProviderError
from runnerscale.providers.ssh.connection import NodeConnection

__all__ = ["NOT_CHECKED", "Node", "instance_id", "split_instance_id", "stop_watching"]

log = logging.getLogger("runnerscale.providers.ssh")

#: The reason a node is not up before its first check has answered.
NOT_CHECKED = "not checked yet"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def instance_id(node: str, name: str) -> str:
    """An instance's id across the pool's nodes: ``<node>/<runner name>`` (neither a node's
    address nor a runner's name holds a ``/``)."""
    return f"{node}/{name}"


def split_instance_id(text: str) -> tuple[str, str] | None:
    """The node and the node's own id of an instance id; None when it is not one."""
    node, slash, name = text.rpartition("/")
    if not slash or not node or not name:
        return None
    return node, name


class Node:
    """One node: its connection, its health, its slots and what runs there (see the module
    docstring)."""

    def __init__(
        self,
        name: str,
        connection: NodeConnection,
        *,
        pool: str,
        slots: int | None,
        labels: frozenset[str] | list[str] | tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: The node's address as configured ("10.0.0.12:2222").
        self.name = name
        self.connection = connection
        self.pool = pool
        self.configured_slots = slots
        #: Its own labels beyond the pool's (the provider leaves out those the pool has).
        self.extra_labels = normalize_labels(labels)
        self._clock = clock
        self.up = False
        self.reason = NOT_CHECKED
        self.since: float | None = None
        self.learned_slots: int | None = None
        #: The instances last seen on it, by runner name (its own instance ids).
        self.instances: dict[str, Instance] = {}
        #: When the instances it holds were recorded before a restart (None: seen since).
        self.recalled_at: float | None = None
        #: Counts what this provider learned of single instances (created, got, deleted), so
        #: that a listing that began before does not undo it (:meth:`seen`).
        self.generation = 0
        self._changed: dict[str, int] = {}
        self._applied = -1
        #: Runner names being created on it right now.
        self.creating: set[str] = set()
        #: Set once its first check has answered (up or down).
        self.checked = asyncio.Event()
        #: Set while it is down: what waits on it gives up at once.
        self.down = asyncio.Event()

    def __repr__(self) -> str:
        return f"Node({self.name!r}, up={self.up})"

    @property
    def slots(self) -> int:
        """Runners it may hold: as configured, else its CPU count once learned (0 before)."""
        if self.configured_slots is not None:
            return self.configured_slots
        return self.learned_slots or 0

    @property
    def runners(self) -> int:
        """Instances of the pool on it as far as known, creations in flight included."""
        return len(self.instances.keys() | self.creating)

    def state(self) -> NodeState:
        return NodeState(
            name=self.name,
            up=self.up,
            slots=self.slots,
            extra_labels=self.extra_labels,
            reason="" if self.up else self.reason,
            since=self.since,
            runners=self.runners,
        )

    # -- health

    def mark_down(self, reason: str) -> None:
        """It did not answer (or refused us): its runners stay remembered, its slots stop
        counting. Logged once per transition."""
        reason = reason.strip().removeprefix(f"node {self.name}: ") or "no reason given"
        if self.up or self.reason == NOT_CHECKED:
            self.since = self._clock()
            log.warning("pool %s: node %s is down: %s", self.pool, self.name, reason)
        self.up = False
        self.reason = reason
        self.down.set()
        self.checked.set()

    def mark_up(self) -> None:
        if not self.up:
            was_down = self.reason != NOT_CHECKED
            self.since = self._clock()
            log.info(
                "pool %s: node %s is %s (%d slots)",
                self.pool,
                self.name,
                "back up" if was_down else "up",
                self.slots,
            )
        self.up = True
        self.reason = ""
        self.down.clear()
        self.checked.set()

    async def check(self, limit: float) -> None:
        """One health check, within ``limit`` seconds: a round trip, and the CPU count when
        the slots are not given."""
        try:
            async with asyncio.timeout(limit):
                await self.connection.check()
                if self.configured_slots is None and self.learned_slots is None:
                    self.learned_slots = await self._cpu_count()
        except TimeoutError:
            self.mark_down(f"did not answer within {limit:g}s")
        except ProviderError as error:
            self.mark_down(str(error))
        except Exception as error:  # the library's, or ours: the node is not usable now
            self.mark_down(f"{type(error).__name__}: {error}")
        else:
            self.mark_up()

    async def _cpu_count(self) -> int:
        done = await self.connection.run(["nproc"], check=False)
        text = done.stdout.strip()
        if done.exit_status != 0 or not text.isdigit() or int(text) < 1:
            raise ProviderError(
                f"node {self.name}: cannot learn its CPU count (nproc answered "
                f"{(text or done.stderr.strip())[:80]!r}); give the node's slots in the pool's "
                "hosts list"
            )
        return int(text)

    async def watch(self, interval: float, limit: float) -> None:
        """Check it every ``interval`` seconds, for good (cancelled by the provider's close)."""
        while True:
            await self.check(limit)
            await asyncio.sleep(interval)

    # -- what is known to run there

    def outward(self, instance: Instance) -> Instance:
        """An instance of this node as the provider reports it: its id and its detail name
        the node."""
        return dataclasses.replace(
            instance,
            id=instance_id(self.name, instance.id),
            detail=f"node {self.name}: {instance.detail}",
        )

    def remembered(self) -> list[Instance]:
        """The instances last seen on it, as reported while it is down: running (nothing is
        removed while it is away), with the reason in their detail."""
        detail = self.down_since()
        if self.recalled_at is not None:
            detail += (
                f" (its runners as recorded at {_when(self.recalled_at)}, before a restart: "
                "their state is unknown)"
            )
        return [
            dataclasses.replace(
                instance,
                id=instance_id(self.name, instance.id),
                running=True,
                exit_code=None,
                incomplete=False,
                detail=detail,
            )
            for instance in self.instances.values()
        ]

    def down_since(self) -> str:
        """Why it is down and since when, for messages."""
        when = "" if self.since is None else f" since {_when(self.since)}"
        return f"node {self.name} is down{when}: {self.reason}"

    def seen(self, instances: list[Instance], since: int) -> None:
        """A full listing answered, begun at generation ``since``: it replaces what was
        remembered, except what was learned of single instances while it ran (a creation that
        finished, a removal), and unless a listing begun later was applied already."""
        if since < self._applied:
            return
        listed = {instance.runner_name: instance for instance in instances}
        for name, when in self._changed.items():
            if when > since:
                if name in self.instances:
                    listed[name] = self.instances[name]
                else:
                    listed.pop(name, None)
        self.instances = listed
        self.recalled_at = None
        self._applied = since
        self._changed = {name: when for name, when in self._changed.items() if when > since}

    def recall(self, instances: Iterable[Instance], recorded_at: float) -> None:
        """Right after a restart: what the memory file recorded of it, at ``recorded_at``
        (replaced by its first full listing)."""
        self.instances = {instance.runner_name: instance for instance in instances}
        self.recalled_at = recorded_at

    def seen_one(self, name: str, instance: Instance | None) -> None:
        """What is known of one instance now (None: it is gone)."""
        self.generation += 1
        self._changed[name] = self.generation
        if instance is None:
            self.instances.pop(name, None)
        else:
            self.instances[name] = instance


async def stop_watching(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel health tasks and wait for them to end."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
