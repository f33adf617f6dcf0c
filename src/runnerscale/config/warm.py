"""A pool's ``min_idle`` as written: a number, a list of warm windows, or a base and windows.

Why three forms: the number is what most pools need and stays as it was; the list is the
short way to say "none outside these windows"; the mapping adds a base kept at all other
times::

    min_idle: 1
    min_idle: [{cron: "0 8 * * 1-5", duration: 10h, count: 4, timezone: Europe/Berlin}]
    min_idle: {base: 1, windows: [{cron: "0 8 * * 1-5", duration: 10h, count: 4}]}

The form is chosen by the value's type (a tagged union), so a mistake is reported in the
terms of the form used (``pools[0].min_idle[0].cron``), never as three failed alternatives.
The tags carry brackets, as pydantic's own do, so error paths leave them out.

What needs the pool (its name, its ``max_runners``) is checked by :func:`check_min_idle`,
which the pool's validator calls, so each message names the pool and the field. The domain
form, :class:`runnerscale.warm.MinIdleSchedule`, is what the controller evaluates.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, TypeAlias
from zoneinfo import available_timezones

from pydantic import Discriminator, Field, Tag

from runnerscale.config.base import ConfigModel
from runnerscale.config.problems import fail
from runnerscale.config.units import Duration
from runnerscale.warm import MinIdleSchedule, WarmWindow, check_cron, time_zone

__all__ = [
    "MinIdleSetting",
    "ScheduleConfig",
    "WindowConfig",
    "base_of",
    "check_min_idle",
    "schedule_of",
]

CRON_FORM = (
    "write five fields, minute hour day-of-month month day-of-week, read in the window's "
    "timezone: e.g. '0 8 * * 1-5' (08:00, Monday to Friday)"
)


class WindowConfig(ConfigModel):
    """A warm window: from each time ``cron`` fires, for ``duration``, keep ``count`` idle."""

    cron: str = Field(
        description="When the window opens: a cron expression of five fields (minute hour "
        "day-of-month month day-of-week), read in timezone, e.g. '0 8 * * 1-5'."
    )
    duration: Duration = Field(
        description="How long the window stays open (elapsed time, more than 0), e.g. 10h."
    )
    count: int = Field(
        description="Idle runners to keep while it is open: more than the base, at most "
        "max_runners. Where windows overlap, the largest count wins."
    )
    timezone: str = Field(
        default="UTC",
        description="The IANA time zone the cron expression is read in, e.g. Europe/Berlin.",
    )


class ScheduleConfig(ConfigModel):
    """``min_idle`` as a base and warm windows above it."""

    base: int = Field(default=0, ge=0, description="Idle runners to keep outside the windows.")
    windows: list[WindowConfig] = Field(
        min_length=1, description="The warm windows (at least one)."
    )


def _form(value: Any) -> str:
    """Which form ``min_idle`` is written in, by the type of its value."""
    if isinstance(value, list | tuple):
        return "list[windows]"
    if isinstance(value, dict | ScheduleConfig):
        return "mapping[schedule]"
    return "number[int]"


#: ``min_idle`` in any of its forms, as written.
MinIdleSetting: TypeAlias = Annotated[
    Annotated[int, Field(ge=0), Tag("number[int]")]
    | Annotated[list[WindowConfig], Field(min_length=1), Tag("list[windows]")]
    | Annotated[ScheduleConfig, Tag("mapping[schedule]")],
    Discriminator(_form),
]


def base_of(setting: int | list[WindowConfig] | ScheduleConfig) -> int:
    """The idle runners kept outside warm windows (all the time, for a plain number)."""
    if isinstance(setting, int):
        return setting
    return 0 if isinstance(setting, list) else setting.base


def schedule_of(setting: int | list[WindowConfig] | ScheduleConfig) -> MinIdleSchedule | None:
    """The domain form of a ``min_idle`` with windows (None for a plain number)."""
    if isinstance(setting, int):
        return None
    windows = setting if isinstance(setting, list) else setting.windows
    return MinIdleSchedule(
        base=base_of(setting),
        windows=tuple(WarmWindow(w.cron, w.duration, w.count, w.timezone) for w in windows),
    )


def check_min_idle(
    setting: int | list[WindowConfig] | ScheduleConfig, pool: str | None, max_runners: int | None
) -> None:
    """Raise the first problem of a pool's windows, naming the pool and the field: a bad cron
    expression, an unknown time zone, a duration of 0, a count not above the base or above
    ``max_runners`` (when known: ``None`` when it failed its own checks)."""
    if isinstance(setting, int):
        return  # (against max_runners: the pool's own check, which names both)
    base, windows, where = (
        (0, setting, ())
        if isinstance(setting, list)
        else (setting.base, setting.windows, ("windows",))
    )
    named = f"pool {pool!r}: " if pool else ""
    for index, window in enumerate(windows):
        at = (*where, index)
        try:
            check_cron(window.cron)
        except ValueError as error:
            raise fail(
                f"{named}{window.cron!r} is not a cron expression ({error})",
                CRON_FORM,
                at=(*at, "cron"),
                echo=False,
            ) from None
        try:
            time_zone(window.timezone)
        except ValueError as error:
            raise fail(
                f"{named}{error}", _zone_hint(window.timezone), at=(*at, "timezone"), echo=False
            ) from None
        if window.duration <= 0:
            raise fail(
                f"{named}a warm window's duration must be more than 0",
                "write how long the window stays open, e.g. duration: 10h",
                at=(*at, "duration"),
                echo=False,
            )
        if window.count <= base:
            raise fail(
                f"{named}count {window.count} is not more than the base ({base}), so the "
                "window would change nothing",
                "a window keeps more idle runners than the base: raise count"
                + (" or lower base" if base else " to 1 or more"),
                at=(*at, "count"),
                echo=False,
            )
        if max_runners is not None and window.count > max_runners:
            raise fail(
                f"{named}count {window.count} is more than max_runners ({max_runners})",
                f"lower count to {max_runners} or less, or raise max_runners",
                at=(*at, "count"),
                echo=False,
            )


def _zone_hint(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.7)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{suggestion}use an IANA time zone name, such as Europe/Berlin, America/New_York or "
        "UTC (the names under /usr/share/zoneinfo)"
    )
