"""The chaos benchmark, bounded for CI (issue 12): a short storm with the daemon killed ten
times must end with every job served (a job lost with a runner the storm killed: re-run once
and served), no busy runner removed, nothing left and no secret anywhere.
``benchmarks/chaos.py`` runs the long one and writes ``benchmarks/chaos.md``."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.chaos import Plan, render, run
from rich.console import Console

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


async def test_a_short_storm_with_ten_daemon_kills_serves_every_job_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    plan = Plan(seed=3, jobs=16, span=60.0, kills=10, drain=240.0)
    outcome = await run(plan, tmp_path, Console(stderr=True))
    print(render(plan, outcome))
    assert outcome.daemon_kills == plan.kills
    assert outcome.passed, render(plan, outcome)
