"""How ``runnerscale simulate`` models a pool's backend: boot time, failures, cost, spot.

Why it is here and not in ``runnerscale.config``: ``run`` ignores these settings, which belong
to the simulation. A pool's ``simulation:`` block is still part of the configuration file (its
errors name the file, the line and the path; ``config schema`` shows it): this package
registers it as a pool block (:mod:`runnerscale.config.blocks`) through the entry point::

    [project.entry-points."runnerscale.pool_blocks"]
    simulation = "runnerscale.simulation.settings:BLOCK"

so the core schema adds it to every pool without importing this package, and the simulation
reads it back with :func:`pool_simulation`.

Keep this module's imports to the configuration's building blocks: the schema loads it while
it is itself being imported.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from runnerscale.config.base import ConfigModel
from runnerscale.config.blocks import PoolBlock
from runnerscale.config.problems import fail
from runnerscale.config.units import Duration

if TYPE_CHECKING:
    from runnerscale.config.schema import PoolBase

__all__ = ["BLOCK", "NAME", "BootTime", "SimulationConfig", "pool_simulation"]

#: The block's key in a pool: its entry point's name in ``pyproject.toml``.
NAME = "simulation"


class BootTime(ConfigModel):
    """How long a simulated runner takes to boot: fixed, uniform or lognormal."""

    distribution: Literal["fixed", "uniform", "lognormal"] = Field(
        default="fixed",
        description="fixed (value), uniform (low, high) or lognormal (median, sigma).",
    )
    value: Duration | None = Field(default=None, description="fixed: the boot time.")
    low: Duration | None = Field(default=None, description="uniform: the shortest boot time.")
    high: Duration | None = Field(default=None, description="uniform: the longest boot time.")
    median: Duration | None = Field(default=None, description="lognormal: the median.")
    sigma: float | None = Field(
        default=None, gt=0, description="lognormal: the spread (sigma of the log)."
    )

    @model_validator(mode="after")
    def _fields_for_distribution(self) -> BootTime:
        needs = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "sigma")}
        wanted = needs[self.distribution]
        for name in ("value", "low", "high", "median", "sigma"):
            given = getattr(self, name) is not None
            if name in wanted and not given:
                raise fail(
                    f"is required for the {self.distribution} distribution",
                    f"add {name} (the {self.distribution} distribution takes "
                    f"{' and '.join(wanted)})",
                    at=(name,),
                    echo=False,
                )
            if name not in wanted and given:
                raise fail(
                    f"does not apply to the {self.distribution} distribution",
                    f"remove {name}; {self.distribution} takes {' and '.join(wanted)}",
                    at=(name,),
                    echo=False,
                )
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            if self.low > self.high:
                raise fail(
                    "is less than low",
                    "make high at least low",
                    at=("high",),
                    echo=False,
                )
        return self

    @property
    def mean(self) -> float:
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            return (self.low + self.high) / 2
        if self.distribution == "lognormal":
            assert self.median is not None
            assert self.sigma is not None
            return self.median * math.exp(self.sigma**2 / 2)
        assert self.value is not None
        return self.value

    def sample(self, rng: random.Random) -> float:
        """One boot time, in seconds, drawn from ``rng``."""
        if self.distribution == "uniform":
            assert self.low is not None
            assert self.high is not None
            return rng.uniform(self.low, self.high)
        if self.distribution == "lognormal":
            assert self.median is not None
            assert self.sigma is not None
            return rng.lognormvariate(math.log(max(self.median, 1e-9)), self.sigma)
        assert self.value is not None
        return self.value


def _boot_time_short_form(value: Any) -> Any:
    """``boot_time: 30s`` is ``boot_time: {distribution: fixed, value: 30s}``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"distribution": "fixed", "value": value}
    return value


class SimulationConfig(ConfigModel):
    """How `runnerscale simulate` models this pool's backend (ignored by `run`).

    ``boot_time`` and ``cost_per_hour`` are None when not written: the backend's default then
    applies (:func:`runnerscale.simulation.market.backend_model` says which), so a default
    survives a round trip through ``model_dump`` (as ``--sweep`` makes).
    """

    boot_time: Annotated[
        BootTime | None,
        BeforeValidator(_boot_time_short_form, json_schema_input_type=Duration | BootTime),
    ] = Field(
        default=None,
        description="A duration (fixed), or {distribution: uniform, low: .., high: ..} or "
        "{distribution: lognormal, median: .., sigma: ..} (default: 30s; for an ec2 pool "
        "{distribution: lognormal, median: 90s, sigma: 0.3}).",
    )
    create_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of creations that fail (0..1)."
    )
    never_register_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of runners that start but never come online (0..1).",
    )
    cost_per_hour: float | None = Field(
        default=None,
        ge=0,
        description="What one runner costs per hour it exists (default: free). Not for an ec2 "
        "pool: its prices are its ec2 block's, by instance type and market.",
    )
    spot_capacity_short_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="ec2 pools: share of spot launches refused for want of capacity (0..1); "
        "they go on demand with spot-then-on-demand, and fail with spot.",
    )
    spot_interruptions_per_hour: float = Field(
        default=0.0,
        ge=0,
        description="ec2 pools: how often AWS takes back a running spot instance, per "
        "instance-hour (after a 2-minute notice, during which it takes no new job).",
    )


#: The ``simulation:`` block, the object its ``runnerscale.pool_blocks`` entry point names.
BLOCK = PoolBlock(
    settings=SimulationConfig, description="How `runnerscale simulate` models this pool."
)


def pool_simulation(pool: PoolBase) -> SimulationConfig:
    """The pool's ``simulation:`` block, or the defaults (the backend's boot time and price, no
    failures) when it has none."""
    block = getattr(pool, NAME, None)
    if block is None:
        return SimulationConfig()
    assert isinstance(block, SimulationConfig), f"pool {pool.name}: {NAME} is {block!r}"
    return block
