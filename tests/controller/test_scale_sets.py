"""Scale-set pools in the controller: the listener (persist, then acknowledge), the registrar
(the service's refusal of a busy runner keeps it), and a burst served and scaled back to zero.

The Actions service is :class:`FakeScaleSetService` (our own boundary, ``ScaleSetAPI``), the
backend the tests' in-memory one, the store a real SQLite file, time a virtual clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.controller.actions import PoolRuntime
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.controller.scaleset import (
    ScaleSetListener,
    ScaleSetState,
    effects_of,
    state_key,
)
from runnerscale.model import JobState, PoolSpec, RunnerState, Target, normalize_labels
from runnerscale.protocols import DeleteOutcome, GitHubError, ObservedJob
from runnerscale.scaleset_api import (
    ScaleSetEventKind,
    ScaleSetMessage,
    ScaleSetSpec,
    ScaleSetStatistics,
)
from runnerscale.store import SqlStore, open_store
from tests.controller.fake_scaleset import FakeScaleSetService, event
from tests.controller.fakes import CrashError, FakeGitHub, FakeProvider

ORG = Target("org", "acme")
SET = "runnerscale-x64"
POOL = "ss"
OWNER = "rs-test-0001"
ASSIGNED, AVAILABLE = ScaleSetEventKind.JOB_ASSIGNED, ScaleSetEventKind.JOB_AVAILABLE
STARTED, COMPLETED = ScaleSetEventKind.JOB_STARTED, ScaleSetEventKind.JOB_COMPLETED


@dataclass
class ScaleSetRig:
    """A controller with one scale-set pool, over the fake service and the in-memory backend.
    No loop runs unless a test starts one; ``restart`` opens the same database anew."""

    path: Path
    clock: VirtualClock
    service: FakeScaleSetService
    github: FakeGitHub = field(default_factory=FakeGitHub)
    provider: FakeProvider = field(default_factory=lambda: FakeProvider(POOL))
    max_runners: int = 4
    targets: list[Target] = field(default_factory=lambda: [ORG])
    #: The pool's ``PoolSpec.target`` (its scale set's target; None: the first).
    pool_target: str | None = None
    stores: list[SqlStore] = field(default_factory=list)
    controller: Controller = field(init=False)

    def __post_init__(self) -> None:
        self.controller = self._new_controller()

    def _new_controller(self) -> Controller:
        store = open_store(f"sqlite:///{self.path}")
        self.stores.append(store)
        spec = PoolSpec(
            name=POOL,
            labels=normalize_labels((SET, "linux")),
            max_runners=self.max_runners,
            idle_timeout=60.0,
            assigned_jobs=0,
            target=self.pool_target,
        )
        pool = PoolRuntime(
            spec=spec,
            provider=self.provider,
            labels=(SET, "linux"),
            prefix="rs-ss-",
            scale_set=ScaleSetState(POOL, ScaleSetSpec(SET, labels=("linux",))),
        )
        return Controller(
            store,
            self.github,
            self.clock,
            pools=[pool],
            targets=self.targets,
            settings=ControllerSettings(),
            scale_sets={POOL: self.service},
            owner=OWNER,
        )

    def restart(self) -> Controller:
        self.controller = self._new_controller()
        return self.controller

    @property
    def store(self) -> SqlStore:
        return self.stores[-1]

    @property
    def listener(self) -> ScaleSetListener:
        return self.controller.listeners[POOL]

    @property
    def state(self) -> ScaleSetState:
        return self.listener.state

    async def connect(self) -> None:
        """The listener finds (or creates) the scale set and opens its session."""
        await self.listener.step()
        assert self.state.session == "open"

    def stored(self) -> dict[str, int]:
        value = self.store.get_value(state_key(POOL))
        assert value is not None
        loaded: dict[str, int] = json.loads(value)
        return loaded

    def states(self) -> dict[str, RunnerState]:
        return {r.name: r.state for r in self.store.runners()}

    def live(self) -> list[str]:
        return sorted(r.name for r in self.store.runners() if r.state.live)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ScaleSetRig]:
    clock = VirtualClock()
    made = ScaleSetRig(tmp_path / "state.db", clock, FakeScaleSetService(clock))
    yield made
    for store in made.stores:
        store.close()


async def settle() -> None:
    """Let every task run until it waits (on the clock, or on an event)."""
    for _ in range(20):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------- effects_of


def test_effects_of_a_message_are_decided_apart() -> None:
    message = ScaleSetMessage(
        7,
        ScaleSetStatistics(assigned_jobs=9),
        (
            event(AVAILABLE, 1, request_id=41),
            event(ASSIGNED, 2),
            event(STARTED, 3, runner_name="rs-ss-a"),
            event(COMPLETED, 4, runner_name="rs-ss-b", result="succeeded"),
            # A reassignment: canceled before any runner took it; it comes back.
            event(COMPLETED, 5, result="canceled"),
            # No job id (the service sent none): nothing to key an observation by.
            event(ASSIGNED, 0),
        ),
    )
    effects = effects_of(message, now=100.0)
    assert effects.assigned == 9  # the statistics', not a count of the batch
    assert effects.acquire == (41,)
    by_id = {observed.id: observed for observed in effects.observations}
    assert sorted(by_id) == [1, 2, 3, 4]
    assert by_id[1].state is by_id[2].state is JobState.QUEUED
    assert (by_id[3].state, by_id[3].runner_name, by_id[3].started_at) == (
        JobState.IN_PROGRESS,
        "rs-ss-a",
        100.0,
    )
    assert (by_id[4].state, by_id[4].conclusion) == (JobState.COMPLETED, "succeeded")
    assert by_id[2].repo == "acme/app"
    assert by_id[2].labels == (SET,)


# ---------------------------------------------------------------------------- the listener


async def test_the_listener_opens_the_session_as_the_controller_and_takes_its_statistics(
    rig: ScaleSetRig,
) -> None:
    made = await rig.service.ensure_scale_set(ScaleSetSpec(SET, labels=("linux",)))
    rig.service.statistics[made.id] = ScaleSetStatistics(assigned_jobs=2)
    await rig.listener.step()  # finds the scale set, opens the session
    assert rig.state.scale_set == made
    assert rig.service.owners == [OWNER]
    assert rig.state.assigned == 2
    assert rig.controller.pools[POOL].spec_at(rig.clock.now()).assigned_jobs == 2
    assert rig.stored() == {"last_message_id": 0, "scale_set_id": 1, "assigned": 2}


async def test_a_message_is_persisted_then_acknowledged(rig: ScaleSetRig) -> None:
    await rig.connect()
    message = rig.service.send(SET, event(ASSIGNED, 11), event(ASSIGNED, 12), assigned=2)
    await rig.listener.step()
    assert rig.service.acknowledged == [message.message_id]
    assert rig.stored() == {"last_message_id": message.message_id, "scale_set_id": 1, "assigned": 2}
    job = rig.store.get_job(11)
    assert job is not None
    assert job.state is JobState.QUEUED


async def test_a_crash_between_persist_and_ack_redelivers_harmlessly(rig: ScaleSetRig) -> None:
    await rig.connect()
    sent = rig.service.send(
        SET, event(ASSIGNED, 11), event(STARTED, 12, runner_name="elsewhere"), assigned=2
    )
    rig.service.fail("acknowledge", CrashError("killed before the acknowledgement"))
    with pytest.raises(CrashError):
        await rig.listener.step()
    # Its effects were persisted; the message was not acknowledged.
    assert rig.stored()["last_message_id"] == sent.message_id
    assert rig.service.acknowledged == []
    jobs_before = {job.id: job.state for job in rig.store.jobs()}

    rig.restart()  # a new daemon on the same state: it picks up where the last stopped
    assert (rig.state.assigned, rig.state.last_message_id) == (2, sent.message_id)
    await rig.connect()
    await rig.listener.step()  # the same message, redelivered
    assert rig.service.acknowledged == [sent.message_id]
    assert {job.id: job.state for job in rig.store.jobs()} == jobs_before
    assert rig.state.assigned == 2


async def test_a_poll_with_no_message_keeps_the_last_statistics(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, event(ASSIGNED, 11), assigned=1)
    await rig.listener.step()
    kicked: list[bool] = []
    rig.listener._changed = lambda: kicked.append(True)
    poll = asyncio.create_task(rig.listener.step())
    await settle()
    assert not poll.done()  # held
    rig.clock.advance(rig.service.hold)
    await poll  # a 202
    assert rig.state.assigned == 1
    assert kicked == []  # nothing changed: no wake-up


async def test_the_reconcile_is_woken_when_the_assigned_count_changes(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.controller._kick.clear()
    rig.service.send(SET, event(ASSIGNED, 11), assigned=1)
    await rig.listener.step()
    assert rig.controller._kick.is_set()


async def test_job_available_is_acquired_before_the_acknowledgement(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(
        SET, event(AVAILABLE, 11, request_id=501), event(AVAILABLE, 12, request_id=502), assigned=2
    )
    rig.service.fail("acquire_jobs", GitHubError("503 from the service", status=503))
    with pytest.raises(GitHubError):
        await rig.listener.step()
    assert rig.service.acknowledged == []  # not acquired: not acknowledged, so sent again
    await rig.listener.step()
    assert rig.service.acquired == [501, 502]
    assert rig.service.acknowledged == [1]


async def test_capacity_is_the_cap_and_never_zero(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, assigned=0)
    await rig.listener.step()
    pool = rig.controller.pools[POOL]
    pool.spec = replace(pool.spec, max_runners=0)
    rig.service.send(SET, assigned=0)
    await rig.listener.step()
    assert [capacity for _, capacity in rig.service.polls] == [4, 1]


async def test_a_scale_set_gone_is_created_again_with_a_new_session(rig: ScaleSetRig) -> None:
    listening = asyncio.create_task(rig.listener.run())
    await settle()
    assert rig.state.session == "open"
    first = rig.state.scale_set
    assert first is not None
    rig.service.send(SET, assigned=3)
    await settle()
    await rig.service.delete_scale_set(first.id)  # behind our back
    await settle()
    assert rig.state.session == "backing off"
    assert rig.state.assigned == 3  # demand holds meanwhile
    rig.clock.advance(1.0)
    await settle()
    again = rig.state.scale_set
    assert again is not None
    assert again.id != first.id
    assert rig.service.created == 2
    assert rig.state.session == "open"
    assert len(rig.service.owners) == 2
    # Message ids start over with the new scale set.
    assert rig.stored()["scale_set_id"] == again.id
    assert rig.stored()["last_message_id"] == 0
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert rig.state.session == "closed"
    assert rig.service.sessions == {}  # the shutdown closed it


async def test_github_errors_are_backed_off_from_keeping_the_demand(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, assigned=2)
    await rig.listener.step()
    rig.service.fail("next_message", GitHubError("502 Bad Gateway", status=502), times=3)
    listening = asyncio.create_task(rig.listener.run())
    waits = []
    for _ in range(3):
        await settle()
        assert rig.state.session == "backing off"
        assert rig.state.assigned == 2
        wake = rig.clock.next_wakeup()
        assert wake is not None
        waits.append(wake - rig.clock.now())
        rig.clock.advance(waits[-1])
    await settle()
    assert waits == [1.0, 2.0, 4.0]
    assert rig.state.session == "open"
    assert rig.state.last_error is None or "502" in rig.state.last_error
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert rig.service.sessions_closed == 1


async def test_each_failure_backed_off_from_is_a_failed_cycle_of_the_scaleset_loop(
    rig: ScaleSetRig,
) -> None:
    """The Actions service fails twice, then the scale set is gone: three failures, each
    counted as it is backed off from (the status API's ``errors`` and ``Events.failed``, the
    metric), as a failed cycle of the other loops is. Before, only the log told of them."""
    failed: list[str] = []
    rig.controller.actions.events.failed = failed.append
    await rig.connect()
    rig.service.fail("next_message", GitHubError("502 Bad Gateway", status=502), times=2)
    listening = asyncio.create_task(rig.listener.run())
    for wait in (1.0, 2.0):
        await settle()
        assert rig.state.session == "backing off"
        rig.clock.advance(wait)
    await settle()
    assert rig.state.session == "open"
    assert failed == ["scaleset", "scaleset"]
    scale_set = rig.state.scale_set
    assert scale_set is not None
    await rig.service.delete_scale_set(scale_set.id)
    await settle()
    assert rig.state.session == "backing off"
    wake = rig.clock.next_wakeup()
    assert wake is not None
    rig.clock.advance(wake - rig.clock.now())
    await settle()
    assert rig.state.session == "open"
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert failed == ["scaleset"] * 3
    assert rig.controller.errors == {"scaleset": 3}


async def test_the_session_state_is_in_the_status_and_no_secret_is(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, assigned=1)
    await rig.listener.step()
    await rig.controller.reconcile_once()
    (pool,) = rig.controller.status.pools
    assert pool.scale_set is not None
    assert (pool.scale_set.name, pool.scale_set.id, pool.scale_set.assigned_jobs) == (SET, 1, 1)
    assert pool.scale_set.session == "open"
    assert "jit-secret" not in repr(rig.controller.status)


# ---------------------------------------------------------------------------- the registrar


async def test_runners_are_registered_in_the_scale_set(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, event(ASSIGNED, 11), assigned=1)
    await rig.listener.step()
    await rig.controller.reconcile_once()
    (name,) = rig.live()
    registered = rig.service.runner_named(name)
    assert registered is not None
    assert registered.scale_set_id == 1
    assert rig.provider.specs[0].jitconfig == f"jit-secret-for-{name}"
    assert rig.github.registrations == {}  # nothing over REST
    runner = rig.store.get_runner(name)
    assert runner is not None
    assert runner.target == ORG.key


async def test_runners_register_at_the_target_of_the_scale_set(tmp_path: Path) -> None:
    other = Target("org", "other")
    clock = VirtualClock()
    rig = ScaleSetRig(
        tmp_path / "state.db",
        clock,
        FakeScaleSetService(clock),
        targets=[ORG, other],
        pool_target=other.key,
    )
    try:
        await rig.connect()
        rig.service.send(SET, event(ASSIGNED, 11), assigned=2)
        await rig.listener.step()
        await rig.controller.reconcile_once()
        manual = await rig.controller.scale_up(POOL, 1)
        runners = rig.store.runners()
        assert len(runners) == 3
        assert manual
        assert {runner.target for runner in runners} == {other.key}
        assert all(rig.service.runner_named(runner.name) for runner in runners)
    finally:
        for store in rig.stores:
            store.close()


async def test_no_runner_is_registered_before_the_scale_set_is_known(rig: ScaleSetRig) -> None:
    rig.state.assigned = 1  # restored from the store, before the listener connected
    await rig.controller.reconcile_once()
    assert rig.service.runners == {}
    (runner,) = rig.store.runners()
    assert runner.state is RunnerState.FAILED
    assert "not ready yet" in (runner.last_error or "")


async def test_a_busy_runner_refused_by_the_service_is_kept(rig: ScaleSetRig) -> None:
    await rig.connect()
    (name,) = await rig.controller.scale_up(POOL, 1)
    runner = rig.store.get_runner(name)
    assert runner is not None
    assert runner.github_id is not None
    # It came online idle, and has just taken a job the listener has not heard of yet.
    assert rig.store.transition(name, RunnerState.BOOTING, RunnerState.IDLE, state_since=0.0)
    rig.service.runners[runner.github_id].busy = True
    registrar = rig.controller.actions.registrar(POOL)
    assert await registrar.unregister(ORG, runner.github_id) is DeleteOutcome.BUSY
    rig.clock.advance(120.0)
    await rig.controller.reconcile_once()  # idle past its timeout, nothing assigned: remove
    assert rig.states()[name] is RunnerState.BUSY
    assert rig.provider.find(name) is not None  # its instance runs on


# ---------------------------------------------------------------------------- end to end


async def test_a_burst_is_served_and_the_pool_scales_back_to_zero(rig: ScaleSetRig) -> None:
    await rig.connect()
    jobs = range(21, 27)  # six jobs on a pool of four
    rig.service.send(SET, *(event(ASSIGNED, job) for job in jobs), assigned=6)
    await rig.listener.step()
    await rig.controller.reconcile_once()
    first = rig.live()
    assert len(first) == 4  # the cap
    # The four take a job each.
    rig.service.send(
        SET,
        *(event(STARTED, job, runner_name=name) for job, name in zip(jobs, first, strict=False)),
        assigned=6,
    )
    await rig.listener.step()
    assert {rig.states()[name] for name in first} == {RunnerState.BUSY}
    # They finish; GitHub assigns the last two to new runners.
    rig.service.send(
        SET,
        *(
            event(COMPLETED, job, runner_name=name, result="succeeded")
            for job, name in zip(jobs, first, strict=False)
        ),
        assigned=2,
    )
    await rig.listener.step()
    assert {rig.states()[name] for name in first} <= {RunnerState.FINISHED, RunnerState.GONE}
    for name in first:
        rig.provider.exit(name)
    await rig.controller.reconcile_once()
    second = [name for name in rig.live() if name not in first]
    assert len(second) == 2
    rig.service.send(
        SET,
        *(
            event(STARTED, job, runner_name=name)
            for job, name in zip((25, 26), second, strict=True)
        ),
        assigned=2,
    )
    await rig.listener.step()
    rig.service.send(
        SET,
        *(
            event(COMPLETED, job, runner_name=name, result="succeeded")
            for job, name in zip((25, 26), second, strict=True)
        ),
        assigned=0,
    )
    await rig.listener.step()
    for name in second:
        rig.provider.exit(name)
    await rig.controller.reconcile_once()
    assert rig.live() == []
    assert rig.provider.names() == set()
    assert {job.state for job in rig.store.jobs()} == {JobState.COMPLETED}
    assert rig.service.acknowledged == [1, 2, 3, 4, 5]
    assert sorted(job.id for job in rig.store.jobs()) == list(jobs)
    assert rig.github.journal.ops() == []  # no REST call served the burst


async def test_the_controller_runs_the_listener_and_closes_its_session_on_stop(
    rig: ScaleSetRig,
) -> None:
    await rig.controller.start()
    try:
        await settle()
        assert rig.state.session == "open"
        assert rig.service.owners == [OWNER]
        rig.service.send(SET, event(ASSIGNED, 31), assigned=1)
        await settle()
        assert rig.state.assigned == 1
        assert rig.service.acknowledged == [1]
    finally:
        await rig.controller.stop()
    assert rig.state.session == "closed"
    assert rig.service.sessions == {}
    assert rig.service.sessions_closed == 1


async def test_with_only_scale_set_pools_the_poll_reads_no_jobs(rig: ScaleSetRig) -> None:
    await rig.controller.poll_once()
    assert "active_jobs" not in rig.github.journal.ops()
    assert "list_runners" in rig.github.journal.ops()


def test_with_only_scale_set_pools_the_runner_list_is_a_safety_net(rig: ScaleSetRig) -> None:
    settings = rig.controller.settings
    assert settings.webhook_poll_interval > settings.poll_interval
    # No webhook arrives, yet the listeners tell of every job: the slow safety-net interval.
    assert not rig.controller.webhooks_flow()
    assert rig.controller.github_poll_interval() == max(
        settings.poll_interval, settings.webhook_poll_interval
    )


async def test_a_webhook_for_a_scale_set_job_is_not_counted_twice(rig: ScaleSetRig) -> None:
    await rig.connect()
    rig.service.send(SET, event(ASSIGNED, 41), assigned=1)
    await rig.listener.step()
    rig.controller.submit(
        ObservedJob(
            id=42,  # a delivery matching the scale set: the assigned count alone is demand
            repo="acme/app",
            labels=(SET,),
            state=JobState.QUEUED,
            created_at=rig.clock.now(),
        )
    )
    await rig.controller.reconcile_once()
    assert len(rig.live()) == 1
    decision = rig.controller.last_decision
    assert decision is not None
    assert decision.job_pools[42] == POOL
