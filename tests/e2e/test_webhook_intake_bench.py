"""The intake benchmark at tiny sizes, so that it keeps working (``benchmarks/intake.py``
writes the figures of ``benchmarks/intake.md``): both receivers answer every delivery, and
the daemon killed with SIGKILL mid-load loses no acknowledged delivery, nor drops one as a
duplicate when it is delivered again."""

from __future__ import annotations

import pytest
from benchmarks.intake import parse, run

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def test_the_intake_benchmark_runs_and_loses_nothing_to_kill_9() -> None:
    args = parse(["--deliveries", "300", "--crash", "300", "--kill-after", "0.3", "--core", "0"])
    result = await run(args)
    assert result["bare"]["statuses"] == {202: 300}
    assert result["daemon"]["statuses"] == {202: 300}
    assert result["ratio"] > 0
    crash = result["crash"]
    assert crash["lost"] == 0
    assert crash["resent_duplicate"] == 0
    assert crash["acknowledged"] + crash["resent_accepted"] <= 300
