"""An ec2 pool in the simulation: prices by market, spot then on demand, spot's capacity and
interruptions (a lost job re-run by the controller's own code), and ``--sweep market=``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runnerscale.fakegithub.entities import JobStatus
from runnerscale.fakegithub.world import SHUTDOWN_SIGNAL
from runnerscale.simulation.engine import Engine
from runnerscale.simulation.pools import (
    DEFAULT_BOOT_TIME,
    EC2_BOOT_TIME,
    ModelError,
    Offer,
    backend_model,
)
from runnerscale.simulation.report import MARKET_HEADER, market_rows, render_html
from runnerscale.simulation.run import simulate
from runnerscale.simulation.trace import TraceJob
from tests.simulation.test_simulate import CONFIG, TRACES, config, run_cli

EC2_LABELS = ("self-hosted", "linux", "x64", "ec2")


def ec2_config(market: str = "spot-then-on-demand", simulation: str = "", extra: str = "") -> str:
    """The issue's pool, as written, with a ``simulation:`` block and more pool keys."""
    return f"""\
github: {{api_url: "http://127.0.0.1:9", token: t}}
targets: [{{org: acme}}]
poll_interval: 15s
pools:
  - name: ec2-x64
    labels: [self-hosted, linux, x64, ec2]
    provider: ec2
    max_runners: 50
    idle_timeout: 2m
{extra}    ec2:
      region: eu-west-1
      launch_template: runnerscale-runner
      instance_types: [m7i.large, m6i.large, m5.large]
      subnets: [subnet-aaa, subnet-bbb]
      market: {market}
      ssm_parameter_prefix: /runnerscale/jit
      tags: {{team: ci}}
    simulation: {{{simulation}}}
"""


def write_trace(path: Path, jobs: list[TraceJob]) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {"at": j.at, "repo": j.repo, "labels": list(j.labels), "duration": j.duration}
            )
            + "\n"
            for j in jobs
        )
    )


