"""What a scale-set pool shows and where it is wired: the status line, the gauge, the daemon's
factory of Actions-service clients, and simulate taking scale-set pools."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from runnerscale.cli import app
from runnerscale.clock import VirtualClock
from runnerscale.config import Config, parse_config
from runnerscale.controller.loops import PoolStatus, ScaleSetStatus, Status
from runnerscale.daemon import Daemon, scale_set_apis
from runnerscale.metrics import Metrics
from runnerscale.statusview import scale_set_lines

CONFIG = """\
github:
  token: ghp_0123456789abcdef0123456789abcdef0123
targets:
  - org: acme
  - org: other
pools:
  - name: scaleset-x64
    demand: scale_set
    scale_set: {name: runnerscale-x64, labels: [linux, x64]}
    provider: local
    local: {command: [runnerscale, sim-runner], capacity: 4}
    max_runners: 4
  - name: scaleset-arm
    demand: scale_set
    scale_set: {name: runnerscale-arm64}
    provider: local
    local: {command: [runnerscale, sim-runner], capacity: 4}
    max_runners: 4
  - name: hooks
    labels: [self-hosted, linux]
    provider: local
    local: {command: [runnerscale, sim-runner], capacity: 4}
    max_runners: 4
"""


def config() -> Config:
    return parse_config(CONFIG, source="rs.yaml", env={})


def status() -> Status:
    return Status(
        pools=[
            PoolStatus(
                name="scaleset-x64",
                max_runners=4,
                min_idle=0,
                scale_set=ScaleSetStatus("runnerscale-x64", 12, 3, "open"),
            ),
            PoolStatus(
                name="scaleset-arm",
                max_runners=4,
                min_idle=0,
                scale_set=ScaleSetStatus(
                    "runnerscale-arm64", None, 0, "backing off", "502 Bad Gateway"
                ),
            ),
            PoolStatus(name="hooks", max_runners=4, min_idle=0),
        ]
    )


def test_the_status_shows_each_scale_set_its_jobs_and_session() -> None:
    pools = [asdict(pool) for pool in status().pools]
    assert scale_set_lines(pools) == [
        "pool scaleset-x64: scale set runnerscale-x64 (id 12): 3 jobs assigned; session open",
        "pool scaleset-arm: scale set runnerscale-arm64: 0 jobs assigned; session backing off "
        "(last error: 502 Bad Gateway)",
    ]


def test_the_assigned_jobs_gauge_is_per_scale_set_pool() -> None:
    metrics = Metrics(status, lambda: None, pools=["scaleset-x64", "scaleset-arm", "hooks"])
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == "runnerscale_scale_set_assigned_jobs"
    }
    assert samples == {
        ("runnerscale_scale_set_assigned_jobs", (("pool", "scaleset-x64"),)): 3.0,
        ("runnerscale_scale_set_assigned_jobs", (("pool", "scaleset-arm"),)): 0.0,
    }


def test_the_daemon_builds_one_client_at_the_first_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[Any, ...]] = []

    class ScaleSetClient:
        def __init__(self, github: object, target: object, *, clock: object) -> None:
            made.append((github, target, clock))

    monkeypatch.setattr("runnerscale.daemon.ScaleSetClient", ScaleSetClient)
    github, clock = object(), VirtualClock()
    apis = scale_set_apis(config(), github, clock)  # type: ignore[arg-type]
    assert sorted(apis) == ["scaleset-arm", "scaleset-x64"]
    assert apis["scaleset-arm"] is apis["scaleset-x64"]  # one per target
    assert made == [(github, config().to_targets()[0], clock)]


def test_the_daemon_builds_one_client_per_target_of_a_scale_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[object] = []

    class ScaleSetClient:
        def __init__(self, github: object, target: object, *, clock: object) -> None:
            made.append(target)

    monkeypatch.setattr("runnerscale.daemon.ScaleSetClient", ScaleSetClient)
    two = parse_config(
        CONFIG.replace("{name: runnerscale-arm64}", "{name: runnerscale-arm64, target: org:other}"),
        source="rs.yaml",
        env={},
    )
    apis = scale_set_apis(two, object(), VirtualClock())  # type: ignore[arg-type]
    assert apis["scaleset-arm"] is not apis["scaleset-x64"]
    assert made == two.to_targets()  # org:acme for x64, org:other for arm


def test_no_client_without_scale_set_pools() -> None:
    webhooks_only = parse_config(
        CONFIG[: CONFIG.index("  - name: scaleset-x64")]
        + CONFIG[CONFIG.index("  - name: hooks") :],
        source="rs.yaml",
        env={},
    )
    assert scale_set_apis(webhooks_only, object(), VirtualClock()) == {}  # type: ignore[arg-type]


def test_simulate_takes_a_config_with_scale_set_pools(tmp_path: Path) -> None:
    (tmp_path / "rs.yaml").write_text(CONFIG)
    (tmp_path / "trace.jsonl").write_text(
        '{"at": 0, "repo": "acme/app", "labels": ["runnerscale-x64"], "duration": 60, '
        '"run_id": 1, "job": "build"}\n'
    )
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--trace",
            str(tmp_path / "trace.jsonl"),
            "-c",
            str(tmp_path / "rs.yaml"),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "r.json").read_text())
    assert (body["jobs"], body["served"]) == (1, 1)


async def test_the_daemons_metrics_count_listener_failures_only_with_scale_set_pools(
    tmp_path: Path,
) -> None:
    """The ``scaleset`` loop's failures start at 0 in a daemon with scale-set pools (whose
    listeners it runs), and a daemon without any has no such series."""
    webhooks_only = (
        CONFIG[: CONFIG.index("  - name: scaleset-x64")] + CONFIG[CONFIG.index("  - name: hooks") :]
    )
    for text, present in ((CONFIG, True), (webhooks_only, False)):
        state = f"state: sqlite:///{tmp_path}/{present}.db\n"
        built = Daemon.build(parse_config(text + state, source="rs.yaml", env={}))
        try:
            exposed = built.metrics.render().decode()
        finally:
            await built.stop()
        assert ('runnerscale_loop_errors_total{loop="scaleset"} 0.0' in exposed) is present
        assert 'runnerscale_loop_errors_total{loop="worker"} 0.0' in exposed
