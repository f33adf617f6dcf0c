"""A pool block defined under tests/: proof that a block of a pool's settings is a plug-in, as
the simulation's ``simulation:`` block is. Nothing under ``src/`` names it. Its distribution
(written by :func:`tests.plugins.entry_points.install`) declares::

    [runnerscale.pool_blocks]
    cost_centre = tests.plugins.pool_block:BLOCK

and every pool may then give a ``cost_centre:`` block of :class:`CostCentreConfig`.
"""

from __future__ import annotations

from pydantic import Field

from runnerscale.config.base import ConfigModel
from runnerscale.config.blocks import PoolBlock

__all__ = ["BLOCK", "CostCentreConfig"]


class CostCentreConfig(ConfigModel):
    """Who pays for the pool's runners (tests only)."""

    code: str = Field(pattern=r"^[A-Z]{2}-[0-9]{3}$", description="The cost centre, e.g. EU-042.")


BLOCK = PoolBlock(settings=CostCentreConfig, description="Who pays for the pool's runners.")
