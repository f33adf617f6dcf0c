"""What a simulated pool's backend is: its ``simulation:`` block and its backend's block, read
together into one :class:`BackendModel`.

Why a module of its own: most of a pool's model is its ``simulation:`` block, but a backend
that launches on markets (the ec2 backend: ``market``, and a price per instance type and
market) already says what its instances cost and in which order a launch tries the markets.
That is read from the backend's own block, so the simulation and the daemon's cost metric and
budget use the same prices (``ec2.prices`` over the defaults), never a second figure.

Why by shape, not by name: backends are plug-ins that the simulation never imports (the
import contracts in ``pyproject.toml``). A backend's settings that have a ``market``, its
``markets`` in launch order, its ``instance_types`` and a ``price(instance_type, market)``
(:class:`MarketPlan`) are priced by market; today only ``provider: ec2`` has them.

The rules, each failing with a :class:`ModelError` that names the pool, the key and the fix:

* a pool priced by market takes no ``cost_per_hour``: two prices for one instance would
  disagree, and the daemon's budget counts the backend's;
* ``spot_capacity_short_rate`` and ``spot_interruptions_per_hour`` need a pool priced by
  market (on an ``on-demand`` ec2 pool they are kept, unused, so that ``--sweep market=...``
  compares one config);
* without a ``boot_time`` a pool priced by market boots in :data:`EC2_BOOT_TIME`, every other
  pool in :data:`DEFAULT_BOOT_TIME`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from runnerscale.simulation.settings import BootTime, pool_simulation

if TYPE_CHECKING:
    from runnerscale.config.schema import Config, PoolBase

__all__ = [
    "DEFAULT_BOOT_TIME",
    "EC2_BOOT_TIME",
    "FREE",
    "ON_DEMAND",
    "SPOT",
    "SPOT_NOTICE",
    "BackendModel",
    "MarketPlan",
    "ModelError",
    "Offer",
    "backend_model",
    "backend_models",
    "market_pools",
]

SPOT = "spot"
ON_DEMAND = "on-demand"
#: How long AWS warns before it takes back a spot instance (the interruption notice).
SPOT_NOTICE = 120.0
#: A pool's boot time when neither its block nor its backend says otherwise.
DEFAULT_BOOT_TIME = BootTime(distribution="fixed", value=30.0)
#: An ec2 pool's boot time when its block gives none: from the launch to the runner online.
#: A planning figure, not a measurement here: EC2's pending to running (10-20 s), an Ubuntu
#: boot (20-40 s), the boot script's SSM read and the runner's start (10-20 s); public
#: accounts of ephemeral EC2 runners from a prepared AMI say "under two minutes". Measure
#: yours (from an instance's launch to its runner online in GitHub) and write it.
EC2_BOOT_TIME = BootTime(distribution="lognormal", median=90.0, sigma=0.3)


class ModelError(ValueError):
    """A pool's blocks that cannot be simulated together; the message names the fix."""


@runtime_checkable
class MarketPlan(Protocol):
    """A backend's settings that launch on markets, in order, at a price per instance type
    and market (the ec2 block: :class:`runnerscale.providers.ec2.settings.Ec2Config`)."""

    market: str
    instance_types: list[str]

    @property
    def markets(self) -> tuple[str, ...]: ...

    def price(self, instance_type: str, market: Any) -> float | None: ...


@dataclass(frozen=True)
class Offer:
    """One market a launch may get, and what an instance costs an hour there (US dollars for
    ec2; None as the market of a pool without markets)."""

    market: str | None
    price: float


#: The offer of a pool without markets or price.
FREE = Offer(None, 0.0)


@dataclass(frozen=True)
class BackendModel:
    """How one pool's simulated backend behaves."""

    pool: str
    boot_time: BootTime
    create_failure_rate: float = 0.0
    never_register_rate: float = 0.0
    #: What a launch tries, in order; one market-less offer for a pool without markets.
    offers: tuple[Offer, ...] = (FREE,)
    spot_capacity_short_rate: float = 0.0
    spot_interruptions_per_hour: float = 0.0

    @property
    def has_markets(self) -> bool:
        return any(offer.market is not None for offer in self.offers)

    @property
    def cheapest(self) -> float:
        """The lowest hourly price a launch may get (what the lower bound assumes)."""
        return min(offer.price for offer in self.offers)


def _plan(pool: PoolBase) -> MarketPlan | None:
    settings = getattr(pool, pool.provider, None)
    return settings if isinstance(settings, MarketPlan) else None


def market_pools(config: Config) -> list[str]:
    """The pools priced by market (the ones ``--sweep market=...`` changes)."""
    return [pool.name for pool in config.pools if _plan(pool) is not None]


def backend_model(pool: PoolBase) -> BackendModel:
    """The pool's simulated backend, from its blocks (:class:`ModelError`: they disagree)."""
    block = pool_simulation(pool)
    plan = _plan(pool)
    at = f"pool {pool.name}: simulation"
    if plan is None:
        for key in ("spot_capacity_short_rate", "spot_interruptions_per_hour"):
            if getattr(block, key) > 0:
                raise ModelError(
                    f"{at}.{key} applies only to a pool with spot instances (provider: ec2); "
                    f"remove it from pool {pool.name}, whose provider is {pool.provider}"
                )
        return BackendModel(
            pool=pool.name,
            boot_time=block.boot_time or DEFAULT_BOOT_TIME,
            create_failure_rate=block.create_failure_rate,
            never_register_rate=block.never_register_rate,
            offers=(Offer(None, block.cost_per_hour or 0.0),),
        )
    if block.cost_per_hour is not None:
        first = plan.instance_types[0]
        raise ModelError(
            f"{at}.cost_per_hour does not apply with provider: {pool.provider}: its instances cost "
            f"what {pool.provider}.prices (over the default prices) says, by instance type and "
            f"market; remove cost_per_hour, and write a price that differs as "
            f"{pool.provider}.prices: {{{first}: {{on_demand: 0.1, spot: 0.04}}}}"
        )
    # A launch gets the first instance type unless capacity is short (modelled per market).
    instance_type = plan.instance_types[0]
    return BackendModel(
        pool=pool.name,
        boot_time=block.boot_time or EC2_BOOT_TIME,
        create_failure_rate=block.create_failure_rate,
        never_register_rate=block.never_register_rate,
        offers=tuple(
            Offer(market, plan.price(instance_type, market) or 0.0) for market in plan.markets
        ),
        spot_capacity_short_rate=block.spot_capacity_short_rate,
        spot_interruptions_per_hour=block.spot_interruptions_per_hour,
    )


def backend_models(pools: Sequence[PoolBase]) -> dict[str, BackendModel]:
    """Every pool's model by name, in the config's order (the first :class:`ModelError`)."""
    return {pool.name: backend_model(pool) for pool in pools}
