"""A reload (SIGHUP) applies a pool's ``rerun_lost_jobs`` in place."""

from __future__ import annotations

from pathlib import Path

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
