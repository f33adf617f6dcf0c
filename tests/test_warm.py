"""Warm windows: the ``min_idle`` in force at a moment, across overlaps and clock changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerscale.warm import (
    InForce,
    MinIdleSchedule,
    ScheduleCache,
    WarmWindow,
    check_cron,
    time_zone,
)

BERLIN = "Europe/Berlin"
HOUR = 3600.0
WORKDAY = WarmWindow("0 8 * * 1-5", 10 * HOUR, 4, BERLIN)


def utc(text: str) -> float:
    """Seconds since the epoch of a UTC time written as ``2026-01-05T07:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_the_base_is_in_force_outside_the_window_and_says_when_the_next_opens() -> None:
    schedule = MinIdleSchedule(base=1, windows=(WORKDAY,))
    # Monday 2026-01-05, 07:59 in Berlin (CET, UTC+1).
    before, until = schedule.holding(utc("2026-01-05T06:59"))
    assert before == InForce(
        1, next_window=WORKDAY, next_index=0, next_starts_at=utc("2026-01-05T07:00")
    )
    assert until == utc("2026-01-05T07:00")


def test_the_window_is_in_force_from_its_start_until_its_duration_has_passed() -> None:
    schedule = MinIdleSchedule(base=1, windows=(WORKDAY,))
    opened = schedule.at(utc("2026-01-05T07:00"))
    assert opened == InForce(4, WORKDAY, 0, ends_at=utc("2026-01-05T17:00"))
    assert schedule.at(utc("2026-01-05T16:59:59")).count == 4
    closed = schedule.at(utc("2026-01-05T17:00"))
    assert (closed.count, closed.next_starts_at) == (1, utc("2026-01-06T07:00"))


def test_the_weekend_waits_for_monday() -> None:
    saturday = MinIdleSchedule(windows=(WORKDAY,)).at(utc("2026-01-10T09:00"))
    assert (saturday.count, saturday.next_starts_at) == (0, utc("2026-01-12T07:00"))


def test_overlapping_windows_the_largest_count_wins_the_first_declared_on_a_tie() -> None:
    day = WarmWindow("0 8 * * *", 10 * HOUR, 2)
    lunch = WarmWindow("0 12 * * *", 2 * HOUR, 5)
    also_lunch = WarmWindow("0 12 * * *", 3 * HOUR, 5)
    schedule = MinIdleSchedule(windows=(day, lunch, also_lunch))
    assert schedule.at(utc("2026-01-05T09:00")) == InForce(
        2, day, 0, ends_at=utc("2026-01-05T18:00")
    )
    assert schedule.at(utc("2026-01-05T13:00")) == InForce(
        5, lunch, 1, ends_at=utc("2026-01-05T14:00")
    )
    assert schedule.at(utc("2026-01-05T14:30")) == InForce(
        5, also_lunch, 2, ends_at=utc("2026-01-05T15:00")
    )
    assert schedule.at(utc("2026-01-05T16:00")).window == day


def test_a_start_the_clocks_skip_opens_the_window_when_they_jump() -> None:
    """Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never
    happens that day, so the window opens at 03:00 CEST and lasts its hour from there."""
    night = WarmWindow("30 2 * * *", HOUR, 3, BERLIN)
    schedule = MinIdleSchedule(windows=(night,))
    assert schedule.at(utc("2026-03-28T01:30")).count == 3  # 02:30 CET the day before
    waiting = schedule.at(utc("2026-03-29T00:59"))
    assert (waiting.count, waiting.next_starts_at) == (0, utc("2026-03-29T01:00"))
    assert schedule.at(utc("2026-03-29T01:00")) == InForce(
        3, night, 0, ends_at=utc("2026-03-29T02:00")
    )
    assert schedule.at(utc("2026-03-29T02:00")).next_starts_at == utc("2026-03-30T00:30")


def test_a_start_the_clocks_repeat_opens_the_window_once_at_the_first() -> None:
    """Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET again (01:00 UTC), so 02:30
    happens at 00:30 UTC and again at 01:30 UTC; the window opens at the first only."""
    night = WarmWindow("30 2 * * *", HOUR, 3, BERLIN)
    schedule = MinIdleSchedule(windows=(night,))
    assert schedule.at(utc("2026-10-25T00:29")).next_starts_at == utc("2026-10-25T00:30")
    first = InForce(3, night, 0, ends_at=utc("2026-10-25T01:30"))
    assert schedule.at(utc("2026-10-25T00:30")) == first
    # 02:15 CET, the second time the clocks show it: still the opening of 02:30 CEST.
    assert schedule.at(utc("2026-10-25T01:15")) == first
    # 02:45 CET: the second 02:30 opened nothing.
    after = schedule.at(utc("2026-10-25T01:45"))
    assert (after.count, after.next_starts_at) == (0, utc("2026-10-26T01:30"))


