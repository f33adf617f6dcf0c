"""Where to launch a runner's instance, in which order: a pure plan over the pool's settings.

Why it looks the way it does:

*The user's order is the plan.* ``instance_types`` are tried in the order given (the first is
the one the pool prefers), each in every subnet in the order given (a type short of capacity
in one Availability Zone often has room in another), for each market the pool allows: spot
first, then on-demand (``spot-then-on-demand``), so spot is used wherever it has room before
anything is paid at the on-demand price. No subnets: the launch template's network, one
attempt per type and market.

*AWS tells why an attempt failed, and only some reasons move on.* An error code is one of
three kinds (:func:`classify`): ``capacity`` (no room for that type there and then: the next
attempt may have it), ``quota`` (a limit of the account: the next type or the other market
may be under another limit) and ``other`` (a mistake in the request, the template, the
permissions, or AWS failing: every attempt would fail alike, so the create stops with it).
A spot quota (``MaxSpotInstanceCountExceeded``) ends the spot attempts only: the account can
start no more spot instances anywhere, on-demand still may.

*What was short of capacity a moment ago goes last* (:func:`ordered`): in a burst, fifty
creates would otherwise each ask for the type that just failed before taking the next. The
plan keeps every attempt (capacity comes back); only the order changes while the shortage is
recent.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from runnerscale.providers.ec2.prices import Market

__all__ = [
    "CAPACITY_CODES",
    "QUOTA_CODES",
    "Attempt",
    "Failure",
    "Outcome",
    "after_failure",
    "classify",
    "ordered",
    "outcome",
    "plan",
    "summary",
]

#: Why an attempt failed, as far as the next attempt is concerned.
Failure: TypeAlias = Literal["capacity", "quota", "other"]
#: What is counted per attempt (``context.record("launch", outcome)``): short fixed words.
Outcome: TypeAlias = Literal["launched", "insufficient_capacity", "quota_exceeded", "failed"]

#: No room for that type there and then (spot or on-demand), or not offered there at all.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacityOnHost",
        "InsufficientFreeAddressesInSubnet",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
        "Unsupported",
    }
)
#: A limit of the account.
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "MaxSpotFleetRequestCountExceeded",
    }
)
#: A quota that ends every further attempt of its market.
_MARKET_QUOTAS: dict[str, Market] = {"MaxSpotInstanceCountExceeded": "spot"}

_OUTCOMES: dict[Failure, Outcome] = {
    "capacity": "insufficient_capacity",
    "quota": "quota_exceeded",
    "other": "failed",
}


@dataclass(frozen=True)
class Attempt:
    """One launch to try: a market, an instance type, a subnet (None: the template's)."""

    market: Market
    instance_type: str
    subnet: str | None

    def __str__(self) -> str:
        where = self.subnet or "the launch template's subnet"
        return f"{self.instance_type} {self.market} in {where}"


def plan(
    markets: Sequence[Market], instance_types: Sequence[str], subnets: Sequence[str]
) -> list[Attempt]:
    """Every attempt, in order: per market (``Ec2Config.markets``), each instance type in
    every subnet."""
    where: Sequence[str | None] = list(subnets) or [None]
    return [
        Attempt(market, instance_type, subnet)
        for market in markets
        for instance_type in instance_types
        for subnet in where
    ]


def ordered(attempts: Sequence[Attempt], short: Collection[Attempt]) -> list[Attempt]:
    """The plan with the attempts recently short of capacity moved to its end (each part in
    its own order): they are still tried, after everything that may have room."""
    return [a for a in attempts if a not in short] + [a for a in attempts if a in short]


def classify(code: str) -> Failure:
    """The kind of an AWS error code (``InsufficientInstanceCapacity`` -> ``capacity``)."""
    if code in CAPACITY_CODES:
        return "capacity"
    if code in QUOTA_CODES:
        return "quota"
    return "other"


def outcome(failure: Failure) -> Outcome:
    """The counted outcome of an attempt that failed so."""
    return _OUTCOMES[failure]


def after_failure(remaining: Sequence[Attempt], code: str) -> list[Attempt]:
    """What is left to try after an attempt failed with ``code``: nothing after an error that
    every attempt would meet, the other market's attempts only after its market's quota, the
    rest otherwise."""
    failure = classify(code)
    if failure == "other":
        return []
    ended = _MARKET_QUOTAS.get(code)
    return [attempt for attempt in remaining if attempt.market != ended]


def summary(tried: Sequence[tuple[Attempt, str]]) -> str:
    """The attempts and their error codes, for the error of a create that found no room:
    ``m7i.large spot in subnet-a: InsufficientInstanceCapacity; ...``."""
    return "; ".join(f"{attempt}: {code}" for attempt, code in tried)
