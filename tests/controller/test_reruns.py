"""Jobs whose runner died mid-job are re-run once, where the pool asks for it (issue 12, 6).

GitHub fails such a job ("lost communication with the server") without saying so in the job
or its webhook; the controller correlates its own runner's death with the job's failure. Each
test kills a busy runner's instance, lets GitHub fail the job, and counts the re-runs.
"""

from __future__ import annotations

import logging

import pytest

from runnerscale.controller.loops import Status
from runnerscale.controller.reruns import EXAMINE_FOR, RETRY_WAIT, TRANSIENT_RETRY_WAIT
from runnerscale.metrics import Metrics
from runnerscale.model import RERUN, JobLoss, JobState, RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import MakeRig, Rig
from tests.controller.fakes import CrashError

JOB = 7
#: The id the fake GitHub gives the first new attempt of a re-run job.
ATTEMPT = 900_001


@pytest.fixture
def world(make_world: MakeRig) -> Rig:
    return make_world(rerun_lost_jobs=True)


async def running(world: Rig, job_id: int = JOB) -> str:
    """A job queued, a runner created for it, and the job started on that runner."""
    await world.queue(job_id)
    await world.reconcile()
    (runner,) = world.runners(RunnerState.BOOTING)
    world.github.set_runner(runner.name, online=True, busy=True)
    await world.deliver(
        world.github.update_job(
            job_id, state=JobState.IN_PROGRESS, runner_name=runner.name, started_at=1.0
        )
    )
    assert world.runner(runner.name).state is RunnerState.BUSY
    return runner.name


async def dies(world: Rig, name: str, code: int = 137) -> None:
    """The runner's instance is killed; the poll sees it exited."""
    world.provider.exit(name, code=code, detail=f"exited with code {code}")
    await world.poll()


async def ends(world: Rig, job_id: int = JOB, conclusion: str = "failure") -> None:
    """GitHub gives up on the job (its runner stopped talking) and says it failed."""
    world.clock.advance(600)
    ended = world.github.update_job(
        job_id, state=JobState.COMPLETED, conclusion=conclusion, completed_at=world.clock.now()
    )
    await world.deliver(ended)


def reruns(world: Rig) -> list[str]:
    return [op for op in world.journal.ops("github") if op == "rerun_job"]


def loss(world: Rig, job_id: int = JOB) -> JobLoss:
    (found,) = [loss for loss in world.store.job_losses() if loss.job_id == job_id]
    return found


async def test_a_job_lost_with_its_runner_is_rerun_once_and_its_new_attempt_served(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    name = await running(world)
    await dies(world, name)
    recorded = loss(world)
    assert recorded.reason == f"runner {name} died mid-job: its instance exited with code 137"
    assert (recorded.repo, recorded.pool, recorded.settled_at) == ("acme/app", "linux", None)
    await world.reconcile()
    assert reruns(world) == []  # GitHub has not failed the job yet: nothing to re-run

    await ends(world)
    with caplog.at_level(logging.INFO, logger="runnerscale"):
        await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    assert ("rerun", "linux", "") in world.events
    settled = loss(world)
    assert (settled.outcome, settled.settled_at) == (RERUN, world.clock.now())
    assert any(
        f"job {JOB} of acme/app (pool linux): re-run: runner {name} died mid-job" in r.message
        for r in caplog.records
    ), caplog.text
    assert world.controller.status.lost_jobs == [settled]

    # GitHub queued a new attempt: it gets a runner like any job.
    world.journal.clear()
    await world.deliver(world.github.jobs[ATTEMPT])
    await world.reconcile()
    assert world.journal.ops("github").count("generate_jitconfig") == 1


async def test_a_job_seen_again_after_its_rerun_is_not_rerun_twice(world: Rig) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world)
    await world.reconcile()
    assert len(reruns(world)) == 1
    # The completion again (redelivered webhooks, also to a restarted daemon that remembers
    # no observation), polls, and more passes.
    failed = world.github.jobs[JOB]
    await world.deliver(failed, failed)
    world.restart()
    await world.deliver(failed)
    for _ in range(3):
        await world.poll()
        await world.reconcile()
        await world.sweep()
        world.clock.advance(RETRY_WAIT * 4)
    assert len(reruns(world)) == 1
    assert world.github.reruns == [(JOB, ATTEMPT)]


async def test_a_pool_without_rerun_lost_jobs_reruns_nothing_and_says_why(
    make_world: MakeRig,
) -> None:
    world = make_world()  # rerun_lost_jobs: false (the default)
    name = await running(world)
    await dies(world, name)
    await ends(world)
    await world.reconcile()
    await world.reconcile()
    assert reruns(world) == []
    assert loss(world).outcome == (
        "not re-run: pool linux does not re-run lost jobs (rerun_lost_jobs)"
    )
    assert not [event for event in world.events if event[0] == "rerun"]


