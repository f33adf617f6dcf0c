"""How long a reconcile lasts in the simulation: modelled, never measured.

The daemon coalesces kicked reconciles by the length of the previous one
(:meth:`~runnerscale.controller.loops.Controller.coalescing_wait`): at fleet scale a reconcile
lasts tens of milliseconds, so a burst of deliveries costs a reconcile every half second, not
one each. A simulated reconcile takes no virtual time, and its CPU time would make a run depend
on the machine and the load, so the engine applies the daemon's rule to this model's length
instead: a deterministic function of what the reconcile reads (the live runners and the routed
jobs, the rows the daemon's tick walks), calibrated on the daemon's measured ticks.
"""

from __future__ import annotations

from runnerscale.model import LIVE_RUNNER_STATES
from runnerscale.protocols import Store
from runnerscale.scaler import ROUTED_JOB_STATES

#: The fixed part of a reconcile, in seconds: 0. The measured ticks do not separate one from
#: the noise (benchmarks/fleet.md: 8 ms at 1,000 runners + 1,000 queued jobs on SQLite, beside a
#: test run and without the heap settled, is within the per-row cost below), and with none a
#: small world (tens of rows) waits a fraction of a millisecond: its decisions stay where
#: they were before reconciles coalesced.
RECONCILE_BASE = 0.0
#: Seconds per row read (a live runner or a routed job). benchmarks/fleet.md, "Ticks with the
#: heap settled as the daemon settles it": a tick at 10,000 busy runners + 10,000 queued jobs
#: (20,000 rows) takes 59 ms on SQLite (median; 84 ms on Postgres), about 3 µs a row; "Ticks
#: with the view and the grouped scaler together": 8 ms at 1,000 + 1,000 (4 µs a row).
RECONCILE_PER_ROW = 3e-6


def rows_read(store: Store) -> int:
    """The rows a reconcile reads now: the live runners and the jobs the scaler routes
    (counted where the store keeps them, not read)."""
    runners = sum(store.count_runners(list(LIVE_RUNNER_STATES)).values())
    return runners + sum(store.count_jobs(list(ROUTED_JOB_STATES)).values())


def reconcile_length(rows: int) -> float:
    """The modelled length, in seconds, of a reconcile that reads ``rows`` rows."""
    return RECONCILE_BASE + RECONCILE_PER_ROW * rows
