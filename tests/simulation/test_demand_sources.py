"""``runnerscale simulate --demand-sources``: the demand sources side by side on one trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runnerscale.fakegithub.accounting import ACTIONS_SERVICE_PREFIX, Api, Ledger, api_of
from runnerscale.fakegithub.faults import FaultPlan, Faults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.simulation.demand import (
    SCALE_SETS,
    SOURCES,
    VARIANTS,
    DemandComparison,
    DemandSource,
    DemandVariant,
    Replay,
    compare_demand_sources,
)
from runnerscale.simulation.report import DEMAND_HEADER, demand_markdown, demand_rows
from runnerscale.simulation.results import Figures, PolicyResult, RunnerSeconds
from runnerscale.simulation.trace import TraceJob
from tests.simulation.test_simulate import config, run_cli, trace

LOSSLESS = "webhooks+polling"
POLLING = "polling only"
LOSSY = "webhooks+polling, 30% webhooks lost"
SCALE_SET_VARIANTS = ["scale sets", "scale sets, 30% webhooks lost"]
ALL_VARIANTS = [LOSSLESS, POLLING, LOSSY, *SCALE_SET_VARIANTS]


def jobs() -> list[TraceJob]:
    """A short trace: twenty jobs, one every 40 s, for a pool of ten."""
    return trace(*((i * 40.0, 90.0) for i in range(20)))


async def compared(**options: object) -> DemandComparison:
    return await compare_demand_sources(
        config(),
        jobs(),
        trace_name="short",
        seed=7,
        **options,  # type: ignore[arg-type]
    )


def by_name(comparison: DemandComparison) -> dict[str, Figures]:
    return {result.policy: result.figures for result in comparison.results}


async def test_each_variant_is_a_row_scale_sets_included() -> None:
    heard: list[tuple[str, str]] = []
    comparison = await compared(skipping=lambda name, why: heard.append((name, why)))
    assert [result.policy for result in comparison.results] == ALL_VARIANTS
    assert comparison.skipped == {}
    assert heard == []
    rows = demand_rows([(r.policy, r.figures) for r in comparison.results])
    assert [row[0] for row in rows] == ALL_VARIANTS
    assert all(len(row) == len(DEMAND_HEADER) for row in rows)
    assert all(row[1] == row[2] == "20" for row in rows)  # jobs, served
    body = comparison.as_json()
    assert list(body["demand_sources"]) == ALL_VARIANTS
    assert body["skipped"] == {}


async def test_a_source_without_a_runner_is_skipped_with_why() -> None:
    heard: list[tuple[str, str]] = []
    sources = {**SOURCES, SCALE_SETS: DemandSource(None, missing="not today")}
    comparison = await compared(sources=sources, skipping=lambda n, why: heard.append((n, why)))
    assert [result.policy for result in comparison.results] == [LOSSLESS, POLLING, LOSSY]
    assert comparison.skipped == dict.fromkeys(SCALE_SET_VARIANTS, "not today")
    assert heard == [(name, "not today") for name in SCALE_SET_VARIANTS]


async def test_lost_webhooks_are_lost_and_polling_still_serves_every_job() -> None:
    figures = by_name(await compared())
    lossless, lossy = figures[LOSSLESS], figures[LOSSY]
    assert lossless.webhooks_lost == 0
    assert lossless.webhooks_delivered > 0
    assert lossy.webhooks_lost > 0
    # About 30% of the deliveries, drawn from the plan's seed.
    share = lossy.webhooks_lost / (lossy.webhooks_lost + lossy.webhooks_delivered)
    assert 0.15 < share < 0.45
    # Polling repairs what the webhooks missed: every job served, some later.
    assert lossy.served == lossy.jobs == 20
    assert lossy.queue_wait.max > lossless.queue_wait.max


@pytest.mark.slow
async def test_polling_only_hears_no_webhook_and_pays_in_rest_calls() -> None:
    figures = by_name(await compared())
    polling = figures[POLLING]
    assert (polling.webhooks_delivered, polling.webhooks_lost) == (0, 0)
    assert polling.served == 20
    assert polling.api_calls > figures[LOSSLESS].api_calls
    # Only the scale sets talk to the Actions service.
    assert all(
        (f.actions_service_calls > 0) == (name in SCALE_SET_VARIANTS) for name, f in figures.items()
    )


@pytest.mark.slow
async def test_a_fault_plan_of_the_users_applies_to_every_variant() -> None:
    failing = FaultPlan.model_validate({"error_rate": 0.2, "seed": 3})
    figures = by_name(await compared(faults=failing))
    assert all(f.served == 20 for f in figures.values())
    assert figures[LOSSLESS].webhooks_lost == 0  # the plan loses none; only the lossy variant


def scale_set_figures(jobs: int) -> Figures:
    """What a scale-set run might count: no REST call, two Actions-service requests a job."""
    return Figures(
        jobs=jobs,
        served=jobs,
        unserved=0,
        queue_waits=(30.0,) * jobs,
        runner_seconds=RunnerSeconds(busy=1.0, idle=0.0, booting=0.0),
        cost=0.0,
        actions_service_calls_by_operation={
            f"{ACTIONS_SERVICE_PREFIX}get-message": jobs,
            f"{ACTIONS_SERVICE_PREFIX}generate-jitconfig": jobs,
        },
    )


async def test_a_registered_scale_set_runner_fills_its_rows_with_actions_service_calls() -> None:
    seen: list[tuple[str, float]] = []

    async def run_scale_sets(variant: DemandVariant, replay: Replay) -> PolicyResult:
        seen.append((variant.name, replay.faults.webhooks.drop_rate))
        return PolicyResult(variant.name, scale_set_figures(len(replay.trace)))

    sources = {**SOURCES, SCALE_SETS: DemandSource(run_scale_sets)}
    comparison = await compared(sources=sources)
    assert comparison.skipped == {}
    assert [r.policy for r in comparison.results] == [v.name for v in VARIANTS]
    # The lossy scale-set variant runs with the loss, which a scale set never notices.
    assert seen == [("scale sets", 0.0), ("scale sets, 30% webhooks lost", 0.3)]
    rows = {row[0]: row for row in demand_rows([(r.policy, r.figures) for r in comparison.results])}
    column = {name: index for index, name in enumerate(DEMAND_HEADER)}
    scale_set = rows["scale sets"]
    assert scale_set[column["REST calls"]] == "0"
    assert scale_set[column["Actions-service calls"]] == "40"
    assert scale_set[column["Actions-service calls/job"]] == "2.00"
    webhooks = rows[LOSSLESS]
    assert webhooks[column["Actions-service calls"]] == "0"
    assert int(webhooks[column["REST calls"]]) > 0
    body = comparison.as_json()["demand_sources"]["scale sets"]
    assert body["api_calls"] == 0
    assert body["actions_service_calls"] == 40
    assert body["actions_service_calls_per_job"] == 2.0
    assert "Actions-service calls/job" in demand_markdown(
        [(r.policy, r.figures) for r in comparison.results]
    )


def test_the_ledger_counts_actions_service_requests_apart_and_never_charges_them() -> None:
    assert api_of("actions/generate-runner-jitconfig-for-org") is Api.REST
    assert api_of(f"{ACTIONS_SERVICE_PREFIX}get-message") is Api.ACTIONS_SERVICE
    limits = RateLimits()
    ledger = Ledger(limits, Faults(), lambda: 1000.0)
    ledger.put_in_force(FaultPlan.model_validate({"rate_limit": {"exhaust_primary": True}}))
    operation = f"{ACTIONS_SERVICE_PREFIX}get-message"
    for _ in range(3):
        ledger.asked(operation)
        # The REST budget is spent, yet the Actions service answers: its limits are its own.
        assert ledger.admit(operation, "me", read=True) is None
        assert ledger.answered(operation, "me", not_modified=False) is None
    ledger.asked("repos/list-for-org")
    assert ledger.stats.requests_of(Api.ACTIONS_SERVICE) == {operation: 3}
    assert ledger.stats.requests_of(Api.REST) == {"repos/list-for-org": 1}
    assert sum(ledger.stats.charged.values()) == 0


@pytest.mark.slow
async def test_the_command_prints_the_table_with_every_row(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps(job.as_json()) + "\n" for job in jobs()[:8])
    )
    (tmp_path / "c.yaml").write_text(
        "github: {api_url: 'http://127.0.0.1:9', token: t}\n"
        "targets: [{org: acme}]\n"
        "pools:\n"
        "  - name: x64\n"
        "    labels: [self-hosted, linux, x64]\n"
        "    provider: local\n"
        "    max_runners: 10\n"
        "    local: {command: [run.sh]}\n"
    )
    inputs = ("--trace", "t.jsonl", "--config", "c.yaml", "--demand-sources")
    code, output = await run_cli(
        *inputs, "--json", "d.json", "--report", "d.html", "--seed", "2", cwd=tmp_path
    )
    assert code == 0, output
    for header in ("demand source", "REST calls/job", "Actions-service calls/job"):
        assert header in output
    for variant in ALL_VARIANTS:
        assert f"│ {variant} " in output
    assert "skipped" not in output
    body = json.loads((tmp_path / "d.json").read_text())
    assert list(body["demand_sources"]) == ALL_VARIANTS
    assert body["demand_sources"][POLLING]["webhooks"] == {"delivered": 0, "lost": 0}
    assert body["demand_sources"]["scale sets"]["actions_service_calls"] > 0
    assert body["skipped"] == {}
    page = (tmp_path / "d.html").read_text()
    assert "<th>Actions-service calls/job</th>" in page
    assert f'<td class="text">{LOSSY}</td>' in page
    code, output = await run_cli(*inputs, "--compare", cwd=tmp_path)
    assert code == 2
    assert "--demand-sources and --compare" in output
    code, output = await run_cli(*inputs, "--sweep", "min_idle=0,1", cwd=tmp_path)
    assert code == 2
    assert "--sweep prints its own table" in output
