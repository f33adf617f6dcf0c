"""How many examples a property test tries: all of them in CI, a sixth in the inner loop.

``scripts/check --quick`` sets ``RUNNERSCALE_QUICK_CHECK=1``; the scaler's property tests
(300 examples each) then try 50, which keeps them in the quick selection at a sixth of their
cost. CI, and any plain ``pytest`` run, tries every example.
"""

from __future__ import annotations

import os

QUICK = os.environ.get("RUNNERSCALE_QUICK_CHECK") == "1"


def examples(full: int) -> int:
    """``full`` in CI; a sixth of it (at least 10) under ``scripts/check --quick``."""
    return max(10, full // 6) if QUICK else full
