"""The start-up benchmark at its smallest (one start per case), so it keeps working:
``benchmarks/startup.py`` runs it at size and writes ``benchmarks/startup.md``."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.startup import CASES, render, run

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # about 10 s: three daemon starts


async def test_one_start_per_case_reaches_a_healthy_daemon_and_is_reported(
    tmp_path: Path,
) -> None:
    outcome = await run(1, tmp_path, top=5, phase_runs=1)
    for case in CASES:
        (sample,) = outcome.samples["this", case]
        assert 0 < sample.cpu < sample.wall + 1
        assert 0 <= sample.runnable < sample.wall
        assert sample.poller_cpu >= 0
    assert (tmp_path / "state" / "state.db").is_file()
    assert any(name.startswith("runnerscale") for name, _ in outcome.imports)
    marked = [name for name, _, _ in outcome.phases["this"]]
    assert marked[0] == "interpreter up"
    assert marked[-1] == "first /healthz"
    assert "credentials check ends" in marked
    text = render(outcome, "python benchmarks/startup.py --runs 1")
    assert "| this | fresh |" in text
    assert "| this | existing |" in text
    assert "Bytecode: compiled ahead" in text
    # The code started is a copy, compiled ahead.
    assert (tmp_path / "code" / "this" / "runnerscale" / "__pycache__").is_dir()
