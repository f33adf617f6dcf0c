"""The scaler's rules for a pool an operator drained (``PoolSpec.drained``): nothing created,
every idle runner removed whatever its idle time, busy ones left to finish, queued jobs kept
waiting (routed to it, counted)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runnerscale.model import LabelGroup, RunnerState
from runnerscale.scaler import decide
from tests.test_scaler import BOOTING, BUSY, IDLE, X64, pool, queued, runner

FINISHED = RunnerState.FINISHED
NOW = 1000.0


def test_queued_jobs_and_min_idle_create_nothing_and_stay_routed_to_it() -> None:
    spec = replace(pool("x64", min_idle=2), drained=True)
    decision = decide([spec], queued(3), [], NOW)
    x64 = decision.pools["x64"]
    assert (x64.create, x64.create_on, x64.remove, x64.queued, x64.desired) == (0, (), (), 3, 0)
    assert decision.job_pools == {1: "x64", 2: "x64", 3: "x64"}
    assert decision.unmatched == ()
    assert x64.reason == (
        "3 queued, 0 busy, 0 on the way, 0 idle: drained (3 queued wait); "
        "runnerscale pools resume x64 puts it back in service"
    )


def test_every_idle_runner_goes_now_oldest_idle_first_busy_and_booting_are_kept() -> None:
    spec = replace(pool("x64", min_idle=1, idle_timeout=3600.0), drained=True)
    runners = [
        runner("a", IDLE, idle_since=NOW - 1),
        runner("b", IDLE, idle_since=NOW - 5),
        runner("c", BUSY),
        runner("d", BOOTING),
        runner("e", FINISHED),
    ]
    x64 = decide([spec], queued(1), runners, NOW).pools["x64"]
    assert x64.remove == ("b", "a")  # idle 5s and 1s: no timeout, no min_idle holds them
    assert x64.reap == ("e",)
    assert (x64.create, x64.desired, x64.busy) == (0, 1, 1)
    assert "drained (1 queued wait, remove 2 idle, 1 busy finishes its job)" in x64.reason


def test_nothing_is_held_back_it_is_drained() -> None:
    """Neither the budget nor the failure backoff is named: the pool would create nothing."""
    spec = replace(pool("x64"), drained=True, budget_per_day=1.0)
    x64 = decide([spec], queued(2), [], NOW, backoff={"x64": NOW + 60}, spent={"x64": 5.0})
    assert (x64.pools["x64"].held_back, x64.pools["x64"].held_back_by) == (0, "")


def test_a_drained_scale_set_pool_creates_nothing_for_its_assigned_jobs() -> None:
    spec = replace(pool("x64"), drained=True, assigned_jobs=4)
    x64 = decide([spec], [], [runner("a", BUSY)], NOW).pools["x64"]
    assert (x64.create, x64.queued, x64.desired) == (0, 3, 1)
    assert "4 assigned to the scale set" in x64.reason


def test_a_drained_pool_over_several_hosts_creates_nothing_either() -> None:
    spec = replace(pool("x64", min_idle=1), drained=True, groups=(LabelGroup(frozenset(), 4),))
    x64 = decide([spec], queued(2), [runner("a", IDLE, idle_since=NOW)], NOW).pools["x64"]
    assert (x64.create, x64.create_labels, x64.remove) == (0, (), ("a",))


@pytest.mark.parametrize("busy", [0, 2])
def test_other_pools_are_unchanged(busy: int) -> None:
    """Only the drained pool is held: the same input without the drain decides as before."""
    others = [pool("gpu", (*X64, "gpu"), order=1)]
    runners = [runner(f"b{i}", BUSY, "gpu") for i in range(busy)]
    jobs = queued(2, (*X64, "gpu"))
    with_drain = decide([replace(pool("x64"), drained=True), *others], jobs, runners, NOW)
    without = decide([pool("x64"), *others], jobs, runners, NOW)
    assert with_drain.pools["gpu"] == without.pools["gpu"]
