"""A reload (SIGHUP) changes a pool's warm windows in place, as it changes its other limits;
the daemon builds them as the simulation does, held below the host's capacity."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from runnerscale.config import Config
from runnerscale.daemon import Daemon
from runnerscale.protocols import Provider
from runnerscale.warm import MinIdleSchedule, WarmWindow
from runnerscale.wiring import pool_runtime
from tests.test_daemon_labels import local_config
from tests.test_wiring import config as capped_config

MONDAY_9_BERLIN = 1_767_600_000.0  # 2026-01-05T08:00:00Z


def with_min_idle(config: Config, min_idle: object) -> Config:
    pool = type(config.pools[0]).model_validate(
        {**config.pools[0].model_dump(), "min_idle": min_idle}
    )
    return config.model_copy(update={"pools": [pool]})


def window(count: int) -> dict[str, object]:
    return {"cron": "0 8 * * 1-5", "duration": "10h", "count": count, "timezone": "Europe/Berlin"}


async def test_reload_changes_the_windows_in_place(tmp_path: Path) -> None:
    plain = local_config(tmp_path, "[self-hosted, linux]")
    plain = plain.model_copy(
        update={"pools": [plain.pools[0].model_copy(update={"max_runners": 2})]}
    )
    daemon = Daemon.build(with_min_idle(plain, 0))
    try:
        pool = daemon.controller.pools["linux-x64"]
        assert pool.warm is None
        assert pool.min_idle_at(MONDAY_9_BERLIN) is None

        two = with_min_idle(plain, {"base": 1, "windows": [window(2)]})
        assert daemon.reload(two) == ["pool linux-x64: limits updated"]
        assert pool.warm == MinIdleSchedule(
            1, (WarmWindow("0 8 * * 1-5", 36000.0, 2, "Europe/Berlin"),)
        )
        assert pool.spec.min_idle == 1  # the base
        assert pool.spec_at(MONDAY_9_BERLIN).min_idle == 2
        assert daemon.reload(two) == []

        one = with_min_idle(plain, [window(1)])
        assert daemon.reload(one) == ["pool linux-x64: limits updated"]
        assert pool.spec_at(MONDAY_9_BERLIN).min_idle == 1  # not what was cached before

        assert daemon.reload(with_min_idle(plain, 0)) == ["pool linux-x64: limits updated"]
        assert pool.warm is None
        assert pool.spec_at(MONDAY_9_BERLIN).min_idle == 0
    finally:
        await daemon.stop()


def test_the_windows_are_held_below_the_host_capacity() -> None:
    config = with_min_idle(capped_config(), {"base": 2, "windows": [window(8)]})  # capacity 3
    runtime = pool_runtime(config.pools[0], config.pool_specs()[0], cast(Provider, object()))
    assert runtime.warm == MinIdleSchedule(
        2, (WarmWindow("0 8 * * 1-5", 36000.0, 3, "Europe/Berlin"),)
    )
    assert runtime.spec_at(MONDAY_9_BERLIN).min_idle == 3
    assert runtime.spec_at(MONDAY_9_BERLIN + 12 * 3600).min_idle == 2
