"""A backend that implements the optional ``OnlineAware`` hook hears once of each runner of
its pool coming online, in a task of its own: the loop never waits for it, and its failure is
logged and dropped (the EC2 backend's sweep is the safety net)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runnerscale.controller import online
from runnerscale.controller.online import OnlineNotices
from runnerscale.model import JobState, RunnerState
from runnerscale.protocols import OnlineAware
from tests.controller.conftest import MakeRig, Rig, settle
from tests.controller.fakes import FakeProvider, OnlineAwareProvider


@pytest.fixture
def aware(make_world: MakeRig) -> Rig:
    return make_world(online_aware=True)


def provider_of(world: Rig) -> OnlineAwareProvider:
    assert isinstance(world.provider, OnlineAwareProvider)
    return world.provider


def instance_of(world: Rig, name: str) -> str:
    instance_id = world.runner(name).instance_id
    assert instance_id is not None
    return instance_id


async def test_the_backend_hears_once_of_a_runner_online_in_github(aware: Rig) -> None:
    name = await aware.booting_runner()
    assert provider_of(aware).told == []  # booting: not yet
    aware.github.set_runner(name, online=True)
    await aware.poll()
    assert aware.runner(name).state is RunnerState.IDLE
    await aware.controller.actions.online.settle()
    assert provider_of(aware).told == [instance_of(aware, name)]

    # Busy, listed again, its job observed: it came online once.
    aware.github.set_runner(name, online=True, busy=True)
    await aware.poll()
    await aware.deliver(aware.job(1, JobState.IN_PROGRESS, runner_name=name))
    await aware.poll()
    await aware.controller.actions.online.settle()
    assert provider_of(aware).told == [instance_of(aware, name)]


async def test_a_runner_taking_its_job_at_once_is_online_too(aware: Rig) -> None:
    """Its first sign of life is a ``workflow_job`` webhook, not GitHub's runner list."""
    name = await aware.booting_runner()
    await aware.deliver(aware.job(1, JobState.IN_PROGRESS, runner_name=name))
    assert aware.runner(name).state is RunnerState.BUSY
    await aware.controller.actions.online.settle()
    assert provider_of(aware).told == [instance_of(aware, name)]


async def test_a_runner_online_before_its_create_returned_is_told_when_it_returns(
    aware: Rig,
) -> None:
    aware.provider.create_wait = lambda: aware.clock.sleep(30)
    await aware.queue(1)
    reconcile = asyncio.create_task(aware.reconcile())
    await settle()
    (runner,) = aware.runners()
    aware.github.set_runner(runner.name, online=True)
    await aware.poll()  # online, still creating: its instance is not known yet
    await aware.deliver(aware.job(1, JobState.IN_PROGRESS, runner_name=runner.name))
    await aware.controller.actions.online.settle()
    assert provider_of(aware).told == []

    aware.clock.advance(30)
    await reconcile
    await aware.controller.actions.online.settle()
    assert aware.runner(runner.name).state is RunnerState.BUSY
    assert provider_of(aware).told == [instance_of(aware, runner.name)]


async def test_the_loop_does_not_wait_for_the_backend(aware: Rig) -> None:
    provider_of(aware).online_wait = lambda: aware.clock.sleep(60)
    name = await aware.booting_runner()
    aware.github.set_runner(name, online=True)
    await aware.poll()  # returns while the backend is still at it
    assert aware.runner(name).state is RunnerState.IDLE
    assert aware.controller.actions.online.pending == 1
    await settle()  # (the backend sleeps on the virtual clock)
    assert provider_of(aware).told == []
    aware.clock.advance(60)
    await aware.controller.actions.online.settle()
    assert provider_of(aware).told == [instance_of(aware, name)]


async def test_a_failing_backend_is_logged_and_not_asked_again(
    aware: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    provider_of(aware).fail("runner_online")
    name = await aware.booting_runner()
    aware.github.set_runner(name, online=True)
    with caplog.at_level(logging.WARNING, "runnerscale.controller"):
        await aware.poll()
        await aware.controller.actions.online.settle()
    assert provider_of(aware).told == []
    warned = [r.getMessage() for r in caplog.records if "could not act on it" in r.getMessage()]
    assert len(warned) == 1
    assert name in warned[0]
    assert "runner_online failed" in warned[0]
    await aware.poll()
    await aware.controller.actions.online.settle()
    assert aware.journal.ops("provider").count("runner_online") == 1


async def test_stopping_gives_up_what_is_under_way(aware: Rig) -> None:
    provider_of(aware).online_wait = lambda: aware.clock.sleep(600)
    name = await aware.booting_runner()
    aware.github.set_runner(name, online=True)
    await aware.poll()
    await settle()
    assert aware.controller.actions.online.pending == 1
    await aware.controller.stop()
    assert aware.controller.actions.online.pending == 0
    assert provider_of(aware).told == []


async def test_a_backend_without_the_hook_is_not_told(world: Rig) -> None:
    assert not isinstance(world.provider, OnlineAware)
    name = await world.idle_runner()
    assert world.runner(name).state is RunnerState.IDLE
    assert world.controller.actions.online.pending == 0


async def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online, "REMEMBERED", 2)
    notices = OnlineNotices()
    provider = OnlineAwareProvider(pool="linux")
    for name in ("a", "b", "c"):
        assert notices.notify(provider, "linux", name, f"i-{name}") is not None
    assert notices.notify(provider, "linux", "c", "i-c") is None  # told
    assert notices.notify(provider, "linux", "a", "i-a") is not None  # forgotten: long ago
    assert notices.notify(FakeProvider(pool="linux"), "linux", "d", "i-d") is None
    assert notices.notify(provider, "linux", "e", None) is None
    await notices.settle()
    assert provider.told == ["i-a", "i-b", "i-c", "i-a"]
