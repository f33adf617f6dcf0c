"""The deterministic simulation: the real controller replaying traces on a virtual clock."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import sys
from pathlib import Path

import pytest

from runnerscale.config import Config, parse_config
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.budget import REGISTRATION
from runnerscale.heap import HeapKeeper
from runnerscale.hostlabels import detect_local_host
from runnerscale.simulation.engine import POLL_60, WEBHOOK_DELAY, Engine, unique_suffixes
from runnerscale.simulation.occupancy import MOST_BUCKETS
from runnerscale.simulation.run import simulate
from runnerscale.simulation.trace import TraceJob, read_trace

TRACES = Path(__file__).parents[2].parent / "shared" / "traces"
X64 = ("self-hosted", "linux", "x64")

CONFIG = """\
github: {api_url: "http://127.0.0.1:9", token: t}
targets: [{org: acme}]
poll_interval: 15s
pools:
  - name: x64
    labels: [self-hosted, linux, x64]
    provider: local
    max_runners: 10
    idle_timeout: 60s
    local: {command: [run.sh]}
    simulation: {boot_time: 30s, cost_per_hour: 0.36}
"""

#: The keys ``--json`` has always had, for the run and for each policy compared.
FIGURE_KEYS = [
    "jobs",
    "served",
    "unserved",
    "queue_wait_s",
    "runner_seconds",
    "idle_ratio",
    "api_calls",
    "api_calls_per_job",
    "api_calls_by_operation",
    "cost",
]


def config(text: str = CONFIG) -> Config:
    return parse_config(text, source="test.yaml", env={"HOME": "/tmp"})


def trace(*jobs: tuple[float, float]) -> list[TraceJob]:
    return [
        TraceJob(at, "acme/app", X64, duration, 1000 + i, f"job-{i}")
        for i, (at, duration) in enumerate(jobs)
    ]


async def test_with_webhooks_a_job_waits_for_boot_plus_delivery() -> None:
    result = await Engine(config(), trace((0, 100), (10, 50), (20, 20))).run()
    figures = result.figures
    assert (figures.served, figures.unserved) == (3, 0)
    # Boot time plus the webhook's delivery; the first job is also seen by the start-up poll.
    assert set(figures.queue_waits) <= {30.0, 30.0 + WEBHOOK_DELAY}
    assert figures.queue_waits[1:] == (30.0 + WEBHOOK_DELAY,) * 2
    assert figures.runner_seconds.busy == pytest.approx(170.0)
    assert figures.runner_seconds.booting == pytest.approx(90.0)
    assert figures.api_calls >= 3  # at least one JIT configuration per job
    assert figures.cost == pytest.approx(figures.runner_seconds.total / 3600 * 0.36)


async def test_with_every_webhook_lost_polling_still_serves_every_job() -> None:
    lossy = FaultPlan.model_validate({"webhooks": {"drop_rate": 1.0}})
    result = await Engine(config(), trace((0, 60), (5, 60)), faults=lossy).run()
    assert result.figures.served == 2
    # Found by the next poll (every 15 s), then booted.
    assert sorted(result.figures.queue_waits) == [30.0, 30.0 + 10.0]  # polls at 0 s and 15 s


async def test_poll_60_waits_longer_than_webhooks() -> None:
    jobs = trace(*((i * 97.0, 40.0) for i in range(12)))
    fast = await Engine(config(), jobs).run()
    slow = await Engine(config(), jobs, policy=POLL_60).run()
    assert max(fast.figures.queue_waits) < min(slow.figures.queue_waits) + 60
    assert sum(slow.figures.queue_waits) > sum(fast.figures.queue_waits)


async def test_unmatched_jobs_are_unserved_and_never_provisioned_for() -> None:
    jobs = [*trace((0, 10)), TraceJob(1, "acme/app", ("self-hosted", "gpu"), 10, 2000, "gpu")]
    result = await Engine(config(), jobs).run()
    assert (result.figures.served, result.figures.unserved) == (1, 1)


@pytest.mark.slow
async def test_same_inputs_and_seed_give_identical_json() -> None:
    jobs = read_trace(TRACES / "workday.jsonl")[:80]
    reference = config((TRACES / "reference.yaml").read_text().replace("${GITHUB_TOKEN}", "t"))
    first = await simulate(reference, jobs, trace_name="workday", seed=3, compare=True)
    second = await simulate(reference, jobs, trace_name="workday", seed=3, compare=True)
    assert json.dumps(first.as_json()) == json.dumps(second.as_json())
    body = first.as_json()
    for key in (*FIGURE_KEYS, "limit"):
        assert key in body
    assert set(body["queue_wait_s"]) == {"p50", "p95", "p99", "max"}
    assert set(body["compared"]) == {"poll-60", "static-50/20/4"}


async def test_settling_the_heap_between_steps_changes_no_figure_and_is_undone() -> None:
    jobs = trace(*((i * 7.0, 40.0) for i in range(12)))
    plain = await Engine(config(), jobs).run()
    # A keeper due at every step (its clock moves a second per read).
    ticks = itertools.count()
    keeper = HeapKeeper(settle_every=1, first_after=0, timer=lambda: float(next(ticks)))
    settled = await Engine(config(), jobs, heap=keeper).run()
    assert keeper.settled > 10
    assert settled == plain
    assert gc.get_freeze_count() == 0  # everything given back when the run ended


TWO_POOLS = (
    CONFIG
    + """\
  - name: gpu
    labels: [self-hosted, linux, x64, gpu]
    provider: local
    max_runners: 1
    idle_timeout: 60s
    local: {command: [run.sh]}
    simulation: {boot_time: 30s, cost_per_hour: 3.6}
