"""The one wiring: the daemon and the simulation build their controller the same way."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from runnerscale.config import Config, parse_config
from runnerscale.controller.loops import DAEMON_COALESCE
from runnerscale.protocols import GitHubError, Provider
from runnerscale.simulation.engine import POLL_60, Engine, no_host_cap
from runnerscale.store.memory import MemoryStore
from runnerscale.wiring import build_controller, controller_settings, pool_runtime

CONFIG = """\
github: {api_url: "http://127.0.0.1:9", token: t}
targets: [{org: acme}]
poll_interval: 15s
pools:
  - name: x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: 10
    min_idle: 4
    local: {command: [run.sh], capacity: 3}
"""


def config() -> Config:
    return parse_config(CONFIG, source="test.yaml", env={"HOME": "/tmp"})


class Clock:
    def now(self) -> float:
        return 1000.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not here")


class GitHub:
    """Only what the wiring touches: the poll's hints."""

    poll_hints: Any = None


def test_the_host_capacity_caps_the_pool_and_its_min_idle() -> None:
    cfg = config()
    pool, spec = cfg.pools[0], cfg.pool_specs()[0]
    runtime = pool_runtime(pool, spec, cast(Provider, object()))
    assert (runtime.spec.max_runners, runtime.spec.min_idle) == (3, 3)
    uncapped = pool_runtime(pool, spec, cast(Provider, object()), capacity=no_host_cap)
    assert uncapped.spec == spec


def test_rerun_lost_jobs_reaches_the_pool_as_the_controller_runs_it() -> None:
    cfg = parse_config(
        CONFIG.replace("min_idle: 4", "min_idle: 4\n    rerun_lost_jobs: true"),
        source="test.yaml",
        env={"HOME": "/tmp"},
    )
    runtime = pool_runtime(cfg.pools[0], cfg.pool_specs()[0], cast(Provider, object()))
    assert runtime.rerun_lost_jobs is True
    default = config()
    assert not pool_runtime(
        default.pools[0], default.pool_specs()[0], cast(Provider, object())
    ).rerun_lost_jobs


def test_a_waiting_pool_takes_no_jobs() -> None:
    cfg = config()
    runtime = pool_runtime(cfg.pools[0], cfg.pool_specs()[0], cast(Provider, object()), "away")
    assert not runtime.spec.ready
    assert runtime.spec.min_idle == 0
    assert (runtime.healthy, runtime.last_error) == (False, "away")


def test_build_controller_wires_settings_pools_and_poll_hints() -> None:
    cfg = config()
    github = GitHub()
    controller = build_controller(
        cfg,
        store=MemoryStore(),
        github=cast(Any, github),
        clock=Clock(),
        providers={"x64": cast(Provider, object())},
    )
    assert controller.settings == controller_settings(cfg)
    assert controller.pools["x64"].spec.max_runners == 3
    assert github.poll_hints == controller.poll_hints


def test_the_simulation_runs_the_same_wiring() -> None:
    cfg = config()
    engine = Engine(cfg, [], policy=POLL_60)
    controller = engine.controller
    # Reconciles coalesce as the daemon's do (which sets DAEMON_COALESCE after building).
    settings = replace(
        controller_settings(cfg, poll_interval=60.0), reconcile_coalesce=DAEMON_COALESCE
    )
    assert controller.settings == settings
    expected = pool_runtime(
        cfg.pools[0], cfg.pool_specs()[0], engine.backends["x64"], capacity=no_host_cap
    )
    assert controller.pools["x64"] == expected
    engine.store.close()


def test_failed_cycles_back_off_alike() -> None:
    controller = build_controller(
        config(),
        store=MemoryStore(),
        github=cast(Any, GitHub()),
        clock=Clock(),
        providers={"x64": cast(Provider, object())},
    )
    assert controller.after_cycle("poll", None, 15.0) is None
    first = controller.after_cycle("poll", GitHubError("boom", retry_after=7.0), 15.0)
    assert first is not None
    assert first >= 7.0 + 15.0
    second = controller.after_cycle("poll", GitHubError("boom"), 15.0)
    assert second is not None
    assert second >= 15.0
    assert controller.errors["poll"] == 2
    assert controller.after_cycle("events", GitHubError("x", retry_after=3.0), None) == 3.0
