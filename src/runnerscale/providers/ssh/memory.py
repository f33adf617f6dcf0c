"""What each node of a pool last held, kept in a file on the daemon's host across restarts.

Why: a node that does not answer after a daemon restart would otherwise list nothing, and the
controller's janitor would take its runners' instances as vanished: a busy runner marked
finished and its job recorded as lost, though the node may come back with the job still
running. With this memory, such a node reports its runners as last known (running, its state
unknown), exactly as a node that went down while the daemon ran; when it answers again, its
real listing replaces the memory.

The file is ``<state_dir>/ssh/<controller id>/<pool>.json``: one per deployment and pool (two
deployments on one host never read each other's), mode ``0600`` in folders of mode ``0700``,
written whole or not at all (:func:`~runnerscale.files.write_atomic`), and only when what some
node holds changed (a listing that finds the same runners writes nothing). It holds, per node,
its instances' ids and runner names, and when they were recorded: no JIT config, no instance
detail (a runner's last log lines), nothing secret. A file that cannot be
read (broken, from another version) is set aside with a warning: the pool starts knowing
nothing, as without a memory. A file that cannot be written is warned about once until a
write succeeds again: the pool works on, only a restart would forget.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerscale.files import make_dirs, write_atomic
from runnerscale.model import Instance

__all__ = ["MEMORY_VERSION", "NodeMemory", "Recalled"]

log = logging.getLogger("runnerscale.providers.ssh")

#: The file's format (a file of another is ignored).
MEMORY_VERSION = 1

#: What is kept of one instance: its node's own id and its runner's name.
_Kept = tuple[str, str]


@dataclass(frozen=True)
class Recalled:
    """A node's instances as the file keeps them, and when they were recorded."""

    instances: tuple[Instance, ...]
    recorded_at: float


def _kept(instances: Iterable[Instance]) -> tuple[_Kept, ...]:
    return tuple(sorted((i.id, i.runner_name) for i in instances))


class NodeMemory:
    """The memory file of one pool of one deployment (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        controller_id: str,
        pool: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = state_dir / "ssh" / controller_id / f"{pool}.json"
        self.pool = pool
        self._clock = clock
        #: What the file holds now, by node: the kept instances and when they were recorded.
        self._written: dict[str, tuple[tuple[_Kept, ...], float]] = {}
        self._failing = False

    def __repr__(self) -> str:
        return f"NodeMemory({str(self.path)!r})"

    def load(self) -> dict[str, Recalled]:
        """What the file remembers, by node name (nothing when there is no file yet, or when
        it cannot be read: then with a warning)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            log.warning(
                "pool %s: cannot read what its nodes held before (%s): %s; starting without",
                self.pool,
                self.path,
                error.strerror or error,
            )
            return {}
        try:
            recalled = self._parse(json.loads(text))
        except (ValueError, TypeError, KeyError) as error:
            log.warning(
                "pool %s: %s is not a memory of its nodes this version reads (%s): starting "
                "without it (it is replaced at the next change)",
                self.pool,
                self.path,
                error,
            )
            return {}
        self._written = {
            node: (_kept(found.instances), found.recorded_at) for node, found in recalled.items()
        }
        return recalled

    def _parse(self, data: Any) -> dict[str, Recalled]:
        if not isinstance(data, dict) or data.get("version") != MEMORY_VERSION:
            raise ValueError(f"not version {MEMORY_VERSION}")
        recalled: dict[str, Recalled] = {}
        for node, entry in dict(data["nodes"]).items():
            instances = tuple(
                Instance(
                    id=str(kept["id"]),
                    runner_name=str(kept["runner_name"]),
                    pool=self.pool,
                    running=True,
                )
                for kept in entry["instances"]
            )
            recalled[str(node)] = Recalled(instances, float(entry["recorded_at"]))
        return recalled

    def update(self, nodes: Mapping[str, Iterable[Instance]]) -> None:
        """Keep what each node holds now; the file is written only when that changed."""
        now = self._clock()
        wanted: dict[str, tuple[tuple[_Kept, ...], float]] = {}
        for node, instances in nodes.items():
            kept = _kept(instances)
            if not kept:
                continue  # (a node that holds nothing needs no line)
            before = self._written.get(node)
            wanted[node] = before if before is not None and before[0] == kept else (kept, now)
        if wanted == self._written:
            return
        try:
            make_dirs(self.path.parent)
            write_atomic(self.path, self._render(wanted))
        except OSError as error:
            if not self._failing:
                log.warning(
                    "pool %s: cannot keep what its nodes hold in %s: %s; a restart while a "
                    "node is down would forget its runners",
                    self.pool,
                    self.path,
                    error.strerror or error,
                )
            self._failing = True
            return
        if self._failing:
            log.info("pool %s: what its nodes hold is kept in %s again", self.pool, self.path)
        self._failing = False
        self._written = wanted

    @staticmethod
    def _render(nodes: Mapping[str, tuple[tuple[_Kept, ...], float]]) -> bytes:
        data = {
            "version": MEMORY_VERSION,
            "nodes": {
                node: {
                    "recorded_at": recorded_at,
                    "instances": [{"id": own_id, "runner_name": name} for own_id, name in kept],
                }
                for node, (kept, recorded_at) in sorted(nodes.items())
            },
        }
        return (json.dumps(data, indent=1) + "\n").encode()
