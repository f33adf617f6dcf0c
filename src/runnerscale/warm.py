"""Warm windows: a pool's ``min_idle`` over time, and the number in force at a given moment.

Why: people push in working hours, so idle runners kept ready at night are money spent on
nobody, and a morning burst that finds none waits a boot per job. A pool's ``min_idle`` is
therefore a base number plus *warm windows*: each opens when its cron expression fires, in its
own time zone, stays open for its duration (elapsed time), and keeps its count of idle runners
while open. Where windows overlap the largest count wins (the first declared on a tie); the
base is in force outside them.

Why it is pure: the number in force is asked *at* a time the caller gives (the controller's
clock: the wall clock in the daemon, the virtual one in ``runnerscale simulate``), never
``datetime.now()``, so a simulated day and a real one evaluate a schedule the same way, and the
scaler keeps deciding on a plain number (:class:`~runnerscale.model.PoolSpec.min_idle`).

Cron expressions are evaluated by ``cronsim``, which follows Debian cron across daylight-saving
changes. A window whose local start time does not exist that day (the clocks skip it) opens at
the first moment after the gap (``30 2 * * *`` in Europe/Berlin opens at 03:00 on the last
Sunday of March); one whose start time happens twice (the clocks go back) opens once, at the
first of the two. Its duration is elapsed time from there, whatever the clocks do meanwhile.

A day's schedule changes only when a window opens or closes, so :meth:`MinIdleSchedule.holding`
says until when what it found holds, and :class:`ScheduleCache` computes it again only then.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = [
    "InForce",
    "MinIdleSchedule",
    "ScheduleCache",
    "WarmWindow",
    "check_cron",
    "time_zone",
]

#: Around a clock change, a local time can stand for instants up to this far apart (an
#: hour in most places, two in a few): searches start this much further out and keep only
#: the instants that qualify.
_CLOCK_CHANGE_MARGIN = 3 * 3600.0


def check_cron(expression: str) -> None:
    """Raise ``ValueError`` (saying what is wrong) unless ``expression`` is a cron expression
    of five fields: minute, hour, day of month, month, day of week."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"it has {len(fields)} fields, not 5")
    try:
        CronSim(expression, datetime(2026, 1, 1))
    except CronSimError as error:
        raise ValueError(str(error).lower()) from None


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``); ``ValueError`` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone") from None


@dataclass(frozen=True)
class WarmWindow:
    """From each time ``cron`` fires (read in ``timezone``), for ``duration`` seconds, keep
    ``count`` idle runners."""

    cron: str
    duration: float
    count: int
    timezone: str = "UTC"

    @cached_property
    def _zone(self) -> ZoneInfo:
        return time_zone(self.timezone)

    def _starts(self, origin: float, *, reverse: bool) -> Iterator[float]:
        """The instants the window opens, from ``origin`` on (or back). Near a clock change
        the first few may lie on the wrong side of ``origin``: callers filter."""
        moments = CronSim(self.cron, datetime.fromtimestamp(origin, self._zone), reverse=reverse)
        for moment in moments:  # cronsim stops after 50 years without a match
            yield moment.timestamp()

    def last_start(self, now: float) -> float | None:
        """When the window last opened, at ``now`` or before (None: never in 50 years)."""
        # Searching back from a local time inside a repeated hour would miss an opening earlier
        # in that hour: start from further on and skip what lies after ``now``.
        return next(
            (t for t in self._starts(now + _CLOCK_CHANGE_MARGIN, reverse=True) if t <= now), None
        )

    def next_start(self, now: float) -> float | None:
        """When the window opens next, after ``now`` (None: not in the next 50 years)."""
        return next((t for t in self._starts(now, reverse=False) if t > now), None)


@dataclass(frozen=True)
class InForce:
    """The ``min_idle`` in force at a moment, and why."""

    #: The number of idle runners to keep.
    count: int
    #: The window in force (the largest count of those open, the first declared on a tie) and
    #: its position in the pool's list of windows; None when the base is in force.
    window: WarmWindow | None = None
    index: int | None = None
    #: When the window in force closes (None with the base). It may open again at once.
    ends_at: float | None = None
    #: With the base in force: the window that opens next, its position, and when (None: no
    #: window opens within 50 years).
    next_window: WarmWindow | None = None
    next_index: int | None = None
    next_starts_at: float | None = None


@dataclass(frozen=True)
class MinIdleSchedule:
    """A base number of idle runners, and warm windows above it."""

    base: int = 0
    windows: tuple[WarmWindow, ...] = ()

    @property
    def peak(self) -> int:
        """The most idle runners the schedule ever asks for."""
        return max((self.base, *(window.count for window in self.windows)))

    def capped(self, cap: int) -> MinIdleSchedule:
        """The schedule with no number above ``cap`` (a pool's runners are held below it)."""
        return MinIdleSchedule(
            base=min(self.base, cap),
            windows=tuple(replace(w, count=min(w.count, cap)) for w in self.windows),
        )

    def at(self, now: float) -> InForce:
        """The number in force at ``now`` (seconds since the epoch) and the window that sets
        it."""
        return self.holding(now)[0]

    def holding(self, now: float) -> tuple[InForce, float]:
        """What is in force at ``now``, and until when it holds: the next moment a window
        opens or closes (inf: never)."""
        openings = [(window.last_start(now), window.next_start(now)) for window in self.windows]
        changes = min((start for _, start in openings if start is not None), default=math.inf)
        best: int | None = None
        for index, (window, (started, _)) in enumerate(zip(self.windows, openings, strict=True)):
            if started is None or now >= started + window.duration:
                continue
            changes = min(changes, started + window.duration)
            if best is None or window.count > self.windows[best].count:
                best = index
        if best is not None:
            window, started = self.windows[best], openings[best][0]
            assert started is not None
            ends_at = started + window.duration
            return InForce(max(self.base, window.count), window, best, ends_at), changes
        following = [
            (start, index) for index, (_, start) in enumerate(openings) if start is not None
        ]
        if not following:
            return InForce(self.base), changes
        starts_at, index = min(following)
        upcoming = InForce(
            self.base, next_window=self.windows[index], next_index=index, next_starts_at=starts_at
        )
        return upcoming, changes


@dataclass
class ScheduleCache:
    """A schedule's :class:`InForce`, computed again only once it may have changed (a window
    opened or closed) or the clock went back."""

    schedule: MinIdleSchedule
    _held: InForce | None = field(default=None, init=False, repr=False, compare=False)
    _since: float = field(default=0.0, init=False, repr=False, compare=False)
    _until: float = field(default=0.0, init=False, repr=False, compare=False)

    def at(self, now: float) -> InForce:
        if self._held is None or not self._since <= now < self._until:
            self._held, self._until = self.schedule.holding(now)
            self._since = now
        return self._held