def test_the_duration_is_elapsed_time_across_a_clock_change() -> None:
    early = WarmWindow("0 1 * * *", 3 * HOUR, 2, BERLIN)  # 01:00 CET is 00:00 UTC
    opened = MinIdleSchedule(windows=(early,)).at(utc("2026-03-29T00:00"))
    assert opened.ends_at == utc("2026-03-29T03:00")  # 05:00 CEST: three hours later


def test_a_window_opening_again_before_it_closes_stays_in_force() -> None:
    hourly = WarmWindow("0 * * * *", 2 * HOUR, 1)
    in_force, until = MinIdleSchedule(windows=(hourly,)).holding(utc("2026-01-05T10:30"))
    assert (in_force.count, in_force.ends_at) == (1, utc("2026-01-05T12:00"))
    assert until == utc("2026-01-05T11:00")  # it opens again: a new end


def test_no_window_the_base_holds_forever() -> None:
    assert MinIdleSchedule(base=2).holding(0.0) == (InForce(2), float("inf"))


def test_capped_and_peak() -> None:
    schedule = MinIdleSchedule(base=3, windows=(WORKDAY, WarmWindow("0 9 * * *", HOUR, 9)))
    assert schedule.peak == 9
    capped = schedule.capped(4)
    assert (capped.base, [w.count for w in capped.windows], capped.peak) == (3, [4, 4], 4)


def test_the_cache_computes_again_only_when_a_window_opens_or_closes() -> None:
    calls: list[float] = []

    class Counting(MinIdleSchedule):
        def holding(self, now: float) -> tuple[InForce, float]:
            calls.append(now)
            return super().holding(now)

    cache = ScheduleCache(Counting(base=1, windows=(WORKDAY,)))
    monday = utc("2026-01-05T06:00")
    assert cache.at(monday).count == 1
    assert cache.at(monday + 30 * 60).count == 1
    assert cache.at(utc("2026-01-05T07:00")).count == 4
    assert cache.at(utc("2026-01-05T12:00")).count == 4
    assert len(calls) == 2
    assert cache.at(monday).count == 1  # the clock went back: computed again
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 25 * * *", "bad hour"),
        ("0 8 * *", "4 fields, not 5"),
        ("0 0 8 * * 1-5", "6 fields, not 5"),
        ("@daily", "1 fields, not 5"),
        ("0 8 * * MON-XYZ", "bad day-of-week"),
    ],
)
def test_check_cron_says_what_is_wrong(expression: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_cron(expression)


def test_check_cron_takes_names_and_ranges() -> None:
    check_cron("30 7 * * mon-fri")
    check_cron("0 8,13 1-15 jan-mar *")


@pytest.mark.parametrize("name", ["Europe/Berln", "Mars/Olympus", "../etc/passwd", ""])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a known time zone"):
        time_zone(name)


_YEAR_2026 = (utc("2026-01-01T00:00"), utc("2026-12-31T00:00"))


@settings(max_examples=60, deadline=None)
@given(
    now=st.floats(*_YEAR_2026),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 30, 45]),
    duration=st.sampled_from([HOUR / 2, HOUR, 5 * HOUR, 30 * HOUR]),
    zone=st.sampled_from([BERLIN, "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
def test_what_is_in_force_holds_until_the_next_change_and_matches_the_openings(
    now: float, hour: int, minute: int, duration: float, zone: str
) -> None:
    window = WarmWindow(f"{minute} {hour} * * *", duration, 2, zone)
    schedule = MinIdleSchedule(base=1, windows=(window,))
    held, until = schedule.holding(now)
    started = window.last_start(now)
    opened = started is not None and started <= now < started + duration
    assert held.count == (2 if opened else 1)
    assert now < until
    assert schedule.at(min(until, now + 400 * 86400) - 1e-3).count == held.count
    if not opened:
        assert held.next_starts_at == window.next_start(now) == until
