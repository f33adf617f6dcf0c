"""``min_idle`` with warm windows: its three forms, and the errors that name pool and field."""

from __future__ import annotations

import pytest
import yaml
from jsonschema import Draft202012Validator

from runnerscale.config import config_json_schema
from runnerscale.warm import MinIdleSchedule, WarmWindow
from tests.test_config import edit, errors_of, only, parse

WORKDAY = '{cron: "0 8 * * 1-5", duration: 10h, count: 4, timezone: Europe/Berlin}'
BERLIN_WORKDAY = WarmWindow("0 8 * * 1-5", 36000.0, 4, "Europe/Berlin")


def with_min_idle(value: str) -> str:
    return edit("min_idle: 0", f"min_idle: {value}")


def test_a_plain_number_is_unchanged() -> None:
    pool = parse(with_min_idle("2")).pools[0]
    assert (pool.min_idle, pool.min_idle_schedule) == (2, None)
    assert parse(with_min_idle("2")).pool_specs()[0].min_idle == 2


def test_a_list_of_windows_keeps_none_outside_them() -> None:
    config = parse(with_min_idle(f"[{WORKDAY}]"))
    assert config.pools[0].min_idle_schedule == MinIdleSchedule(0, (BERLIN_WORKDAY,))
    assert config.pool_specs()[0].min_idle == 0  # the base; the controller asks the schedule


def test_a_base_and_windows() -> None:
    config = parse(with_min_idle(f"{{base: 1, windows: [{WORKDAY}]}}"))
    assert config.pools[0].min_idle_schedule == MinIdleSchedule(1, (BERLIN_WORKDAY,))
    assert config.pool_specs()[0].min_idle == 1


def test_the_time_zone_defaults_to_utc_and_block_style_reads_the_same() -> None:
    text = edit(
        "    min_idle: 0\n",
        "    min_idle:\n"
        "      base: 1\n"
        "      windows:\n"
        '        - cron: "30 7 * * mon-fri"\n'
        "          duration: 1h30m\n"
        "          count: 3\n",
    )
    schedule = parse(text).pools[0].min_idle_schedule
    assert schedule == MinIdleSchedule(1, (WarmWindow("30 7 * * mon-fri", 5400.0, 3, "UTC"),))


def test_a_dumped_config_validates_again() -> None:
    config = parse(with_min_idle(f"{{base: 1, windows: [{WORKDAY}]}}"))
    again = type(config).model_validate(config.model_dump())
    assert again.pools[0].min_idle_schedule == config.pools[0].min_idle_schedule


# (min_idle as written, path, words of the message, words of the hint)
WINDOW_ERRORS = {
    "bad cron": (
        '[{cron: "0 25 * * 1-5", duration: 10h, count: 4}]',
        "pools[0].min_idle[0].cron",
        "pool 'linux-x64': '0 25 * * 1-5' is not a cron expression (bad hour)",
        "write five fields, minute hour day-of-month month day-of-week",
    ),
    "six cron fields": (
        '[{cron: "0 0 8 * * 1-5", duration: 10h, count: 4}]',
        "pools[0].min_idle[0].cron",
        "is not a cron expression (it has 6 fields, not 5)",
        "e.g. '0 8 * * 1-5'",
    ),
    "unknown time zone": (
        '{base: 1, windows: [{cron: "0 8 * * *", duration: 1h, count: 2, timezone: Europe/Berln}]}',
        "pools[0].min_idle.windows[0].timezone",
        "pool 'linux-x64': 'Europe/Berln' is not a known time zone",
        "did you mean 'Europe/Berlin'? use an IANA time zone name",
    ),
    "zero duration": (
        '[{cron: "0 8 * * *", duration: 0s, count: 2}]',
        "pools[0].min_idle[0].duration",
        "pool 'linux-x64': a warm window's duration must be more than 0",
        "duration: 10h",
    ),
    "negative duration": (
        '[{cron: "0 8 * * *", duration: -2h, count: 2}]',
        "pools[0].min_idle[0].duration",
        "must not be negative",
        "write duration as 30s, 2m",
    ),
    "count above max_runners": (
        f'[{WORKDAY}, {{cron: "0 12 * * *", duration: 1h, count: 5}}]',
        "pools[0].min_idle[1].count",
        "pool 'linux-x64': count 5 is more than max_runners (4)",
        "lower count to 4 or less, or raise max_runners",
    ),
    "count not above the base": (
        '{base: 2, windows: [{cron: "0 8 * * *", duration: 1h, count: 2}]}',
        "pools[0].min_idle.windows[0].count",
        "pool 'linux-x64': count 2 is not more than the base (2), so the window would change "
        "nothing",
        "raise count or lower base",
    ),
    "count zero": (
        '[{cron: "0 8 * * *", duration: 1h, count: 0}]',
        "pools[0].min_idle[0].count",
        "count 0 is not more than the base (0)",
        "raise count to 1 or more",
    ),
    "misspelt key in a window": (
        '{base: 1, windows: [{cron: "0 8 * * *", duration: 1h, count: 2, timzone: UTC}]}',
        "pools[0].min_idle.windows[0].timzone",
        "is not a known key",
        "did you mean 'timezone'?",
    ),
    "misspelt base": (
        f"{{bse: 1, windows: [{WORKDAY}]}}",
        "pools[0].min_idle.bse",
        "is not a known key",
        "did you mean 'base'?",
    ),
    "no windows": (
        "[]",
        "pools[0].min_idle",
        "must not be empty",
        "give at least one item",
    ),
    "a base without windows": (
        "{base: 1}",
        "pools[0].min_idle.windows",
        "is required",
        "add 'windows: ...' under pools[0].min_idle",
    ),
    "missing cron": (
        "[{duration: 1h, count: 2}]",
        "pools[0].min_idle[0].cron",
        "is required",
        "add 'cron: \"0 8 * * 1-5\"' under pools[0].min_idle[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(WINDOW_ERRORS))
def test_a_bad_window_names_the_pool_the_field_and_the_fix(case: str) -> None:
    value, path, message, hint = WINDOW_ERRORS[case]
    problem = only(errors_of(with_min_idle(value)))
    assert (problem.line, problem.path) == (16, path)
    assert message in problem.message
    assert hint in problem.hint


def test_the_line_is_the_window_field_in_block_style() -> None:
    text = edit(
        "    min_idle: 0\n",
        "    min_idle:\n"
        '      - cron: "0 8 * * 1-5"\n'
        "        duration: 10h\n"
        "        count: 4\n"
        "        timezone: Europe/Berlin\n"
        '      - cron: "0 9 * * *"\n'
        "        duration: 1h\n"
        "        count: 2\n"
        "        timezone: Mars/Olympus\n",
    )
    problem = only(errors_of(text))
    assert (problem.line, problem.path) == (24, "pools[0].min_idle[1].timezone")


def test_the_json_schema_takes_the_three_forms() -> None:
    validator = Draft202012Validator(config_json_schema())
    for value in ("3", f"[{WORKDAY}]", f"{{base: 1, windows: [{WORKDAY}]}}"):
        data = yaml.safe_load(with_min_idle(value))
        assert [error.message for error in validator.iter_errors(data)] == [], value
    for value in ("-1", "[]", "{base: 1}", '[{cron: "0 8 * * *", count: 2}]'):
        assert not validator.is_valid(yaml.safe_load(with_min_idle(value))), value