def table(output: str) -> list[dict[str, str]]:
    """The rows of the table ``simulate`` printed, by column name."""
    header = next(line for line in output.splitlines() if "┃" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    return [
        dict(zip(names, (cell.strip() for cell in line.split("│")[1:-1]), strict=True))
        for line in output.splitlines()
        if line.startswith("│")
    ]


def ec2_trace(count: int, duration: float, every: float = 60.0) -> list[TraceJob]:
    return [
        TraceJob(i * every, "acme/app", EC2_LABELS, duration, 2000 + i, f"job-{i}")
        for i in range(count)
    ]


# ---------------------------------------------------------------------- the model of a pool


def test_an_ec2_pool_is_priced_by_instance_type_and_market() -> None:
    pool = config(ec2_config()).pools[0]
    model = backend_model(pool)
    # m7i.large, the first type: the defaults of providers/ec2/prices.py, spot first.
    assert model.offers == (Offer("spot", 0.05), Offer("on-demand", 0.1124))
    assert model.cheapest == 0.05
    assert model.boot_time == EC2_BOOT_TIME  # none given: EC2's planning figure
    on_demand = backend_model(config(ec2_config("on-demand")).pools[0])
    assert on_demand.offers == (Offer("on-demand", 0.1124),)
    priced = ec2_config(
        extra="    rerun_lost_jobs: true\n",
        simulation="boot_time: 60s",
    ).replace("tags: {team: ci}", "tags: {team: ci}\n      prices: {m7i.large: {spot: 0.03}}")
    model = backend_model(config(priced).pools[0])
    # The pool's own figure where it gives one, the default for the other market.
    assert model.offers == (Offer("spot", 0.03), Offer("on-demand", 0.1124))
    assert model.boot_time.value == 60.0


def test_other_pools_keep_their_generic_price_and_boot() -> None:
    local = backend_model(config(CONFIG).pools[0])
    assert local.offers == (Offer(None, 0.36),)
    assert not local.has_markets
    bare = backend_model(config(CONFIG.replace(CONFIG.splitlines()[-1] + "\n", "")).pools[0])
    assert bare.boot_time == DEFAULT_BOOT_TIME
    assert bare.offers == (Offer(None, 0.0),)


def test_a_price_per_hour_on_an_ec2_pool_is_an_error_naming_the_fix() -> None:
    with pytest.raises(
        ModelError, match=r"cost_per_hour does not apply with provider: ec2.*ec2\.prices"
    ):
        backend_model(config(ec2_config(simulation="cost_per_hour: 0.2")).pools[0])


def test_spot_rates_on_a_pool_without_spot_are_an_error() -> None:
    text = CONFIG.replace("cost_per_hour: 0.36}", "spot_interruptions_per_hour: 1}")
    with pytest.raises(ModelError, match="spot_interruptions_per_hour applies only"):
        backend_model(config(text).pools[0])


# ---------------------------------------------------------------------- launches and cost


async def test_spot_short_of_capacity_falls_to_on_demand() -> None:
    text = ec2_config(simulation="boot_time: 60s, spot_capacity_short_rate: 1")
    result = await Engine(config(text), ec2_trace(4, 300)).run()
    figures = result.figures.pools["ec2-x64"]
    assert figures.served == 4
    market = figures.market
    assert market is not None
    assert market.launches == {"spot": 0, "on-demand": 4}
    assert market.spot_capacity_short == 4
    assert market.cost["spot"] == 0.0
    assert market.cost["on-demand"] == pytest.approx(figures.runner_seconds.total / 3600 * 0.1124)
    assert figures.cost == pytest.approx(market.cost["on-demand"])


async def test_spot_alone_short_of_capacity_launches_nothing() -> None:
    text = ec2_config("spot", simulation="boot_time: 60s, spot_capacity_short_rate: 1")
    result = await Engine(config(text), ec2_trace(2, 300)).run()
    figures = result.figures.pools["ec2-x64"]
    assert (figures.served, figures.unserved, figures.cost) == (0, 2, 0.0)
    assert figures.market is not None
    assert figures.market.launches == {"spot": 0}
    assert figures.market.spot_capacity_short >= 2  # retried with the controller's backoff


async def test_spot_costs_less_and_the_bound_assumes_spot() -> None:
    jobs = ec2_trace(6, 600)
    spot = await simulate(config(ec2_config(simulation="boot_time: 60s")), jobs, trace_name="t")
    on_demand = await simulate(
        config(ec2_config("on-demand", simulation="boot_time: 60s")), jobs, trace_name="t"
    )
    busy = spot.result.figures.runner_seconds
    assert spot.result.figures.cost == pytest.approx(busy.total / 3600 * 0.05)
    assert on_demand.result.figures.cost == pytest.approx(
        on_demand.result.figures.runner_seconds.total / 3600 * 0.1124
    )
    assert spot.limit.cost == pytest.approx(spot.limit.runner_seconds.total / 3600 * 0.05)
    assert on_demand.limit.cost == pytest.approx(
        on_demand.limit.runner_seconds.total / 3600 * 0.1124
    )


# ---------------------------------------------------------------------- interruptions


async def interrupted(rerun: bool, seed: int = 0) -> Engine:
    """Twenty hour-long jobs on spot instances taken back twice an hour on average."""
    text = ec2_config(
        "spot",
        simulation="boot_time: 60s, spot_interruptions_per_hour: 2",
        extra="    rerun_lost_jobs: true\n" if rerun else "",
    )
    engine = Engine(config(text), ec2_trace(20, 3600, every=30), seed=seed)
    engine.store.close = lambda: None  # type: ignore[method-assign]  # read it after the run
    return engine


async def test_an_interrupted_spot_instance_loses_its_job_and_the_controller_reruns_it() -> None:
    engine = await interrupted(rerun=True)
    figures = (await engine.run()).figures
    market = figures.market
    assert market is not None
    assert market.interruption_notices >= market.interruptions >= market.jobs_lost >= 1
    # A job lost on its first attempt is re-run once, by the controller's own re-run code; an
    # attempt of a re-run that is lost again is not re-run (reruns.verdict).
    losses = engine.store.job_losses()
    assert market.jobs_rerun == sum(1 for loss in losses if loss.outcome == "re-run") >= 1
    assert market.jobs_rerun <= market.jobs_lost
    failed = [j for j in engine.world.jobs.values() if j.conclusion == "failure"]
    assert len(failed) == market.jobs_lost
    assert all(job.failure_reason == SHUTDOWN_SIGNAL for job in failed)
    assert {loss.job_id for loss in losses} == {job.id for job in failed}  # each one seen
    # Each re-run is a job of its own: the trace's twenty and the re-runs, all ended.
    assert figures.jobs == 20 + market.jobs_rerun
    assert all(j.status is JobStatus.COMPLETED for j in engine.world.jobs.values())
    succeeded = {
        (j.run.id, j.name) for j in engine.world.jobs.values() if j.conclusion == "success"
    }
    lost_twice = market.jobs_lost - market.jobs_rerun
    assert len(succeeded) == 20 - lost_twice
    # The instances taken back stop costing when they are gone: all is spot.
    assert figures.cost == pytest.approx(figures.runner_seconds.total / 3600 * 0.05)


async def test_without_rerun_lost_jobs_a_lost_job_stays_failed() -> None:
    engine = await interrupted(rerun=False)
    figures = (await engine.run()).figures
    assert figures.market is not None
    assert figures.market.jobs_lost >= 1
    assert figures.market.jobs_rerun == 0
    assert figures.jobs == 20


@pytest.mark.slow
async def test_the_same_seed_gives_the_same_interruptions_and_another_seed_others() -> None:
    runs = [(await (await interrupted(rerun=True, seed=seed)).run()) for seed in (4, 4, 5)]
    first, again, other = (json.dumps(run.figures.as_json()) for run in runs)
    assert first == again
    assert first != other


async def test_market_figures_in_the_json_the_table_and_the_report() -> None:
    text = ec2_config(simulation="boot_time: 60s, spot_capacity_short_rate: 0.5")
    result = await simulate(config(text), ec2_trace(6, 300), trace_name="t", seed=2)
    body = result.as_json()
    market = body["pools"]["ec2-x64"]["market"]
    assert list(market) == [
        "cost",
        "launches",
        "spot_capacity_short",
        "interruption_notices",
        "interruptions",
        "jobs_lost",
        "jobs_rerun",
    ]
    assert list(market["cost"]) == ["spot", "on-demand"]
    assert body["market"] == market  # the run's, of its one ec2 pool
    assert sum(market["cost"].values()) == pytest.approx(body["cost"], abs=1e-3)
    assert "market" not in body["limit"]
    (row,) = market_rows(result.result.figures)
    assert row[:2] == ["ec2-x64", f"${body['cost']:.2f}"]
    assert row[2:5] == [str(market["launches"]["spot"]), str(market["launches"]["on-demand"]),
                        f"${market['cost']['spot']:.2f}"]  # fmt: skip
    assert market_rows(result.limit) == []
    pytest.importorskip("matplotlib")
    page = render_html("t", "s", [result.result], result.limit)
    assert "spot cost" in page
    assert "on-demand cost" in page


# ---------------------------------------------------------------------- the command


@pytest.mark.slow
async def test_sweep_compares_markets_side_by_side(tmp_path: Path) -> None:
    config_file = tmp_path / "ec2.yaml"
    config_file.write_text(
        ec2_config(
            simulation="boot_time: {distribution: lognormal, median: 90s, sigma: 0.3}, "
            "spot_capacity_short_rate: 0.2, spot_interruptions_per_hour: 0.5",
            extra="    rerun_lost_jobs: true\n",
        )
    )
    trace_file = tmp_path / "t.jsonl"
    write_trace(trace_file, ec2_trace(12, 900, every=120))
    arguments = ["--trace", str(trace_file), "--config", str(config_file), "--seed", "1"]
    sweep = ["--sweep", "market=spot-then-on-demand,on-demand"]
    code, output = await run_cli(*arguments, *sweep)
    assert code == 0, output
    rows = table(output)
    assert [row["market"] for row in rows] == ["spot-then-on-demand", "on-demand"]
    mixed, on_demand = rows
    # On demand: no spot cost, nothing refused, nothing taken back, nothing lost.
    assert [on_demand[key] for key in MARKET_HEADER] == ["$0.00", on_demand["cost"], *"0000"]
    assert mixed["spot cost"] != "$0.00"
    assert float(mixed["cost"][1:]) < float(on_demand["cost"][1:])
    again = await run_cli(*arguments, *sweep)
    assert again == (code, output)  # deterministic for a seed
    # With min_idle too: a grid of both.
    code, output = await run_cli(*arguments, *sweep, "--sweep", "min_idle=0,1")
    assert code == 0, output
    assert output.count("│ spot-then-on-demand") + output.count("│ on-demand") == 4


@pytest.mark.slow
async def test_sweep_market_without_an_ec2_pool_says_so() -> None:
    reference = ["--config", str(TRACES / "reference.yaml")]
    trace = ["--trace", str(TRACES / "workday.jsonl")]
    code, output = await run_cli(*reference, *trace, "--sweep", "market=spot,on-demand")
    assert code == 2
    assert "no pool launches on a market" in output
    assert "provider: ec2" in output


@pytest.mark.slow
async def test_bad_market_and_cost_per_hour_on_ec2_are_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "ec2.yaml"
    trace_file = tmp_path / "t.jsonl"
    write_trace(trace_file, ec2_trace(1, 10))
    config_file.write_text(ec2_config())
    code, output = await run_cli(
        "--trace", str(trace_file), "--config", str(config_file), "--sweep", "market=cheap"
    )
    assert code == 2
    assert "--sweep {'market': 'cheap'}" in output
    config_file.write_text(ec2_config(simulation="cost_per_hour: 0.2"))
    code, output = await run_cli("--trace", str(trace_file), "--config", str(config_file))
    assert code == 2
    assert "cannot be simulated" in output
    assert "ec2.prices" in output


async def test_the_pools_daily_budget_holds_launches_back_in_the_simulation_too() -> None:
    # Instances are listed with their price, as the provider lists them: the controller's own
    # spend book counts them, and the scaler holds creations back once the day's budget is hit.
    capped = ec2_config("on-demand", "boot_time: 60s", extra="    budget: {per_day: 0.05}\n")
    result = await Engine(config(capped), ec2_trace(10, 1800, every=60)).run()
    figures = result.figures
    assert figures.served < 10
    assert figures.unserved == 10 - figures.served
    free = await Engine(
        config(ec2_config("on-demand", "boot_time: 60s")), ec2_trace(10, 1800)
    ).run()
    assert free.figures.served == 10
