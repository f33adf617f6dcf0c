"""``runnerscale simulate`` with scale-set pools: the daemon's listeners and registrars over the
in-process Actions service, on the virtual clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runnerscale.fakegithub.accounting import ACTIONS_SERVICE_PREFIX
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.model import match_pool
from runnerscale.simulation.demand import (
    VARIANTS,
    Replay,
    as_scale_set_pools,
    as_scale_sets,
    compare_demand_sources,
)
from runnerscale.simulation.engine import Engine
from runnerscale.simulation.results import Figures
from runnerscale.simulation.run import simulate
from runnerscale.simulation.trace import TraceJob
from tests.simulation.test_simulate import CONFIG, config, run_cli, trace

#: test_simulate's pool of ten, as a scale-set pool.
SCALE_SET_CONFIG = CONFIG.replace(
    "    labels: [self-hosted, linux, x64]\n",
    "    demand: scale_set\n"
    "    scale_set: {name: runnerscale-x64, labels: [self-hosted, linux, x64]}\n",
)
assert "demand: scale_set" in SCALE_SET_CONFIG

#: The REST operations that read jobs: a scale-set pool needs none of them.
JOB_POLLING = (
    "repos/list-for-org",
    "actions/list-workflow-runs-for-repo",
    "actions/list-jobs-for-workflow-run",
    "actions/get-job-for-workflow-run",
)


def short_trace() -> list:  # type: ignore[type-arg]
    """Twelve jobs, one every 40 s, each 90 s long."""
    return trace(*((i * 40.0, 90.0) for i in range(12)))


def actions(figures: Figures, operation: str) -> int:
    return figures.actions_service_calls_by_operation.get(ACTIONS_SERVICE_PREFIX + operation, 0)


async def test_a_scale_set_pool_serves_the_trace_through_the_actions_service() -> None:
    result = await simulate(config(SCALE_SET_CONFIG), short_trace(), trace_name="short", seed=3)
    figures = result.result.figures
    assert (figures.served, figures.unserved) == (12, 0)
    # A boot (30 s) after the job is assigned: the listener hears of it at once.
    assert figures.queue_wait.p95 <= 31.0
    # Each runner's JIT configuration comes from the scale set, not from REST.
    assert actions(figures, "runnerscalesets/generatejitconfig") == 12
    assert "actions/generate-runner-jitconfig-for-org" not in figures.api_calls_by_operation
    # The scale set was created once, its session opened once, every message acknowledged.
    assert actions(figures, "runnerscalesets/create") == 1
    assert actions(figures, "sessions/create") == 1
    assert actions(figures, "broker/get-message") > actions(figures, "broker/delete-message") > 0
    # The authentication chain: one registration token (REST, charged) for the admin token.
    assert figures.api_calls_by_operation["actions/create-registration-token-for-org"] == 1
    # No job is read over REST: the listener tells.
    assert not set(JOB_POLLING) & set(figures.api_calls_by_operation)
    assert figures.actions_service_calls > figures.api_calls


async def test_the_scale_set_run_is_the_same_for_the_same_seed() -> None:
    runs = []
    for _ in range(2):
        figures = (await Engine(config(SCALE_SET_CONFIG), short_trace(), seed=5).run()).figures
        runs.append({**figures.as_json(), **figures.demand_json()})
    assert runs[0]["actions_service_calls"] > 0
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)


async def test_the_listener_closes_its_session_when_the_run_ends() -> None:
    engine = Engine(config(SCALE_SET_CONFIG), short_trace()[:2], seed=1)
    await engine.run()
    listener = engine.controller.listeners["x64"]
    assert listener.state.session == "closed"
    assert listener.state.assigned == 0
    assert engine.github.ledger.stats.requests[f"{ACTIONS_SERVICE_PREFIX}sessions/delete"] == 1


def test_a_webhook_pool_becomes_a_scale_set_named_after_it_with_its_labels() -> None:
    converted = as_scale_set_pools(config())
    pool = converted.pools[0]
    assert pool.demand == "scale_set"
    assert pool.scale_set is not None
    assert (pool.scale_set.name, pool.scale_set.labels) == (
        "runnerscale-x64",
        ["self-hosted", "linux", "x64"],
    )
    assert as_scale_set_pools(converted) == converted  # scale-set pools are kept as they are


def test_each_job_runs_on_the_scale_set_of_the_pool_that_served_it() -> None:
    # Nested label sets: as scale sets, a plain x64 job would match both.
    nested = config(
        CONFIG
        + """  - name: gpu
    labels: [self-hosted, linux, x64, gpu]
    provider: local
    max_runners: 2
    local: {command: [run.sh]}
"""
    )
    jobs = [
        TraceJob(0.0, "acme/app", ("self-hosted", "linux", "x64"), 10.0),
        TraceJob(1.0, "acme/app", ("self-hosted", "linux", "x64", "gpu"), 10.0),
        TraceJob(2.0, "acme/app", ("self-hosted", "windows"), 10.0),  # no pool: as it was
    ]
    replay = as_scale_sets(Replay(nested, jobs, 1, FaultPlan(), None, 0.0))
    assert [job.labels for job in replay.trace] == [
        ("runnerscale-x64",),
        ("runnerscale-gpu",),
        ("self-hosted", "windows"),
    ]
    assert [pool.scale_set_spec.name for pool in replay.config.pools if pool.scale_set_spec] == [
        "runnerscale-x64",
        "runnerscale-gpu",
    ]
    # Each job's pool is the one it was for.
    specs = replay.config.pool_specs()
    assert [getattr(match_pool(specs, job.labels), "name", None) for job in replay.trace] == [
        "x64",
        "gpu",
        None,
    ]


async def test_the_demand_sources_fill_the_scale_set_rows() -> None:
    comparison = await compare_demand_sources(config(), short_trace(), trace_name="short", seed=7)
    assert comparison.skipped == {}
    figures = {result.policy: result.figures for result in comparison.results}
    assert list(figures) == [variant.name for variant in VARIANTS]
    scale_sets, lossy = figures["scale sets"], figures["scale sets, 30% webhooks lost"]
    assert scale_sets.served == 12
    assert scale_sets.actions_service_calls > 0
    assert (scale_sets.webhooks_delivered, scale_sets.webhooks_lost) == (0, 0)
    assert not set(JOB_POLLING) & set(scale_sets.api_calls_by_operation)
    # No webhook is heard by a scale set: losing them changes nothing.
    assert {**lossy.as_json(), **lossy.demand_json()} == {
        **scale_sets.as_json(),
        **scale_sets.demand_json(),
    }
    assert figures["webhooks+polling"].actions_service_calls == 0


@pytest.mark.slow
async def test_the_command_simulates_a_scale_set_config(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps(job.as_json()) + "\n" for job in short_trace()[:4])
    )
    (tmp_path / "c.yaml").write_text(SCALE_SET_CONFIG)
    code, output = await run_cli(
        "--trace", "t.jsonl", "--config", "c.yaml", "--json", "r.json", cwd=tmp_path
    )
    assert code == 0, output
    body = json.loads((tmp_path / "r.json").read_text())
    assert body["served"] == 4
    assert body["policy"] == "runnerscale"