"""
)
GPU = (*X64, "gpu")


def two_pool_trace() -> list[TraceJob]:
    """Two gpu jobs at once on a pool of one runner, x64 jobs once no gpu runner is left (a
    gpu runner would take an x64 job too), and a job no pool serves."""
    return [
        TraceJob(0, "acme/app", GPU, 60, 1, "gpu-1"),
        TraceJob(0, "acme/app", GPU, 60, 1, "gpu-2"),
        *(TraceJob(600, "acme/app", X64, 100, 2, f"x64-{i}") for i in range(3)),
        TraceJob(600, "acme/app", ("self-hosted", "windows"), 10, 3, "windows"),
    ]


async def test_each_pool_has_its_own_figures_and_they_add_up() -> None:
    result = await simulate(config(TWO_POOLS), two_pool_trace(), trace_name="t", compare=True)
    figures = result.result.figures
    x64, gpu = figures.pools["x64"], figures.pools["gpu"]
    assert list(figures.pools) == ["x64", "gpu"]
    assert (x64.jobs, x64.served, x64.unserved) == (3, 3, 0)
    assert (gpu.jobs, gpu.served, gpu.unserved) == (2, 2, 0)
    assert set(x64.queue_waits) == {30.0 + WEBHOOK_DELAY}
    # The second gpu job waits for the first to end and for a runner of its own to boot.
    first, second = sorted(gpu.queue_waits)
    assert first == 30.0
    assert second == first + 60 + 30
    assert x64.runner_seconds.busy == pytest.approx(300.0)
    assert gpu.runner_seconds.busy == pytest.approx(120.0)
    assert x64.runner_seconds.booting == pytest.approx(3 * 30.0)
    assert gpu.runner_seconds.booting == pytest.approx(2 * 30.0)
    assert x64.cost == pytest.approx(x64.runner_seconds.total / 3600 * 0.36)
    assert gpu.cost == pytest.approx(gpu.runner_seconds.total / 3600 * 3.6)
    # The run is the sum of its pools, and of the job no pool serves.
    assert (figures.jobs, figures.served, figures.unserved) == (6, 5, 1)
    assert figures.runner_seconds == x64.runner_seconds + gpu.runner_seconds
    assert figures.cost == pytest.approx(x64.cost + gpu.cost)
    assert figures.queue_wait.max == gpu.queue_wait.max == second
    # Every reference point is broken down the same way.
    for other in (*(p.figures for p in result.compared), result.limit):
        assert list(other.pools) == ["x64", "gpu"]
        assert [p.jobs for p in other.pools.values()] == [3, 2]
    assert result.limit.pools["gpu"].queue_waits == (30.0, 30.0 + 60 + 30)


async def test_the_json_adds_pools_and_keeps_every_key_it_had() -> None:
    result = await simulate(config(TWO_POOLS), two_pool_trace(), trace_name="t", compare=True)
    body = json.loads(json.dumps(result.as_json()))
    assert list(body)[: len(FIGURE_KEYS)] == FIGURE_KEYS
    assert list(body)[len(FIGURE_KEYS) :] == [
        "pools",
        "limit",
        "policy",
        "trace",
        "seed",
        "compared",
        "timeline",
    ]
    pool_keys = [key for key in FIGURE_KEYS if not key.startswith("api_calls")]
    for figures in (body, body["limit"], *body["compared"].values()):
        assert [key for key in figures if key in {*FIGURE_KEYS, "pools"}] == [*FIGURE_KEYS, "pools"]
        assert list(figures["pools"]) == ["x64", "gpu"]
        for pool in figures["pools"].values():
            assert list(pool) == pool_keys
            assert set(pool["queue_wait_s"]) == {"p50", "p95", "p99", "max"}
            assert set(pool["runner_seconds"]) == {"busy", "idle", "booting"}
    gpu = body["pools"]["gpu"]
    assert (gpu["jobs"], gpu["served"], gpu["unserved"]) == (2, 2, 0)
    assert gpu["queue_wait_s"]["max"] == body["queue_wait_s"]["max"]
    assert body["pools"]["x64"]["cost"] + gpu["cost"] == pytest.approx(body["cost"], abs=1e-3)


@pytest.mark.slow
async def test_runners_by_state_are_exact_and_bounded_over_ten_hours() -> None:
    # A job every half hour for ten hours, and a burst that queues behind the cap of 10.
    jobs = trace(*((i * 1800.0, 600.0) for i in range(21)), *((7200.0, 300.0) for _ in range(14)))
    result = await Engine(config(), jobs).run()
    occupancy = result.occupancy
    assert occupancy is not None
    assert occupancy.edges[-1] >= 10 * 3600
    assert len(occupancy.edges) - 1 <= MOST_BUCKETS
    assert occupancy.width == 180.0
    # The plot's areas are the table's runner time, and the jobs' time in the queue.
    runner = result.figures.runner_seconds
    assert occupancy.seconds("busy") == pytest.approx(runner.busy)
    assert occupancy.seconds("idle") == pytest.approx(runner.idle)
    assert occupancy.seconds("booting") == pytest.approx(runner.booting)
    assert occupancy.seconds("queued") == pytest.approx(sum(result.figures.queue_waits))
    assert max(occupancy.means["queued"]) > 0


async def run_cli(*arguments: str, cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runnerscale",
        "simulate",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Wide enough that a message naming a file under a deep temporary directory (a
        # pytest-xdist worker's) is not wrapped in the middle of its path.
        env={**os.environ, "COLUMNS": "400"},
        cwd=cwd,
    )
    async with asyncio.timeout(240):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.slow
async def test_the_command_writes_byte_identical_json_and_a_report(tmp_path: Path) -> None:
    trace_file = tmp_path / "small.jsonl"
    trace_file.write_text(
        "".join(
            json.dumps(line) + "\n"
            for line in (
                json.loads(raw) for raw in (TRACES / "nightly.jsonl").read_text().splitlines()[:40]
            )
        )
    )
    outputs = []
    for name in ("a.json", "b.json"):
        code, output = await run_cli(
            "--trace",
            str(trace_file),
            "--config",
            str(TRACES / "reference.yaml"),
            "--json",
            str(tmp_path / name),
            "--seed",
            "5",
        )
        assert code == 0, output
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert "lower bound" in output
    # After the comparison, a table per policy of its pools.
    assert "runnerscale, by pool" in output
    assert "lower bound, by pool" in output
    assert output.index("runnerscale, by pool") > output.index("lower bound │")
    code, output = await run_cli(
        "--trace",
        str(trace_file),
        "--config",
        str(TRACES / "reference.yaml"),
        "--report",
        str(tmp_path / "r.html"),
    )
    assert code == 0, output
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 3


@pytest.mark.slow
async def test_the_command_says_where_it_wrote_each_file(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps(job.as_json()) + "\n" for job in two_pool_trace())
    )
    (tmp_path / "c.yaml").write_text(TWO_POOLS)
    (tmp_path / "out").mkdir()
    inputs = ("--trace", "t.jsonl", "--config", "c.yaml")
    code, output = await run_cli(
        *inputs, "--json", "out/r.json", "--report", "out/../out/r.html", cwd=tmp_path
    )
    assert code == 0, output
    # Absolute, whatever folder the command ran in, and the report's with what to do with it.
    assert f"wrote the JSON to {tmp_path / 'out' / 'r.json'}\n" in output
    assert f"wrote the report to {tmp_path / 'out' / 'r.html'} (open it in a browser)\n" in output
    assert json.loads((tmp_path / "out" / "r.json").read_text())["pools"]["gpu"]["jobs"] == 2
    assert (tmp_path / "out" / "r.html").read_text().startswith("<!DOCTYPE html>")
    # A folder that does not exist is refused before the simulation runs; nothing is written.
    code, output = await run_cli(
        *inputs, "--json", "out/r2.json", "--report", "missing/r.html", cwd=tmp_path
    )
    assert code == 2, output
    assert f"--report missing/r.html: the folder {tmp_path / 'missing'} does not exist" in output
    assert "simulating" not in output
    assert not (tmp_path / "out" / "r2.json").exists()
    assert not (tmp_path / "missing").exists()
    code, output = await run_cli(*inputs, "--json", "out", cwd=tmp_path)
    assert code == 2, output
    assert "is a directory" in output


@pytest.mark.slow
async def test_bad_traces_and_configs_are_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"at": 0, "repo": "acme/app", "labels": ["x"], "duration": 1}\n{"at": "soon"}\n'
    )
    code, output = await run_cli("--trace", str(bad), "--config", str(TRACES / "reference.yaml"))
    assert code == 2
    assert "bad.jsonl:2" in output
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (TRACES / "reference.yaml").read_text().replace("max_runners: 50", "max_runners: -1")
    )
    code, output = await run_cli("--trace", str(TRACES / "workday.jsonl"), "--config", str(broken))
    assert code == 2
    assert "broken.yaml:" in output


@pytest.mark.slow
async def test_sweep_prints_the_trade_off_table(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.jsonl"
    trace_file.write_text(
        "".join(f"{line}\n" for line in (TRACES / "workday.jsonl").read_text().splitlines()[:30])
    )
    code, output = await run_cli(
        "--trace",
        str(trace_file),
        "--config",
        str(TRACES / "reference.yaml"),
        "--sweep",
        "min_idle=0,1",
        "--sweep",
        "max_runners=2,50",
    )
    assert code == 0, output
    assert output.count("$") >= 4
    assert "min_idle" in output
    assert "max_runners" in output
    code, output = await run_cli(
        "--trace",
        str(trace_file),
        "--config",
        str(TRACES / "reference.yaml"),
        "--sweep",
        "colour=1",
    )
    assert code == 2
    assert "KEY=V1,V2" in output


@pytest.mark.slow
async def test_faults_from_a_plan_file(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.jsonl"
    trace_file.write_text(
        "".join(f"{line}\n" for line in (TRACES / "workday.jsonl").read_text().splitlines()[:20])
    )
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps({"webhooks": {"drop_rate": 1.0}, "error_rate": 0.1, "seed": 4}))
    code, output = await run_cli(
        "--trace",
        str(trace_file),
        "--config",
        str(TRACES / "reference.yaml"),
        "--faults",
        str(plan),
        "--json",
        str(tmp_path / "out.json"),
    )
    assert code == 0, output
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["served"] == 20  # polling alone, through API errors
    assert result["queue_wait_s"]["p95"] > result["limit"]["queue_wait_s"]["p95"]
    plan.write_text(json.dumps({"error_rate": 3}))
    code, output = await run_cli(
        "--trace",
        str(trace_file),
        "--config",
        str(TRACES / "reference.yaml"),
        "--faults",
        str(plan),
    )
    assert code == 2
    assert "error_rate" in output


async def test_the_lower_bound_stays_a_bound_when_boot_times_vary() -> None:
    varied = CONFIG.replace(
        "simulation: {boot_time: 30s, cost_per_hour: 0.36}",
        "simulation: {boot_time: {distribution: uniform, low: 20s, high: 60s}}",
    )
    jobs = trace(*((i * 50.0, 30.0) for i in range(10)))
    result = await simulate(config(varied), jobs, trace_name="t", seed=2)
    assert result.limit.queue_wait.max == 20.0
    assert min(result.result.figures.queue_waits) >= result.limit.queue_wait.p50


async def test_jobs_outside_the_targets_are_unserved_in_the_bound_too() -> None:
    jobs = [*trace((0, 10)), TraceJob(1, "elsewhere/app", X64, 10, 3000, "outside")]
    result = await simulate(config(), jobs, trace_name="t")
    assert (result.result.figures.unserved, result.limit.unserved) == (1, 1)


@pytest.mark.slow
async def test_sweep_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    code, output = await run_cli(
        "--trace",
        str(TRACES / "workday.jsonl"),
        "--config",
        str(TRACES / "reference.yaml"),
        "--sweep",
        "min_idle=0,1",
        "--json",
        str(tmp_path / "x.json"),
    )
    assert code == 2
    assert "--sweep prints its own table" in output


@pytest.mark.parametrize(
    ("model", "what"),
    [
        ("{boot_time: 30s, create_failure_rate: 0.3}", "creations that fail are retried"),
        ("{boot_time: 30s, never_register_rate: 0.3}", "silent instances are replaced"),
        (
            "{boot_time: {distribution: lognormal, median: 40s, sigma: 0.4}}",
            "boot times vary",
        ),
    ],
)
async def test_the_simulated_backend_misbehaves_and_every_job_is_still_served(
    model: str, what: str
) -> None:
    text = (
        CONFIG.replace("{boot_time: 30s, cost_per_hour: 0.36}", model)
        .replace("poll_interval: 15s", "poll_interval: 15s\ntimeouts: {janitor_interval: 10s}")
        .replace("idle_timeout: 60s", "idle_timeout: 60s\n    boot_timeout: 2m")
    )
    jobs = trace(*((i * 40.0, 60.0) for i in range(15)))
    result = await Engine(config(text), jobs, seed=11).run()
    assert result.figures.served == 15, what


async def test_an_exhausted_rate_limit_delays_but_does_not_lose_jobs() -> None:
    limited = FaultPlan.model_validate({"rate_limit": {"secondary_for": 120, "retry_after": 60}})
    result = await Engine(config(), trace((0, 30), (10, 30)), faults=limited).run()
    assert result.figures.served == 2
    assert min(result.figures.queue_waits) >= 110  # nothing reached GitHub for two minutes


async def test_registering_runners_is_charged_apart_from_polling() -> None:
    # Core allows a single call an hour; JIT configurations go to their own resource.
    starved = FaultPlan.model_validate({"rate_limit": {"limit": 1}})
    engine = Engine(config(), trace((0, 30), (10, 30)), faults=starved)
    result = await engine.run()
    assert result.figures.served == 2
    charged = engine.github.charged_by_resource
    assert charged[REGISTRATION] == engine.github.charged["generate-jitconfig"] >= 2
    assert charged["core"] == 1
    assert result.figures.api_calls == charged.total()


@pytest.mark.slow
async def test_trace_export_command_against_the_simulator(tmp_path: Path) -> None:
    async with SimulatorServer(SimulatorOptions(tokens=("t0k",))) as server:
        world = server.simulator.world
        [job] = world.create_jobs([JobSpec("acme/app", X64, 5.0, 77, "build")])
        runner, _ = world.generate_jitconfig(
            "acme/app", {"name": "r", "labels": list(X64), "runner_group_id": 1}, org_level=False
        )
        world.runner_poll(runner.credential)
        world.runner_complete(runner.credential, job.id, job.planned_conclusion)
        out = tmp_path / "history.jsonl"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            "trace",
            "export",
            "--repo",
            "acme/app",
            "--since",
            "1d",
            "-o",
            str(out),
            "--api-url",
            server.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"GITHUB_TOKEN": "t0k", "PATH": "/usr/bin:/bin"},
        )
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
    [exported] = read_trace(out)
    assert (exported.repo, exported.labels, exported.run_id, exported.job) == (
        "acme/app",
        X64,
        77,
        "build",
    )


@pytest.mark.slow
async def test_auto_in_a_simulated_pool_is_this_machines_labels(tmp_path: Path) -> None:
    lines = (TRACES / "nightly.jsonl").read_text().splitlines()[:40]
    trace_file = tmp_path / "small.jsonl"
    trace_file.write_text("\n".join(lines) + "\n")
    reference = (TRACES / "reference.yaml").read_text()
    arch = detect_local_host().arch
    assert arch is not None
    config = tmp_path / "auto.yaml"
    config.write_text(
        reference.replace(
            "labels: [self-hosted, linux, x64]\n", "labels: [self-hosted, linux, auto]\n", 1
        )
    )
    results = []
    for path in (TRACES / "reference.yaml", config):
        code, output = await run_cli(
            "--trace", str(trace_file), "--config", str(path), "--json", str(tmp_path / "r.json")
        )
        assert code == 0, output
        results.append(json.loads((tmp_path / "r.json").read_text()))
    if arch == "x64":  # the reference's first pool is x64: `auto` serves the same jobs here
        assert results[1]["served"] == results[0]["served"]


def test_seeded_runner_name_suffixes_never_repeat() -> None:
    class Repeating(random.Random):
        """Draws 1, 1, 2: the second draw repeats the first."""

        def __init__(self) -> None:
            super().__init__(0)
            self.values = iter([1, 1, 2])

        def getrandbits(self, k: int, /) -> int:
            return next(self.values)

    suffix = unique_suffixes(Repeating())
    assert [suffix(), suffix()] == ["00000001", "00000002"]
