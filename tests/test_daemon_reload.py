"""A reload (SIGHUP) applies a pool's ``rerun_lost_jobs`` and its ``budget`` in place."""

from __future__ import annotations

from pathlib import Path

from runnerscale.config.schema import BudgetConfig
from runnerscale.daemon import Daemon
from tests.test_daemon_labels import local_config


async def test_reload_turns_rerun_lost_jobs_on_and_off(tmp_path: Path) -> None:
    off = local_config(tmp_path, "[self-hosted, linux]")
    pools = [off.pools[0].model_copy(update={"rerun_lost_jobs": True})]
    on = off.model_copy(update={"pools": pools})
    daemon = Daemon.build(off)
    try:
        pool = daemon.controller.pools["linux-x64"]
        assert pool.rerun_lost_jobs is False
        assert daemon.reload(on) == ["pool linux-x64: rerun_lost_jobs updated"]
        assert pool.rerun_lost_jobs is True
        assert daemon.reload(on) == []
        assert daemon.reload(off) == ["pool linux-x64: rerun_lost_jobs updated"]
        assert pool.rerun_lost_jobs is False
    finally:
        await daemon.stop()


async def test_reload_changes_a_pools_budget_in_place(tmp_path: Path) -> None:
    """What a pool whose budget is spent needs to launch more today: a higher budget."""
    plain = local_config(tmp_path, "[self-hosted, linux]")
    budget = BudgetConfig(per_day=50.0)
    capped = plain.model_copy(
        update={"pools": [plain.pools[0].model_copy(update={"budget": budget})]}
    )
    daemon = Daemon.build(plain)
    try:
        pool = daemon.controller.pools["linux-x64"]
        assert pool.spec.budget_per_day is None
        assert daemon.reload(capped) == ["pool linux-x64: limits updated"]
        assert pool.spec.budget_per_day == 50.0
        assert daemon.reload(plain) == ["pool linux-x64: limits updated"]
        assert pool.spec.budget_per_day is None
    finally:
        await daemon.stop()


async def test_a_drained_pool_stays_drained_through_a_reload(tmp_path: Path) -> None:
    """A reload changes a pool's limits in place: the operator's drain is not the config's."""
    plain = local_config(tmp_path, "[self-hosted, linux]")
    roomier = plain.model_copy(
        update={"pools": [plain.pools[0].model_copy(update={"max_runners": 2})]}
    )
    daemon = Daemon.build(plain)
    try:
        await daemon.controller.drain_pool("linux-x64")
        assert daemon.reload(roomier) == ["pool linux-x64: limits updated"]
        pool = daemon.controller.pools["linux-x64"]
        assert pool.drained is not None
        assert pool.spec_at(0.0).drained
    finally:
        await daemon.stop()
