"""Which pools of this process run one provider program: whether garm's v0.1.0
``RemoveAllInstances`` may be sent for a pool.

Why: with v0.1.0 ``RemoveAllInstances`` names no pool; the provider removes every instance
carrying the controller's id. That is exactly the drained pool's instances only when no other
pool of this controller uses the same provider (the same program with the same configuration
file, so the same cloud account or host). Providers join when built and leave when closed;
a pool is counted (not just noted) because a reload builds a pool's new provider before it
closes the old one.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

__all__ = ["ProgramKey", "alone", "join", "leave"]


@dataclass(frozen=True)
class ProgramKey:
    """One provider as the instances see it: whose, which program, which configuration."""

    controller_id: str
    executable: str
    config_file: str


_lock = threading.Lock()
_pools: dict[ProgramKey, Counter[str]] = {}


def join(key: ProgramKey, pool: str) -> None:
    """A provider of ``pool`` over ``key`` was built."""
    with _lock:
        _pools.setdefault(key, Counter())[pool] += 1


def leave(key: ProgramKey, pool: str) -> None:
    """A provider of ``pool`` over ``key`` was closed (more than joined: no-op)."""
    with _lock:
        pools = _pools.get(key)
        if pools is None or pools[pool] <= 0:
            return
        pools[pool] -= 1
        if pools[pool] == 0:
            del pools[pool]
        if not pools:
            del _pools[key]


def alone(key: ProgramKey, pool: str) -> bool:
    """No other pool of this process runs the program of ``key`` now."""
    with _lock:
        return all(name == pool for name in _pools.get(key, ()))