@pytest.mark.parametrize("conclusion", ["success", "cancelled"])
async def test_a_lost_job_that_did_not_fail_is_not_rerun(world: Rig, conclusion: str) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world, conclusion=conclusion)
    await world.reconcile()
    assert reruns(world) == []
    assert loss(world).outcome == f"not re-run: the job ended {conclusion}"


async def test_a_job_that_fails_on_a_runner_that_did_not_die_is_not_rerun(world: Rig) -> None:
    name = await running(world)
    await ends(world)  # a failing test, say: the runner reports it and exits normally
    world.provider.exit(name, code=0)
    await world.poll()
    await world.reconcile()
    assert reruns(world) == []
    assert world.store.job_losses() == []


async def test_a_rerun_github_refuses_is_asked_again_later_and_made_once(world: Rig) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world)
    still_running = GitHubError("rerun job: 403 the workflow run is still running", status=403)
    world.github.fail("rerun_job", still_running, times=1)
    await world.reconcile()
    assert world.github.reruns == []
    assert ("error", "linux", "rerun") in world.events
    assert loss(world).settled_at is None  # reopened: a later pass asks again
    world.clock.advance(TRANSIENT_RETRY_WAIT)
    await world.reconcile()
    assert len(reruns(world)) == 1  # not before the wait has passed

    world.clock.advance(RETRY_WAIT)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    assert loss(world).outcome == RERUN
    world.clock.advance(RETRY_WAIT * 4)
    await world.reconcile()
    assert len(reruns(world)) == 2  # one refused, one made
    assert [event for event in world.events if event[0] == "rerun"] == [("rerun", "linux", "")]


async def test_a_rerun_that_failed_on_githubs_side_is_asked_again_within_seconds(
    world: Rig,
) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world)
    world.github.fail("rerun_job", GitHubError("rerun job: 502 bad gateway", status=502), times=2)
    await world.reconcile()
    world.clock.advance(TRANSIENT_RETRY_WAIT)
    await world.reconcile()
    assert len(reruns(world)) == 2  # both failed: the wait doubles
    world.clock.advance(TRANSIENT_RETRY_WAIT)
    await world.reconcile()
    assert world.github.reruns == []
    world.clock.advance(TRANSIENT_RETRY_WAIT)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]


async def test_a_restart_between_the_loss_and_the_failure_still_reruns_once(world: Rig) -> None:
    name = await running(world)
    await dies(world, name)
    world.restart()  # the loss is in the database, not in memory
    await ends(world)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    world.restart()
    await world.poll()
    await world.reconcile()
    assert len(reruns(world)) == 1


async def test_a_crash_between_the_claim_and_the_call_loses_the_rerun_rather_than_doubling_it(
    world: Rig,
) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world)
    world.github.fail("rerun_job", CrashError("kill -9"), times=1)
    with pytest.raises(CrashError):
        await world.reconcile()
    world.restart()
    await world.reconcile()
    # The loss was settled before GitHub was asked: never twice wins over always once.
    assert world.github.reruns == []
    assert len(reruns(world)) == 1
    assert loss(world).outcome == RERUN


async def test_an_attempt_that_loses_its_runner_again_is_not_rerun_again(world: Rig) -> None:
    name = await running(world)
    await dies(world, name)
    await ends(world)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]

    # The new attempt kills its runner too (the job itself may be what kills it).
    await world.deliver(world.github.jobs[ATTEMPT])
    await world.reconcile()
    (runner,) = world.runners(RunnerState.BOOTING)
    await world.deliver(
        world.github.update_job(ATTEMPT, state=JobState.IN_PROGRESS, runner_name=runner.name)
    )
    await dies(world, runner.name)
    await ends(world, ATTEMPT)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    assert loss(world, ATTEMPT).outcome == (
        "not re-run: an earlier attempt of this job was re-run already"
    )


async def test_a_job_whose_runner_vanished_from_the_backend_is_rerun(world: Rig) -> None:
    name = await running(world)
    world.provider.lose(name)  # the machine is gone (a spot instance reclaimed, say)
    await world.sweep()
    assert loss(world).reason == (
        f"runner {name} died mid-job: its instance disappeared from the backend"
    )
    await ends(world)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]


async def test_a_busy_runner_whose_job_is_unknown_loses_no_job(
    world: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    name = await world.busy_runner()  # busy in GitHub's list; its job's webhook never came
    with caplog.at_level(logging.WARNING, logger="runnerscale"):
        await dies(world, name)
    assert world.store.job_losses() == []
    assert f"runner {name} (pool linux) died mid-job, but its job is not known" in caplog.text


def test_each_rerun_is_counted_by_pool_in_the_metrics() -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None)
    events = metrics.events()
    events.rerun("linux")
    events.rerun("linux")
    events.rerun("gpu")
    text = metrics.render().decode()
    assert 'runnerscale_jobs_rerun_total{pool="linux"} 2.0' in text
    assert 'runnerscale_jobs_rerun_total{pool="gpu"} 1.0' in text


