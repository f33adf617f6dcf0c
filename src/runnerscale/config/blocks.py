"""A pool's other blocks: settings some other part of runnerscale (or another distribution)
reads from a pool, found through the ``runnerscale.pool_blocks`` entry-point group.

Why a registry: the core schema must not import the code that owns such settings (the
simulation's ``simulation:`` block belongs to ``runnerscale simulate``, a layer far above the
schema), yet a pool's block is part of the file's shape: its errors name the file, the line and
the path like every other, and ``config schema`` includes it. So the owner registers the block,
as a backend registers its own (:mod:`runnerscale.providers.registry`): its distribution
declares, in ``pyproject.toml``::

    [project.entry-points."runnerscale.pool_blocks"]
    simulation = "runnerscale.simulation.settings:BLOCK"

and the object named there is a :class:`PoolBlock`. The entry point's name is the block's key
in a pool. :class:`~runnerscale.config.schema.PoolConfig` adds one optional block per
registered one, after the backends' blocks; the owner reads it back with
``getattr(pool, NAME, None)`` (the static type of a pool does not know it).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runnerscale import plugins

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["ENTRY_POINT_GROUP", "PoolBlock", "installed"]

ENTRY_POINT_GROUP = "runnerscale.pool_blocks"


@dataclass(frozen=True)
class PoolBlock:
    """One block of a pool's settings, as its owner registers it (what its entry point names)."""

    #: The model of the block (a :class:`~runnerscale.config.base.ConfigModel`).
    settings: type[BaseModel]
    #: One line for ``config schema``: the block's description.
    description: str = ""
    #: Where it comes among the pool's blocks (after the backends'): lower first, then by name.
    order: int = 100


@functools.cache
def installed() -> Mapping[str, PoolBlock]:
    """Every registered pool block by its key, in ``order`` then name order.

    Loaded once per process, when the schema is imported: a block installed later is seen by
    the next process.
    """
    return plugins.load(ENTRY_POINT_GROUP, PoolBlock)
