"""What a warm window buys: ``runnerscale simulate`` on a trace of morning bursts, with and
without a window, on the virtual clock (the schedule is asked at the simulated time)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runnerscale.config import Config
from runnerscale.simulation.results import Figures
from runnerscale.simulation.run import simulate
from runnerscale.simulation.trace import TraceJob, write_trace
from tests.simulation.test_simulate import CONFIG, X64, config, run_cli

#: Monday 2026-01-05, 07:00 in Berlin: the trace's ``at: 0``.
MONDAY_7_BERLIN = datetime(2026, 1, 5, 6, tzinfo=UTC).timestamp()
WINDOW = '    min_idle: [{cron: "45 7 * * 1-5", duration: 2h, count: 4, timezone: Europe/Berlin}]\n'
WARM = CONFIG.replace("    idle_timeout: 60s\n", "    idle_timeout: 60s\n" + WINDOW)


def morning_bursts() -> list[TraceJob]:
    """Four jobs at 08:00, 08:10 and 08:20 Berlin time, five minutes each."""
    return [
        TraceJob(3600.0 + 600.0 * burst, "acme/app", X64, 300.0, 100 + burst, f"job-{job}")
        for burst in range(3)
        for job in range(4)
    ]


async def figures(pools: Config, start: float = MONDAY_7_BERLIN) -> Figures:
    result = await simulate(pools, morning_bursts(), trace_name="mornings", seed=1, start=start)
    return result.result.figures


@pytest.mark.slow
async def test_a_window_before_the_bursts_buys_lower_waits_for_idle_cost() -> None:
    cold, warm = await figures(config()), await figures(config(WARM))
    assert cold.served == warm.served == 12
    # Without the window every job waits for a boot (30 s) and the webhook; with it, the
    # runners kept warm take the burst at once, and are ready again for the next one.
    assert min(cold.queue_waits) >= 30.0
    assert max(warm.queue_waits) <= 1.0 + 1e-6
    # ... for the idle runners kept from 07:45 to 09:45, paid for.
    assert warm.runner_seconds.idle > cold.runner_seconds.idle + 3 * 3600
    assert warm.cost > cold.cost


async def test_the_window_opens_at_the_simulated_time_of_day() -> None:
    # The same trace starting at midnight (the default start, a Thursday): its bursts come at
    # 01:00 to 01:20, the window at 07:45 opens after they are over and buys nothing.
    midnight = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    cold, warm = await figures(config(), midnight), await figures(config(WARM), midnight)
    assert warm.queue_waits == cold.queue_waits


@pytest.mark.slow
async def test_the_command_takes_the_start(tmp_path: Path) -> None:
    trace_file, config_file = tmp_path / "mornings.jsonl", tmp_path / "warm.yaml"
    write_trace(morning_bursts(), trace_file)
    config_file.write_text(WARM)

    async def warm(start: str, *more: str) -> tuple[int, str]:
        given = ("--trace", str(trace_file), "--config", str(config_file), "--start", start)
        return await run_cli(*given, *more)

    out = tmp_path / "warm.json"
    code, output = await warm("2026-01-05T07:00:00+01:00", "--json", str(out))
    assert code == 0, output
    assert json.loads(out.read_text())["queue_wait_s"]["max"] <= 1.0
    # A sweep keeps the windows of the keys it does not set (and a start without an offset
    # is UTC).
    code, output = await warm("2026-01-05T06:00:00", "--sweep", "idle_timeout=60s")
    assert code == 0, output
    assert "idle_timeout" in output
    assert "31.0" not in output  # no job waited for a boot
    code, output = await warm("monday")
    assert code == 2
    assert "--start 'monday' is not a date and time" in " ".join(output.split())
