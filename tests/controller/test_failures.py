"""Failed creations: the runner is marked failed, nothing is leaked, the pool backs off and is
reported unhealthy until one of its runners comes online (a runner that starts and then crashes
before it does is a failure too)."""

from __future__ import annotations

from runnerscale.controller.actions import BACKOFF_BASE
from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import GitHubError
from tests.controller.conftest import BOOT_TIMEOUT, Rig


def _pool_health(world: Rig) -> tuple[bool, str | None]:
    (pool,) = world.controller.status.pools
    return pool.healthy, pool.last_error


async def test_a_refused_jit_config_fails_the_runner_and_backs_off(world: Rig) -> None:
    world.github.fail("generate_jitconfig", GitHubError("500 internal error"), times=1)
    await world.queue(1)
    start = world.clock.now()
    await world.reconcile()

    (failed,) = world.runners()
    assert failed.state is RunnerState.FAILED
    assert failed.last_error is not None
    assert "500 internal error" in failed.last_error
    assert world.journal.ops(subject=failed.name) == ["pending", "generate_jitconfig", "failed"]
    assert world.provider.specs == []
    assert world.github.registrations == {}
    assert world.pool.backoff_until == start + BACKOFF_BASE
    healthy, last_error = _pool_health(world)
    assert not healthy
    assert last_error is not None
    assert "500 internal error" in last_error

    # Still backing off: the job is queued, but nothing is tried.
    for step in (0.0, BACKOFF_BASE - 1):
        world.clock.advance(step)
        await world.reconcile()
        assert world.journal.ops("github").count("generate_jitconfig") == 1

    # The backoff has passed: the next cycle tries again, and succeeds.
    world.clock.advance(1)
    await world.reconcile()
    (retry,) = world.runners(RunnerState.BOOTING)
    assert retry.name != failed.name
    assert world.runner(failed.name).state is RunnerState.FAILED
    assert not world.pool.healthy  # started, but not online yet
    world.github.set_runner(retry.name, online=True)
    await world.poll()
    await world.reconcile()
    assert world.pool.backoff_until == 0.0
    assert world.pool.consecutive_failures == 0
    assert _pool_health(world) == (True, None)


async def test_several_failures_in_one_cycle_back_off_once(world: Rig) -> None:
    world.github.fail("generate_jitconfig")
    await world.deliver(*(world.job(job_id) for job_id in range(3)))
    start = world.clock.now()
    await world.reconcile()

    assert [runner.state for runner in world.runners()] == [RunnerState.FAILED] * 3
    assert world.pool.consecutive_failures == 1
    assert world.pool.backoff_until == start + BACKOFF_BASE

    # The next failing cycle doubles the backoff, once again.
    world.clock.advance(BACKOFF_BASE)
    await world.reconcile()
    assert len(world.runners(RunnerState.FAILED)) == 6
    assert world.pool.consecutive_failures == 2
    assert world.pool.backoff_until == world.clock.now() + 2 * BACKOFF_BASE


async def test_a_backend_failure_undoes_the_github_registration(world: Rig) -> None:
    world.provider.fail("create", times=1)
    await world.queue(1)
    await world.reconcile()

    (failed,) = world.runners()
    assert failed.state is RunnerState.FAILED
    assert world.journal.ops(subject=failed.name) == [
        "pending",
        "generate_jitconfig",
        "creating",
        "create",
        "failed",
        "delete_runner",
    ]
    assert world.github.registrations == {}
    assert world.provider.instances == {}
    healthy, last_error = _pool_health(world)
    assert not healthy
    assert last_error is not None
    assert "create failed" in last_error

    world.clock.advance(BACKOFF_BASE)
    await world.reconcile()
    (booting,) = world.runners(RunnerState.BOOTING)
    # Its job is picked up: the runner is online, so the pool works again.
    await world.deliver(world.job(1, JobState.IN_PROGRESS, runner_name=booting.name))
    await world.reconcile()
    assert _pool_health(world) == (True, None)


async def test_runners_that_crash_before_coming_online_back_the_pool_off_more_each_time(
    world: Rig,
) -> None:
    await world.queue(1)
    delays = []
    for _ in range(3):
        await world.reconcile()
        (booting,) = world.runners(RunnerState.BOOTING)
        world.provider.exit(booting.name, code=1, detail="exec format error")
        await world.poll()
        await world.reconcile()  # reaps it; the job is still queued, but the pool backs off
        assert not world.runners(RunnerState.BOOTING)
        healthy, last_error = _pool_health(world)
        assert not healthy
        assert last_error is not None
        assert "exited with code 1 before it came online (exec format error)" in last_error
        delays.append(world.pool.backoff_until - world.clock.now())
        world.clock.advance(delays[-1])
    assert delays == [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE]


async def test_a_registration_left_by_a_failed_undo_is_cleaned_as_an_orphan(world: Rig) -> None:
    world.provider.fail("create", times=1)
    world.github.fail("delete_runner", times=1)
    await world.queue(1)
    await world.reconcile()
    (failed,) = world.runners()
    assert failed.state is RunnerState.FAILED
    assert world.github.find(failed.name) is not None  # the undo could not reach GitHub

    await world.sweep()
    assert world.github.find(failed.name) is None
    assert world.controller.janitor.cleaned["github_orphan"] == 1


async def test_metric_hooks_hear_of_creations_errors_and_cleanups(world: Rig) -> None:
    world.github.fail("generate_jitconfig", times=1)
    await world.queue(1)
    await world.reconcile()
    world.clock.advance(BACKOFF_BASE)
    await world.reconcile()
    world.clock.advance(BOOT_TIMEOUT)
    await world.sweep()
    assert world.events == [
        ("error", "linux", "create"),
        ("scaled", "linux", "create"),
        ("cleaned", "linux", "boot_timeout"),
        ("scaled", "linux", "delete"),
    ]
