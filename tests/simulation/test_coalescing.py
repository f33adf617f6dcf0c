"""The simulation's reconciles coalesce as the daemon's do: the daemon's rule
(``Controller.coalescing_wait``) applied to a modelled length, on the virtual clock."""

from __future__ import annotations

from itertools import pairwise

import pytest

from runnerscale.config import Config, parse_config
from runnerscale.controller.loops import COALESCE_CAP, DAEMON_COALESCE
from runnerscale.simulation import reconcile_cost
from runnerscale.simulation.engine import EPOCH, WEBHOOK_DELAY, Engine
from runnerscale.simulation.reconcile_cost import reconcile_length, rows_read
from runnerscale.simulation.trace import TraceJob

JOBS = 400
#: The burst's jobs are queued this far apart: each queued delivery is a kick of its own.
SPACING = 0.01
CONFIG = f"""\
github: {{api_url: "http://127.0.0.1:9", token: t}}
targets: [{{org: acme}}]
pools:
  - name: x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: {JOBS}
    idle_timeout: 60s
    local: {{command: [run.sh]}}
    simulation: {{boot_time: 30s}}
"""


def burst() -> list[TraceJob]:
    return [
        TraceJob(i * SPACING, "acme/app", ("self-hosted", "linux", "x64"), 20.0, 1000 + i, f"j{i}")
        for i in range(JOBS)
    ]


def config() -> Config:
    return parse_config(CONFIG, source="test.yaml", env={"HOME": "/tmp"})


def test_a_reconcile_lasts_in_proportion_to_the_rows_it_reads() -> None:
    # benchmarks/fleet.md: 59 ms at 10,000 runners + 10,000 queued jobs.
    assert reconcile_length(20_000) == pytest.approx(0.06)
    assert reconcile_length(20) < 1e-4  # a small world waits well under a millisecond


async def test_a_burst_of_deliveries_at_fleet_scale_costs_few_reconciles_as_in_the_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each row weighs as a hundred: the burst's 800 rows stand for a fleet of 80,000.
    monkeypatch.setattr(reconcile_cost, "RECONCILE_PER_ROW", 100 * reconcile_cost.RECONCILE_PER_ROW)
    engine = Engine(config(), burst())
    began: list[tuple[float, float]] = []  # each reconcile's start and modelled length
    reconcile_once = engine.controller.reconcile_once

    async def recorded() -> None:
        began.append((engine.clock.now(), reconcile_length(rows_read(engine.store))))
        await reconcile_once()

    monkeypatch.setattr(engine.controller, "reconcile_once", recorded)
    result = await engine.run()

    assert result.figures.served == JOBS
    assert engine.reconciles == len(began)
    first, last = EPOCH + WEBHOOK_DELAY, EPOCH + WEBHOOK_DELAY + (JOBS - 1) * SPACING
    during = [at for at, _ in began if first <= at <= last]
    # One kick per queued delivery, 400 of them; the reconciles: a few a second.
    assert len(during) < JOBS / 10
    cap = COALESCE_CAP * engine.controller.settings.reconcile_interval
    assert cap == pytest.approx(1.0)
    waits = []
    for (at, length), (then, _) in pairwise(began):
        wait = min(DAEMON_COALESCE * length, cap)
        # No reconcile begins within the daemon's wait after the previous one began ...
        assert then >= at + wait - 1e-9
        if wait >= 2 * SPACING and at + wait <= last:
            # ... and, kicked within it, one begins as that wait ends.
            assert then == pytest.approx(at + wait, abs=1e-9)
            waits.append(wait)
    assert waits
    assert max(waits) == pytest.approx(cap)  # the burst reached the cap
