"""What an EC2 instance costs per hour, by instance type and market, in US dollars.

Why defaults at all: the cost metric and a pool's ``budget`` need a figure for every instance
the pool launches, and asking AWS's price list API needs a permission and a region most
daemons do not have (it answers only in us-east-1 and ap-south-1). So common types come with
a figure here, and a pool's ``ec2.prices`` overrides any of them (:func:`hourly_price`).

Where the figures come from: on-demand, the published Linux list prices of **eu-west-1
(Ireland)**, shared tenancy, as of **mid-2025**, rounded to 0.1 cent at ``large``. Spot: a
typical eu-west-1 spot price of the same period (spot prices move hourly and differ by
availability zone; these are a planning figure, about 35-45 % of on-demand, not a quote).
Within a family AWS prices grow with the size (``xlarge`` twice ``large``, ``2xlarge`` four
times), and so do these. Other regions differ by up to a third: write your own in
``prices:`` when the figure matters (a budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

from pydantic import Field, model_validator

from runnerscale.config.base import ConfigModel
from runnerscale.config.problems import fail

__all__ = ["DEFAULT_PRICES", "PRICES_REGION", "PRICES_SINCE", "Ec2Price", "Market", "hourly_price"]

#: The market of one launch (a pool's ``spot-then-on-demand`` tries both, in that order).
Market: TypeAlias = Literal["spot", "on-demand"]
#: Where and when the default figures are from.
PRICES_REGION = "eu-west-1"
PRICES_SINCE = "2025-06"


class Ec2Price(ConfigModel):
    """An instance type's hourly price in US dollars, per market (a figure not given falls back
    to the default, if there is one)."""

    on_demand: float | None = Field(
        default=None, ge=0, description="US dollars per hour on demand."
    )
    spot: float | None = Field(
        default=None, ge=0, description="US dollars per hour on the spot market (a typical figure)."
    )

    @model_validator(mode="after")
    def _some(self) -> Ec2Price:
        if self.on_demand is None and self.spot is None:
            raise fail(
                "gives no price",
                "write the hourly price in US dollars, e.g. {on_demand: 0.107, spot: 0.04}",
                echo=False,
            )
        return self

    def of(self, market: Market) -> float | None:
        """The figure for that market (None: not given)."""
        return self.spot if market == "spot" else self.on_demand


#: Per family: (on-demand, spot) of its ``large`` size.
_LARGE: dict[str, tuple[float, float]] = {
    # general purpose, x86
    "m7i": (0.1124, 0.0500),
    "m6i": (0.1070, 0.0420),
    "m5": (0.1070, 0.0400),
    # compute optimised, x86
    "c7i": (0.1008, 0.0450),
    "c6i": (0.0960, 0.0400),
    "c5": (0.0960, 0.0380),
    # burstable, x86
    "t3": (0.0912, 0.0300),
    # Graviton (arm64)
    "m7g": (0.0914, 0.0360),
    "c7g": (0.0816, 0.0320),
}
#: A size's price as a multiple of ``large``.
_SIZES = {"large": 1, "xlarge": 2, "2xlarge": 4, "4xlarge": 8}

#: The default figures by instance type (``m7i.large``), as :class:`Ec2Price`.
DEFAULT_PRICES: Mapping[str, Ec2Price] = {
    f"{family}.{size}": Ec2Price(
        on_demand=round(on_demand * factor, 4), spot=round(spot * factor, 4)
    )
    for family, (on_demand, spot) in _LARGE.items()
    for size, factor in _SIZES.items()
}


def hourly_price(
    instance_type: str, market: Market, overrides: Mapping[str, Ec2Price] | None = None
) -> float | None:
    """What an instance of ``instance_type`` costs per hour on ``market``, in US dollars: the
    pool's ``prices`` entry for it when it gives that market's figure, else the default; None
    when neither knows it (the cost then counts it as unknown)."""
    for table in (overrides or {}, DEFAULT_PRICES):
        entry = table.get(instance_type)
        figure = entry.of(market) if entry is not None else None
        if figure is not None:
            return figure
    return None
