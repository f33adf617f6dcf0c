"""Scale-up: a queued job gets exactly one runner, state first; limits and matching hold."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runnerscale.model import JobState, RunnerState
from tests.controller.conftest import POOL_LABELS, PREFIX, REPO_A, MakeRig, Rig


async def test_a_queued_job_creates_one_runner_writing_each_state_before_its_effect(
    world: Rig,
) -> None:
    await world.queue(1)
    await world.reconcile()

    (runner,) = world.runners()
    assert runner.name.startswith(PREFIX)
    assert runner.state is RunnerState.BOOTING
    assert world.journal.ops(subject=runner.name) == [
        "pending",  # store
        "generate_jitconfig",  # GitHub: registers the runner
        "creating",  # store
        "create",  # backend: starts the instance
        "booting",  # store
    ]

    registration = world.github.find(runner.name)
    assert registration is not None
    assert registration.target == REPO_A.key
    assert registration.labels == POOL_LABELS  # as written in the config
    assert runner.github_id == registration.id

    (spec,) = world.provider.specs
    instance = world.provider.find(runner.name)
    assert instance is not None
    assert instance.running
    assert runner.instance_id == instance.id
    assert spec.runner_name == runner.name
    assert spec.pool == "linux"
    assert spec.labels == POOL_LABELS
    assert spec.jitconfig == world.github.issued[runner.name]  # unchanged, for this runner
    assert spec.jitconfig not in repr(spec)  # a secret: never in a log line

    # The same demand again: the booting runner is on its way, nothing more is created.
    await world.reconcile()
    assert len(world.runners()) == 1
    assert world.journal.ops("github").count("generate_jitconfig") == 1


@dataclass(frozen=True)
class Case:
    id: str
    queued: int = 0
    max_runners: int = 3
    min_idle: int = 0
    labels: tuple[str, ...] = ("self-hosted", "linux")
    state: JobState = JobState.QUEUED
    created: int = 0
    unmatched: int = 0


CASES = [
    Case("one queued job, one runner", queued=1, created=1),
    Case("one runner per queued job", queued=2, created=2),
    Case("never above the cap", queued=5, max_runners=3, created=3),
    Case("min_idle without jobs", min_idle=2, created=2),
    Case("min_idle on top of demand", queued=1, min_idle=1, created=2),
    Case("min_idle within the cap", queued=2, min_idle=2, max_runners=3, created=3),
    Case("labels compare case-insensitively", queued=1, labels=("Self-Hosted", "LINUX"), created=1),
    Case("a subset of the pool's labels", queued=1, labels=("x64",), created=1),
    Case("unmatched job: nothing", queued=2, labels=("self-hosted", "gpu"), unmatched=2),
    Case("waiting for approval: nothing", queued=1, state=JobState.WAITING),
    Case("already running: nothing", queued=1, state=JobState.IN_PROGRESS),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_how_many_runners_reconcile_creates(make_world: MakeRig, case: Case) -> None:
    world = make_world(max_runners=case.max_runners, min_idle=case.min_idle)
    jobs = [world.job(job_id, case.state, labels=case.labels) for job_id in range(case.queued)]
    if jobs:
        await world.deliver(*jobs)

    await world.reconcile()
    await world.reconcile()  # a second cycle on the same demand changes nothing

    runners = world.runners()
    assert len(runners) == case.created
    assert all(runner.state is RunnerState.BOOTING for runner in runners)
    assert len(world.provider.instances) == case.created
    assert len(world.github.registrations) == case.created
    assert world.controller.status.unmatched_jobs == case.unmatched
    (pool,) = world.controller.status.pools
    assert pool.booting == case.created
    assert pool.healthy


async def test_runners_already_there_count_against_the_cap(make_world: MakeRig) -> None:
    world = make_world(max_runners=2)
    busy = await world.busy_runner()
    await world.deliver(*(world.job(job_id) for job_id in range(3)))
    await world.reconcile()
    assert sorted(world.states().values()) == sorted([RunnerState.BUSY, RunnerState.BOOTING])
    assert world.runner(busy).state is RunnerState.BUSY


async def test_a_job_for_another_architecture_is_unmatched_with_its_reason(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await world.queue(1, labels=("self-hosted", "linux", "arm64"))
    await world.reconcile()
    assert world.runners() == []
    status = world.controller.status
    assert status.unmatched_jobs == 1
    [unmatched] = status.unmatched
    assert unmatched.id == 1
    assert unmatched.labels == ("self-hosted", "linux", "arm64")
    assert unmatched.reason == "it needs arm64, but every pool here runs on x64"
    assert "it needs arm64, but every pool here runs on x64" in caplog.text