async def test_a_reruns_repository_is_read_by_every_poll_until_its_new_attempt_is_heard_of(
    world: Rig,
) -> None:
    """A re-run is no push: if the new attempt's webhook is lost, only a poll that reads the
    repository finds it (the chaos benchmark caught an attempt left queued for good)."""
    name = await running(world)
    await dies(world, name)
    assert world.controller.poll_hints().expected_repos == frozenset()
    await ends(world)
    await world.reconcile()
    assert world.controller.poll_hints().expected_repos == {"acme/app"}
    await world.deliver(world.github.jobs[ATTEMPT])  # heard of: nothing more to expect
    assert world.controller.poll_hints().expected_repos == frozenset()


# ---------------------------------------------------------------- losses only GitHub saw

LOST = (
    "The self-hosted runner: {runner} lost communication with the server. Verify the machine "
    "is running and has a healthy network connection."
)


def annotations_read(world: Rig) -> int:
    return world.journal.ops("github").count("job_annotations")


async def test_a_loss_runnerscale_did_not_see_is_found_in_githubs_annotation_and_rerun_once(
    world: Rig,
) -> None:
    """The runner's death went unseen (the daemon was down, or GitHub failed the job before
    the runner was seen to die and it was removed as done): GitHub's annotation says."""
    name = await running(world)
    lost = LOST.format(runner=name)
    world.github.annotations[JOB] = ["Process completed with exit code 1.", lost]
    await ends(world)
    world.provider.exit(name, code=0)  # what was seen: an ordinary end
    await world.poll()
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    settled = loss(world)
    assert settled.reason == "GitHub: " + LOST.format(runner=name)
    assert (settled.pool, settled.outcome) == ("linux", RERUN)
    for _ in range(3):
        world.restart()  # a restarted daemon examines again; the loss is settled already
        world.clock.advance(60)
        await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    assert annotations_read(world) == 1


async def test_a_job_that_failed_by_its_steps_is_examined_once_and_not_rerun(world: Rig) -> None:
    name = await running(world)
    world.github.annotations[JOB] = ["Process completed with exit code 1."]
    await ends(world)
    world.provider.exit(name, code=0)
    for _ in range(4):
        await world.poll()
        await world.reconcile()
        world.clock.advance(60)
    assert annotations_read(world) == 1
    assert reruns(world) == []
    assert world.store.job_losses() == []


async def test_a_loss_seen_and_reported_by_github_too_is_rerun_once_without_reading(
    world: Rig,
) -> None:
    name = await running(world)
    world.github.annotations[JOB] = [LOST.format(runner=name)]
    await dies(world, name)
    await ends(world)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
    assert loss(world).reason.startswith(f"runner {name} died mid-job")
    assert annotations_read(world) == 0  # the loss was recorded: nothing to ask


async def test_annotations_are_read_only_where_a_lost_job_would_be_rerun(
    make_world: MakeRig,
) -> None:
    world = make_world()  # rerun_lost_jobs: false
    name = await running(world)
    world.github.annotations[JOB] = [LOST.format(runner=name)]
    await ends(world)
    await world.reconcile()
    assert annotations_read(world) == 0
    assert world.store.job_losses() == []


async def test_a_failed_job_of_a_foreign_runner_or_long_ago_is_not_examined(world: Rig) -> None:
    await world.queue(JOB)
    world.clock.advance(600)
    foreign = world.github.update_job(
        JOB,
        state=JobState.COMPLETED,
        conclusion="failure",
        runner_name="someone-elses-runner",
        completed_at=world.clock.now(),
    )
    await world.deliver(foreign)
    await world.queue(JOB + 1)
    await world.reconcile()
    (runner,) = world.runners(RunnerState.BOOTING)
    old = world.github.update_job(
        JOB + 1,
        state=JobState.COMPLETED,
        conclusion="failure",
        runner_name=runner.name,
        completed_at=world.clock.now() - EXAMINE_FOR - 1,
    )
    await world.deliver(old)
    world.clock.advance(60)
    await world.reconcile()
    assert annotations_read(world) == 0


async def test_an_annotation_read_that_fails_is_tried_again(world: Rig) -> None:
    name = await running(world)
    world.github.annotations[JOB] = [LOST.format(runner=name)]
    await ends(world)
    world.github.fail("job_annotations", times=1)
    await world.reconcile()
    assert reruns(world) == []
    world.clock.advance(60)
    await world.reconcile()
    assert world.github.reruns == [(JOB, ATTEMPT)]
