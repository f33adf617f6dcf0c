"""``runnerscale status`` (its view, :mod:`runnerscale.statusview`) shows the ``min_idle`` in
force: with warm windows, the window and when it closes, or the base and when the next window
opens, as the window's clocks show it."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Any

import pytest
from rich.console import Console

from runnerscale import statusview
from runnerscale.controller.loops import PoolStatus, Status
from runnerscale.warm import InForce, WarmWindow

WORKDAY = WarmWindow("0 8 * * 1-5", 36000.0, 4, "Europe/Berlin")
MONDAY_18_BERLIN = 1_767_632_400.0  # 2026-01-05T17:00:00Z
TUESDAY_8_BERLIN = 1_767_682_800.0  # 2026-01-06T07:00:00Z


def pool(min_idle: int, warm: InForce | None) -> dict[str, Any]:
    return asdict(PoolStatus("linux-x64", max_runners=4, min_idle=min_idle, warm=warm))


@pytest.mark.parametrize(
    ("min_idle", "warm", "shown"),
    [
        (2, None, "2"),
        (
            4,
            InForce(4, WORKDAY, 0, ends_at=MONDAY_18_BERLIN),
            "4 until Mon 05 Jan 18:00 CET (window 0)",
        ),
        (
            1,
            InForce(1, next_window=WORKDAY, next_index=0, next_starts_at=TUESDAY_8_BERLIN),
            "1; 4 from Tue 06 Jan 08:00 CET (window 0)",
        ),
        (1, InForce(1), "1"),
    ],
)
def test_the_min_idle_cell(min_idle: int, warm: InForce | None, shown: str) -> None:
    assert statusview.min_idle_cell(pool(min_idle, warm)) == shown


def test_the_status_table_has_the_column() -> None:
    status = Status(
        pools=[PoolStatus("linux-x64", 4, 4, warm=InForce(4, WORKDAY, 0, ends_at=MONDAY_18_BERLIN))]
    )
    output = io.StringIO()
    statusview.print_status(Console(file=output, width=200), asdict(status), MONDAY_18_BERLIN)
    assert "min idle" in output.getvalue()
    assert "4 until Mon 05 Jan 18:00 CET (window 0)" in output.getvalue()


def test_an_unknown_zone_on_this_host_shows_utc() -> None:
    elsewhere = WarmWindow("0 8 * * *", 3600.0, 2, "Not/Here")
    cell = statusview.min_idle_cell(pool(2, InForce(2, elsewhere, 0, ends_at=MONDAY_18_BERLIN)))
    assert cell == "2 until Mon 05 Jan 17:00 UTC (window 0)"
