"""What each pool's instances cost: in all, and today (UTC), for the cost metric and the budget.

A backend that knows its prices lists each instance with ``Instance.price_per_hour`` (US
dollars an hour while it exists; the EC2 backend: by instance type and market). The controller
hands every listing of the poll loop to :meth:`SpendBook.count`, which adds each running,
priced instance's price for the time since the previous listing (or since the instance was
made, when that is later): cost integrated over time, listing by listing. An instance that
ends between two listings loses the time since the last one it was seen in (at most one poll
interval); one listed again after a failed listing is counted for the whole gap.

Why per UTC day: a pool's ``budget: {per_day: ...}`` caps what it spends from 00:00 UTC to the
next 00:00 UTC (:func:`runnerscale.scaler.decide` holds its creations back once today's spend
reaches it). Time that straddles midnight is split at it: only today's share counts against
today's budget; the total gets it all.

Why in the store's key/value facts (``spend:<pool>``): a restarted daemon (or the one that
takes the lead) goes on from the last listing counted, so a restart loses nothing of today's
spend, and counts the instances that ran meanwhile from where its predecessor stopped. A pool
that never listed a priced instance writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from runnerscale.model import DAY, Instance, utc_day
from runnerscale.protocols import Store

log = logging.getLogger("runnerscale.controller")


def key(pool: str) -> str:
    """The store's key of a pool's spend."""
    return f"spend:{pool}"


@dataclass
class PoolSpend:
    """One pool's account, as kept in the store."""

    #: The UTC day ``today`` is of (:func:`~runnerscale.model.utc_day`).
    day: int = 0
    #: US dollars spent on that day.
    today: float = 0.0
    #: US dollars spent since the pool was first counted.
    total: float = 0.0
    #: The time of the last listing counted (None: none yet).
    counted_until: float | None = None

    def spent_on(self, day: int) -> float:
        """What was spent on ``day`` (0 for a day the account is not of)."""
        return self.today if self.day == day else 0.0


class SpendBook:
    """Every pool's account, read from the store once and written back at each listing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._accounts: dict[str, PoolSpend] = {}

    def account(self, pool: str) -> PoolSpend:
        """The pool's account (read from the store the first time)."""
        if pool not in self._accounts:
            self._accounts[pool] = self._read(pool)
        return self._accounts[pool]

    def today(self, pool: str, now: float) -> float:
        """US dollars the pool spent today (UTC), up to its last listing."""
        return self.account(pool).spent_on(utc_day(now))

    def total(self, pool: str) -> float:
        """US dollars the pool spent since it was first counted."""
        return self.account(pool).total

    def count(self, pool: str, instances: Iterable[Instance], now: float) -> None:
        """A listing of the pool's instances at ``now``: add what each running, priced one
        cost since the previous listing (or since it was made, when later)."""
        account = self.account(pool)
        priced = [
            instance
            for instance in instances
            if instance.running and instance.price_per_hour is not None
        ]
        if account.counted_until is None and not priced:
            return  # nothing was ever counted, nothing to count: nothing to keep
        today_began = utc_day(now) * DAY
        if account.day != utc_day(now):
            account.day, account.today = utc_day(now), 0.0
        for instance in priced:
            assert instance.price_per_hour is not None
            since = self._since(account, instance, now)
            per_second = max(0.0, instance.price_per_hour) / 3600.0
            account.total += (now - since) * per_second
            account.today += (now - max(since, today_began)) * per_second
        account.counted_until = now
        self.store.set_value(key(pool), json.dumps(asdict(account)))

    @staticmethod
    def _since(account: PoolSpend, instance: Instance, now: float) -> float:
        """Where the instance's time counted in this listing begins: the previous listing, or
        when it was made if later (with neither known: now, nothing)."""
        since = account.counted_until
        if instance.created_at is not None:
            since = instance.created_at if since is None else max(since, instance.created_at)
        return now if since is None else min(since, now)

    def _read(self, pool: str) -> PoolSpend:
        stored = self.store.get_value(key(pool))
        if stored is None:
            return PoolSpend()
        try:
            fields = json.loads(stored)
            account = PoolSpend(
                day=int(fields["day"]),
                today=float(fields["today"]),
                total=float(fields["total"]),
                counted_until=(
                    None if fields["counted_until"] is None else float(fields["counted_until"])
                ),
            )
        except (ValueError, TypeError, KeyError):
            log.warning("pool %s: its stored spend is unreadable: counting from zero", pool)
            return PoolSpend()
        return account
