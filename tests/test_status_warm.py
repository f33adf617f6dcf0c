"""``runnerscale status`` shows the ``min_idle`` in force: with warm windows, the window and
when it closes, or the base and when the next window opens, as the window's clocks show it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from typer.testing import CliRunner

from runnerscale import cli
from runnerscale.controller.loops import PoolStatus, Status
from runnerscale.warm import InForce, WarmWindow
from tests.test_config import ENV, EXAMPLE_PATH

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
    assert cli._min_idle_cell(pool(min_idle, warm)) == shown


def test_the_status_table_has_the_column(monkeypatch: pytest.MonkeyPatch) -> None:
    status = Status(
        pools=[PoolStatus("linux-x64", 4, 4, warm=InForce(4, WORKDAY, 0, ends_at=MONDAY_18_BERLIN))]
    )

    def call_daemon(config: object, method: str, path: str, body: object = None) -> Any:
        assert (method, path) == ("GET", "/api/v1/status")
        return asdict(status)

    monkeypatch.setattr(cli, "_call_daemon", call_daemon)
    result = CliRunner().invoke(
        cli.app, ["status", "-c", str(EXAMPLE_PATH)], env={**ENV, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "min idle" in result.output
    assert "4 until Mon 05 Jan 18:00 CET (window 0)" in result.output


def test_an_unknown_zone_on_this_host_shows_utc() -> None:
    elsewhere = WarmWindow("0 8 * * *", 3600.0, 2, "Not/Here")
    cell = cli._min_idle_cell(pool(2, InForce(2, elsewhere, 0, ends_at=MONDAY_18_BERLIN)))
    assert cell == "2 until Mon 05 Jan 17:00 UTC (window 0)"
