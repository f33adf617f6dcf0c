"""The reference points, on traces small enough to work out by hand, and on the shared ones."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runnerscale.config import load_config
from runnerscale.model import PoolSpec, match_pool, normalize_labels
from runnerscale.simulation.bounds import PoolModel, lower_bound, pool_models, static_fleet
from runnerscale.simulation.results import RunnerSeconds
from runnerscale.simulation.trace import TraceJob, read_trace

TRACES = Path(__file__).parents[2].parent / "shared" / "traces"
X64 = ("self-hosted", "linux", "x64")
GPU = ("self-hosted", "linux", "x64", "gpu")
BOOT = 30.0


def pool(
    name: str,
    labels: tuple[str, ...],
    max_runners: int,
    *,
    boot: float = BOOT,
    price: float = 0.0,
    order: int = 0,
) -> PoolModel:
    spec = PoolSpec(
        name=name, labels=normalize_labels(labels), max_runners=max_runners, order=order
    )
    return PoolModel(spec=spec, boot_time=boot, cost_per_hour=price)


def job(at: float, duration: float, labels: tuple[str, ...] = X64, name: str = "") -> TraceJob:
    return TraceJob(at=at, repo="acme/app", labels=labels, duration=duration, job=name or None)


# ---------------------------------------------------------------------- the lower bound


def test_without_a_binding_cap_every_wait_is_the_boot_time() -> None:
    jobs = [job(0, 100), job(10, 50), job(20, 30)]
    figures = lower_bound(jobs, [pool("x64", X64, 10, price=3.6)])
    assert figures.queue_waits == (30.0, 30.0, 30.0)
    assert (figures.jobs, figures.served, figures.unserved) == (3, 3, 0)
    # Runner time is boot + job for every job, and nothing idles.
    assert figures.runner_seconds == RunnerSeconds(busy=180.0, idle=0.0, booting=90.0)
    assert figures.runner_seconds.total == 3 * BOOT + 100 + 50 + 30
    assert figures.cost == pytest.approx((130 + 80 + 60) / 3600 * 3.6)
    assert figures.api_calls == 3
    assert figures.idle_ratio == 0.0


def test_a_cap_of_one_queues_simultaneous_jobs_first_come_first_served() -> None:
    d1, d2, d3 = 100.0, 50.0, 20.0
    jobs = [job(5, d1, name="1"), job(5, d2, name="2"), job(5, d3, name="3")]
    figures = lower_bound(jobs, [pool("x64", X64, 1)])
    # Each job gets a fresh runner (ephemeral), which boots once the previous slot frees:
    # job 2's slot frees at 5 + boot + d1, and its own runner then boots too.
    assert figures.queue_waits == (
        BOOT,  # 30
        BOOT + d1 + BOOT,  # 160
        BOOT + d1 + BOOT + d2 + BOOT,  # 240
    )
    assert figures.queue_waits == (30.0, 160.0, 240.0)
    assert figures.queue_wait.max == 240.0
    assert figures.runner_seconds == RunnerSeconds(busy=170.0, idle=0.0, booting=90.0)


def test_a_slot_frees_for_the_next_job_only_when_its_job_ends() -> None:
    # Cap 2: jobs at 0 (d 100) and 0 (d 10) take both slots; the slots free at 130 and 40.
    # The job at 20 takes the slot freeing at 40 (start 40, wait 40 + 30 - 20 = 50) and frees
    # it at 40 + 30 + 5 = 75; the job at 200 finds both free (wait 30).
    jobs = [job(0, 100), job(0, 10), job(20, 5), job(200, 1)]
    figures = lower_bound(jobs, [pool("x64", X64, 2)])
    assert figures.queue_waits == (30.0, 30.0, 50.0, 30.0)


def test_jobs_go_to_their_most_specific_pool_and_caps_are_per_pool() -> None:
    pools = [pool("x64", X64, 10, order=0), pool("gpu", GPU, 1, order=1)]
    jobs = [
        job(0, 100, GPU),  # gpu: wait 30, slot frees at 130
        job(0, 100, X64),  # x64 (fewer extra labels than gpu): wait 30
        job(0, 100, ("self-hosted", "GPU")),  # gpu again (case-insensitive): waits for slot
        job(0, 100, X64),  # x64: the gpu pool's cap does not touch it
    ]
    figures = lower_bound(jobs, pools)
    # Waits are listed pool by pool (x64 first, as declared), each in order of queueing.
    assert sorted(figures.queue_waits) == [30.0, 30.0, 30.0, 160.0]
    assert figures.served == 4


def test_the_bound_is_given_pool_by_pool_and_adds_up() -> None:
    pools = [pool("x64", X64, 10, price=3.6), pool("gpu", GPU, 1, price=36.0, order=1)]
    jobs = [
        job(0, 100, GPU),
        job(0, 50, GPU),  # waits for the gpu pool's one slot: 30 + 100 + 30
        job(0, 20, X64),
        job(5, 1, ("windows",)),  # no pool: counted in the whole run only
    ]
    figures = lower_bound(jobs, pools)
    x64, gpu = figures.pools["x64"], figures.pools["gpu"]
    assert list(figures.pools) == ["x64", "gpu"]
    assert (x64.jobs, x64.served, x64.unserved, x64.queue_waits) == (1, 1, 0, (30.0,))
    assert (gpu.jobs, gpu.served, gpu.unserved, gpu.queue_waits) == (2, 2, 0, (30.0, 160.0))
    assert gpu.runner_seconds == RunnerSeconds(busy=150.0, idle=0.0, booting=60.0)
    assert gpu.cost == pytest.approx(210 / 3600 * 36.0)
    assert x64.cost == pytest.approx(50 / 3600 * 3.6)
    assert (figures.jobs, figures.unserved) == (4, 1)
    assert figures.runner_seconds == x64.runner_seconds + gpu.runner_seconds
    assert figures.cost == pytest.approx(x64.cost + gpu.cost)
    assert figures.queue_wait.max == gpu.queue_wait.max == 160.0


def test_jobs_the_autoscaler_never_hears_of_are_unserved_in_their_pool() -> None:
    outside = TraceJob(at=0, repo="elsewhere/app", labels=X64, duration=10)
    figures = lower_bound(
        [job(0, 10), outside], [pool("x64", X64, 2)], seen=lambda j: j.repo == "acme/app"
    )
    x64 = figures.pools["x64"]
    assert (x64.jobs, x64.served, x64.unserved) == (2, 1, 1)
    assert (figures.jobs, figures.served, figures.unserved) == (2, 1, 1)
    assert figures.api_calls == 1


def test_equally_specific_pools_go_by_declared_order() -> None:
    pools = [pool("first", X64, 1, order=0), pool("second", X64, 1, order=1)]
    figures = lower_bound([job(0, 100), job(0, 100)], pools)
    # Both go to the first pool, so the second one waits for its single slot.
    assert figures.queue_waits == (30.0, 160.0)


def test_jobs_no_pool_serves_are_unserved_and_have_no_wait() -> None:
    jobs = [job(0, 100), job(1, 100, ("windows",)), job(2, 100, ("self-hosted", "arm64"))]
    figures = lower_bound(jobs, [pool("x64", X64, 5, price=1.0)])
    assert (figures.jobs, figures.served, figures.unserved) == (3, 1, 2)
    assert figures.queue_waits == (30.0,)
    assert figures.runner_seconds == RunnerSeconds(busy=100.0, idle=0.0, booting=30.0)
    assert figures.cost == pytest.approx(130 / 3600)
    assert figures.api_calls == 1
    assert figures.api_calls_per_job == pytest.approx(1 / 3)


def test_cost_adds_each_pools_price_for_boot_plus_job() -> None:
    pools = [
        pool("x64", X64, 5, boot=60, price=0.36),
        pool("gpu", GPU, 5, boot=120, price=3.6),
    ]
    figures = lower_bound([job(0, 3540, X64), job(0, 3480, GPU), job(0, 1740, X64)], pools)
    # x64: (60 + 3540) + (60 + 1740) = 5400 s = 1.5 h at 0.36; gpu: 120 + 3480 = 1 h at 3.6.
    assert figures.cost == pytest.approx(1.5 * 0.36 + 3.6)
    assert figures.runner_seconds.booting == 240.0


def test_the_bound_is_deterministic_and_ignores_input_order() -> None:
    rng = random.Random(7)
    jobs = [
        job(round(rng.uniform(0, 3600), 2), round(rng.uniform(1, 900), 2), rng.choice([X64, GPU]))
        for _ in range(300)
    ]
    pools = [pool("x64", X64, 8, price=0.1), pool("gpu", GPU, 2, price=1.2)]
    first = lower_bound(jobs, pools)
    assert lower_bound(jobs, pools) == first
    shuffled = list(jobs)
    rng.shuffle(shuffled)
    assert lower_bound(shuffled, pools) == first
    assert static_fleet(shuffled, pools) == static_fleet(jobs, pools)


def test_no_jobs_gives_zero_figures() -> None:
    figures = lower_bound([], [pool("x64", X64, 1)])
    assert (figures.jobs, figures.served, figures.unserved, figures.cost) == (0, 0, 0, 0.0)
    assert figures.queue_wait.p95 == 0.0


# ---------------------------------------------------------------------- the static fleet


def test_static_fleet_waits_idle_and_cost_by_hand() -> None:
    jobs = [job(0, 100), job(0, 50), job(10, 30), job(200, 10)]
    pools = [pool("x64", X64, 50, price=3.6), pool("gpu", GPU, 50, price=36.0)]
    figures = static_fleet(jobs, pools, n=2)
    # Two runners already up: jobs 1 and 2 start at once, job 3 waits for the one freeing at
    # 50 (wait 40, ends 80), job 4 finds both free. The trace ends with job 4, at 210.
    assert figures.queue_waits == (0.0, 0.0, 40.0, 0.0)
    assert (figures.served, figures.unserved) == (4, 0)
    busy = 100 + 50 + 30 + 10
    span = 210.0
    # Idle: x64 runners are on for 2 x 210 s and busy for 190; the unused gpu pool idles all.
    assert figures.runner_seconds == RunnerSeconds(
        busy=busy, idle=(2 * span - busy) + 2 * span, booting=0.0
    )
    assert figures.runner_seconds.idle == 650.0
    assert figures.cost == pytest.approx(2 * span / 3600 * 3.6 + 2 * span / 3600 * 36.0)
    assert figures.cost == pytest.approx(0.42 + 4.2)
    assert figures.api_calls == 0


def test_static_fleet_defaults_to_each_pools_cap() -> None:
    pools = [pool("x64", X64, 1), pool("gpu", GPU, 3)]
    jobs = [job(0, 100), job(0, 50), job(0, 10, GPU), job(0, 10, GPU)]
    figures = static_fleet(jobs, pools)
    assert figures.queue_waits == (0.0, 100.0, 0.0, 0.0)
    # Span 150 (the second x64 job ends then): x64 1 x 150 - 150 busy, gpu 3 x 150 - 20.
    assert figures.runner_seconds.idle == 0.0 + 430.0


def test_static_fleet_of_zero_serves_nothing() -> None:
    figures = static_fleet([job(0, 100), job(5, 1, ("windows",))], [pool("x64", X64, 4)], n=0)
    assert (figures.served, figures.unserved, figures.cost) == (0, 2, 0.0)
    with pytest.raises(ValueError, match="0 or more runners"):
        static_fleet([], [pool("x64", X64, 4)], n=-1)


def test_static_fleet_pools_are_paid_for_the_whole_trace() -> None:
    pools = [pool("x64", X64, 1, price=3.6), pool("gpu", GPU, 2, price=36.0)]
    figures = static_fleet([job(0, 100), job(0, 50), job(10, 10, GPU)], pools)
    x64, gpu = figures.pools["x64"], figures.pools["gpu"]
    # The trace ends at 150 with the second x64 job; the gpu fleet is on until then too.
    assert x64.queue_waits == (0.0, 100.0)
    assert x64.runner_seconds == RunnerSeconds(busy=150.0, idle=0.0, booting=0.0)
    assert gpu.runner_seconds == RunnerSeconds(busy=10.0, idle=2 * 150 - 10, booting=0.0)
    assert gpu.cost == pytest.approx(2 * 150 / 3600 * 36.0)
    assert figures.runner_seconds == x64.runner_seconds + gpu.runner_seconds
    empty = static_fleet([job(0, 100)], pools, n=0).pools["x64"]
    assert (empty.jobs, empty.served, empty.unserved, empty.runner_seconds.total) == (1, 0, 1, 0)


def test_static_fleet_lasts_until_the_last_job_is_queued_at_least() -> None:
    figures = static_fleet([job(0, 10), job(500, 1, ("windows",))], [pool("x64", X64, 1)])
    assert figures.runner_seconds.idle == 500 - 10


# ---------------------------------------------------------------------- the shared traces


@pytest.fixture(scope="module")
def reference_pools() -> list[PoolModel]:
    config = load_config(TRACES / "reference.yaml", env={"GITHUB_TOKEN": "unused"})
    return pool_models(config)


def test_pool_models_take_the_mean_boot_time_and_price(reference_pools: list[PoolModel]) -> None:
    assert [(p.spec.name, p.spec.max_runners) for p in reference_pools] == [
        ("x64", 50),
        ("arm64", 20),
        ("gpu", 4),
    ]
    assert [p.boot_time for p in reference_pools] == [30.0, 30.0, 30.0]
    assert [p.cost_per_hour for p in reference_pools] == [0.10, 0.08, 1.20]


@pytest.mark.parametrize("name", ["workday", "matrix-bursts", "nightly"])
def test_shared_traces_give_plausible_bounds(reference_pools: list[PoolModel], name: str) -> None:
    jobs = read_trace(TRACES / f"{name}.jsonl")
    specs = [p.spec for p in reference_pools]
    matched = [j for j in jobs if match_pool(specs, j.labels) is not None]
    figures = lower_bound(jobs, reference_pools)
    assert figures.jobs == len(jobs)
    assert figures.served == len(matched) == len(jobs) - figures.unserved
    assert min(figures.queue_waits) == pytest.approx(30.0)
    assert figures.queue_wait.p50 >= 30.0
    assert figures.queue_wait.p95 >= 30.0
    assert figures.runner_seconds.booting == pytest.approx(30.0 * figures.served)
    assert figures.runner_seconds.busy == pytest.approx(sum(j.duration for j in matched))
    assert figures.runner_seconds.idle == 0.0
    assert figures.cost > 0

    fleet = static_fleet(jobs, reference_pools)
    # Always-on runners at every pool's cap never wait for a boot: each job starts no later
    # than under the bound, so it waits at least a boot time less.
    assert len(fleet.queue_waits) == len(figures.queue_waits)
    for static_wait, bound_wait in zip(fleet.queue_waits, figures.queue_waits, strict=True):
        assert static_wait + 30.0 <= bound_wait + 1e-6
    assert fleet.runner_seconds.idle > figures.runner_seconds.idle
    assert fleet.cost > figures.cost


def test_a_binding_cap_shows_in_the_shared_bursty_traces(
    reference_pools: list[PoolModel],
) -> None:
    workday = lower_bound(read_trace(TRACES / "workday.jsonl"), reference_pools)
    assert workday.queue_wait.p50 == pytest.approx(30.0)
    for name in ("matrix-bursts", "nightly"):
        figures = lower_bound(read_trace(TRACES / f"{name}.jsonl"), reference_pools)
        assert figures.queue_wait.p95 > 30.0, name
