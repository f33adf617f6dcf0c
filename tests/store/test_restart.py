"""A restart (or a second daemon on the same database) loses nothing and sees every write."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from runnerscale.model import Job, JobState, Runner, RunnerState
from runnerscale.protocols import ObservedJob
from runnerscale.store import SqlStore

RUNNER = Runner(
    name="rs-gpu-7",
    pool="gpu",
    target="enterprise:acme",
    state=RunnerState.BOOTING,
    created_at=1_700_000_000.123456,
    state_since=1_700_000_042.654321,
    github_id=9_876_543_210,
    instance_id="runnerscale-gpu-7-c0ffee",
    job_id=12_345_678_901,
    attempts=2,
    last_error="boot timed out",
    idle_since=1_700_000_001.5,
)
OBSERVED = ObservedJob(
    id=12_345_678_901,
    repo="acme/models",
    labels=("self-hosted", "GPU", "cuda"),
    state=JobState.COMPLETED,
    created_at=1_700_000_000.25,
    run_id=5_555_555_555,
    name="train (cuda 12)",
    started_at=1_700_000_010.5,
    completed_at=1_700_000_900.75,
    runner_name="rs-gpu-7",
    conclusion="success",
)


def test_state_survives_close_and_reopen(make_store: Callable[[], SqlStore]) -> None:
    before = make_store()
    before.add_runner(RUNNER)
    job = before.observe_job(OBSERVED, now=1_700_000_901.0)
    before.set_job_pool(OBSERVED.id, "gpu")
    before.remember_delivery("delivery-1", now=1_700_000_901.0)
    before.set_value("etag:acme", 'W/"1"')
    before.close()

    after = make_store()
    assert after.get_runner(RUNNER.name) == RUNNER
    assert after.runners() == [RUNNER]
    stored = after.get_job(OBSERVED.id)
    assert stored == Job(
        id=OBSERVED.id,
        repo=OBSERVED.repo,
        labels=OBSERVED.labels,
        state=OBSERVED.state,
        created_at=OBSERVED.created_at,
        run_id=OBSERVED.run_id,
        name=OBSERVED.name,
        started_at=OBSERVED.started_at,
        completed_at=OBSERVED.completed_at,
        runner_name=OBSERVED.runner_name,
        conclusion=OBSERVED.conclusion,
        observed_at=1_700_000_901.0,
        pool="gpu",
    )
    assert stored == after.jobs([JobState.COMPLETED])[0]
    assert job.pool is None  # what observe_job returned before the pool was set
    assert after.remember_delivery("delivery-1", now=1_700_000_902.0) is False
    assert after.get_value("etag:acme") == 'W/"1"'


def test_two_stores_on_one_database_see_each_others_writes(
    make_store: Callable[[], SqlStore],
) -> None:
    one, two = make_store(), make_store()
    one.add_runner(RUNNER)
    assert two.get_runner(RUNNER.name) == RUNNER
    assert two.transition(RUNNER.name, RUNNER.state, RunnerState.IDLE)
    runner = one.get_runner(RUNNER.name)
    assert runner is not None
    assert runner.state is RunnerState.IDLE

    two.observe_job(
        ObservedJob(id=1, repo="acme/x", labels=("a",), state=JobState.QUEUED, created_at=1.0),
        now=2.0,
    )
    one.observe_job(
        ObservedJob(id=1, repo="acme/x", labels=("a",), state=JobState.IN_PROGRESS, created_at=1.0),
        now=3.0,
    )
    seen = two.get_job(1)
    assert seen is not None
    assert seen.state is JobState.IN_PROGRESS

    assert one.remember_delivery("d", now=5.0) is True
    assert two.remember_delivery("d", now=5.0) is False
    two.set_value("k", "v2")
    assert one.get_value("k") == "v2"


def test_concurrent_writers_keep_jobs_moving_forward(make_store: Callable[[], SqlStore]) -> None:
    """Two daemons (each with threads) racing on the same jobs: no lock errors, no lost
    forward move, no duplicate-delivery double count."""
    stores = [make_store(), make_store()]
    order = [JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED]
    firsts: list[bool] = []

    def work(worker: int) -> None:
        store = stores[worker % 2]
        for job_id in range(10):
            # Each worker sees the job's states in a different order.
            for step, state in enumerate(order[worker % 3 :] + order[: worker % 3]):
                store.observe_job(
                    ObservedJob(
                        id=job_id, repo="acme/x", labels=("a",), state=state, created_at=1.0
                    ),
                    now=10.0 + step,
                )
            firsts.append(store.remember_delivery(f"delivery-{job_id}", now=10.0))

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(work, worker) for worker in range(6)]:
            future.result()

    jobs = stores[0].jobs()
    assert len(jobs) == 10
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert firsts.count(True) == 10
