"""The runner scale sets' rules on virtual time, without HTTP: routing, the message queue,
sessions, tokens, reassignment, removal and the capacity rule."""

from __future__ import annotations

import dataclasses

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.entities import Conclusion, Job, JobStatus
from runnerscale.fakegithub.scalesets import ActionsError, ScaleSetRecord, ScaleSets, Session
from runnerscale.fakegithub.world import JobSpec, World, WorldSettings
from runnerscale.scaleset_api import ScaleSetEvent, ScaleSetEventKind

ORG = "acme"
REPO = "acme/app"
DEFAULT_GROUP = 1


def make(**settings: object) -> tuple[VirtualClock, World, ScaleSets]:
    clock = VirtualClock()
    world = World(clock, dataclasses.replace(WorldSettings(), **settings))  # type: ignore[arg-type]
    scale_sets = ScaleSets(world)
    world.ensure_repo(REPO)
    return clock, world, scale_sets


def queue(world: World, labels: tuple[str, ...], count: int = 1) -> list[Job]:
    return world.create_jobs([JobSpec(repo=REPO, labels=labels, duration=10)] * count)


def drain(scale_sets: ScaleSets, session: Session) -> list[ScaleSetEvent]:
    """Every event waiting for the listener, acknowledging as it goes."""
    events: list[ScaleSetEvent] = []
    last = 0
    while (message := scale_sets.get_message(*_queue(session), last)) is not None:
        events.extend(message.events)
        scale_sets.acknowledge(*_queue(session), message.message_id)
        last = message.message_id
    return events


def _queue(session: Session) -> tuple[int, str, str]:
    return session.scale_set_id, session.id, session.queue_token


def kinds(events: list[ScaleSetEvent]) -> list[str]:
    return [e.kind.value + (f":{e.result}" if e.result else "") for e in events]


@pytest.fixture
def setup() -> tuple[VirtualClock, World, ScaleSets, ScaleSetRecord]:
    clock, world, scale_sets = make()
    record = scale_sets.create(ORG, "rs-x64", DEFAULT_GROUP, ["linux", "x64"])
    return clock, world, scale_sets, record


Setup = tuple[VirtualClock, World, ScaleSets, ScaleSetRecord]


def test_a_job_goes_to_the_scale_set_holding_all_of_its_labels(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    by_name, subset, foreign, default = (
        queue(world, labels)[0]
        for labels in (("rs-x64",), ("rs-x64", "LINUX"), ("rs-x64", "gpu"), ("self-hosted",))
    )
    assert by_name.scale_set_id == record.id
    assert subset.scale_set_id == record.id
    assert foreign.scale_set_id is None
    assert default.scale_set_id is None  # scale-set runners get no default labels
    assert scale_sets.statistics(record.id).assigned_jobs == 2


def test_messages_hold_at_most_a_batch_and_are_redelivered_until_acknowledged(
    setup: Setup,
) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    queue(world, ("rs-x64",), 120)
    first = scale_sets.get_message(*_queue(session))
    assert first is not None
    assert len(first.events) == 50
    assert first.statistics.assigned_jobs == 120
    again = scale_sets.get_message(*_queue(session), 0)
    assert again is not None
    assert again.message_id == first.message_id  # not acknowledged: delivered again
    second = scale_sets.get_message(*_queue(session), first.message_id)
    assert second is not None
    assert second.message_id > first.message_id
    scale_sets.acknowledge(*_queue(session), first.message_id)
    scale_sets.acknowledge(*_queue(session), second.message_id)
    third = scale_sets.get_message(*_queue(session), second.message_id)
    assert third is not None
    assert len(third.events) == 20
    scale_sets.acknowledge(*_queue(session), third.message_id)
    assert scale_sets.get_message(*_queue(session), 0) is None


def test_one_session_per_scale_set_until_it_lapses(setup: Setup) -> None:
    clock, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "first")
    with pytest.raises(ActionsError) as conflict:
        scale_sets.create_session(ORG, record.id, "second")
    assert (conflict.value.status, conflict.value.type_name) == (
        409,
        "RunnerScaleSetSessionConflictException",
    )
    clock.advance(50)
    scale_sets.get_message(*_queue(session))  # polling keeps it open
    clock.advance(50)
    with pytest.raises(ActionsError):
        scale_sets.create_session(ORG, record.id, "second")
    clock.advance(10)
    world.tick()
    assert scale_sets.create_session(ORG, record.id, "second").owner == "second"
    with pytest.raises(ActionsError) as expired:
        scale_sets.delete_session(ORG, record.id, session.id)
    assert (expired.value.status, expired.value.type_name) == (
        400,
        "RunnerScaleSetSessionExpiredException",
    )
    with pytest.raises(ActionsError) as gone:
        scale_sets.refresh_session(ORG, record.id, session.id)
    assert gone.value.status == 404


def test_an_expired_queue_token_is_401_until_the_session_is_refreshed(setup: Setup) -> None:
    clock, _, scale_sets, record = setup
    clock_ttl = WorldSettings().scale_set_queue_token_ttl
    session = scale_sets.create_session(ORG, record.id, "listener")
    old = session.queue_token
    for _ in range(int(clock_ttl // 50) - 1):
        clock.advance(50)
        scale_sets.get_message(*_queue(session))
    clock.advance(50)
    with pytest.raises(ActionsError) as expired:
        scale_sets.get_message(*_queue(session))
    assert expired.value.status == 401
    refreshed = scale_sets.refresh_session(ORG, record.id, session.id)
    assert refreshed.queue_token != old
    assert scale_sets.get_message(*_queue(refreshed)) is None


def test_an_admin_token_expires_with_its_exp(setup: Setup) -> None:
    clock, world, scale_sets, _ = setup
    token = world.create_token(ORG, "registration").token
    tenant, admin = scale_sets.register(token, "/acme")
    assert scale_sets.admin_scope(tenant, admin) == ORG
    with pytest.raises(ActionsError):
        scale_sets.register(token, "/acme/app")  # a token of the org, not of the repository
    clock.advance(WorldSettings().scale_set_admin_token_ttl)
    with pytest.raises(ActionsError) as expired:
        scale_sets.admin_scope(tenant, admin)
    assert expired.value.status == 401


def test_an_untaken_job_is_cancelled_and_reassigned_three_times_then_given_up(
    setup: Setup,
) -> None:
    clock, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    (job,) = queue(world, ("rs-x64",))
    for _ in range((120 + 240 + 360) // 30):
        clock.advance(30)
        world.tick()
        scale_sets.get_message(*_queue(session))  # keep the session open
    assert kinds(drain(scale_sets, session)) == [
        "JobAssigned",
        "JobCompleted:canceled",
        "JobAssigned",
        "JobCompleted:canceled",
        "JobAssigned",
        "JobCompleted:canceled",
    ]
    assert job.status is JobStatus.COMPLETED
    assert job.conclusion is Conclusion.CANCELLED


def test_a_scale_set_runner_runs_its_job_and_cannot_be_removed_while_busy(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    ordinary = world.register_jit_runner(ORG, "plain", ["rs-x64"], None)
    world.runner_connect(ordinary.credential)
    (job,) = queue(world, ("rs-x64",))
    assert job.status is JobStatus.QUEUED  # an ordinary runner never takes a scale set's job
    runner, _ = scale_sets.generate_jitconfig(ORG, record.id, "rs-runner-1")
    assert runner.label_names == ["rs-x64", "linux", "x64"]
    assert world.runner_poll(runner.credential) is job
    assert scale_sets.statistics(record.id).running_jobs == 1
    with pytest.raises(ActionsError) as busy:
        scale_sets.remove_runner(ORG, runner.id)
    assert (busy.value.status, busy.value.type_name) == (400, "JobStillRunningException")
    world.runner_complete(runner.credential, job.id, Conclusion.SUCCESS)
    events = drain(scale_sets, session)
    assert kinds(events) == ["JobAssigned", "JobStarted", "JobCompleted:succeeded"]
    assert events[1].runner_name == "rs-runner-1"
    with pytest.raises(ActionsError) as unknown:
        scale_sets.remove_runner(ORG, runner.id)  # ephemeral: gone after its job
    assert (unknown.value.status, unknown.value.type_name) == (404, "AgentNotFoundException")


@pytest.mark.parametrize("forever", [True, False])
def test_a_job_queued_under_capacity_zero(forever: bool) -> None:
    _, world, scale_sets = make(zero_capacity_is_forever=forever)
    record = scale_sets.create(ORG, "rs", DEFAULT_GROUP)
    session = scale_sets.create_session(ORG, record.id, "listener")
    scale_sets.get_message(*_queue(session), 0, 0)
    (job,) = queue(world, ("rs",))
    assert job.scale_set_id is None
    scale_sets.get_message(*_queue(session), 0, 5)
    assert (job.scale_set_id == record.id) is not forever


def test_capacity_is_a_total(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    scale_sets.get_message(*_queue(session), 0, 2)
    queue(world, ("rs-x64",), 3)
    assert scale_sets.statistics(record.id).assigned_jobs == 2
    scale_sets.get_message(*_queue(session), 0, 3)
    assert scale_sets.statistics(record.id).assigned_jobs == 3


def test_available_mode_offers_jobs_until_acquired() -> None:
    _, world, scale_sets = make(scale_set_job_mode="available")
    record = scale_sets.create(ORG, "rs", DEFAULT_GROUP)
    session = scale_sets.create_session(ORG, record.id, "listener")
    runner, _ = scale_sets.generate_jitconfig(ORG, record.id, "r1")
    world.runner_connect(runner.credential)
    (job,) = queue(world, ("rs",))
    first = drain(scale_sets, session)
    assert kinds(first) == ["JobAvailable"]
    assert scale_sets.statistics(record.id).available_jobs == 1
    assert job.runner_id is None  # not acquired: no runner may take it yet
    acquired = scale_sets.acquire_jobs(record.id, session.queue_token, [first[0].runner_request_id])
    assert acquired == [first[0].runner_request_id]
    assert job.runner_id == runner.id
    assert kinds(drain(scale_sets, session)) == ["JobAssigned", "JobStarted"]


def test_overlapping_scale_sets_prefer_one_with_an_open_session() -> None:
    _, world, scale_sets = make()
    idle = scale_sets.create(ORG, "idle", DEFAULT_GROUP, ["gpu"])
    listened = scale_sets.create(ORG, "listened", DEFAULT_GROUP, ["gpu"])
    scale_sets.create_session(ORG, listened.id, "listener")
    jobs = queue(world, ("gpu",), 5)
    assert {job.scale_set_id for job in jobs} == {listened.id}
    assert idle.id != listened.id


def test_ordinary_runners_first_when_scale_sets_do_not_come_first() -> None:
    _, world, scale_sets = make(scale_sets_before_runners=False)
    scale_sets.create(ORG, "rs", DEFAULT_GROUP)
    ordinary = world.register_jit_runner(ORG, "plain", ["rs"], None)
    world.runner_connect(ordinary.credential)
    first, second = queue(world, ("rs",), 2)
    assert first.runner_id == ordinary.id
    world.dispatch()  # the next routing sees the ordinary runner taken
    assert second.scale_set_id is not None


def test_deleting_a_scale_set_returns_its_jobs_to_the_queue(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    (job,) = queue(world, ("rs-x64",))
    scale_sets.delete(None, record.id)
    assert job.scale_set_id is None
    with pytest.raises(ActionsError) as gone:
        scale_sets.get_message(*_queue(session))
    assert (gone.value.status, gone.value.type_name) == (404, "RunnerScaleSetNotFoundException")
    again = scale_sets.create(ORG, "rs-x64", DEFAULT_GROUP, ["linux", "x64"])
    world.dispatch()
    assert job.scale_set_id == again.id


def test_events_name_the_job(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    (job,) = queue(world, ("rs-x64",))
    (event,) = drain(scale_sets, session)
    assert event.kind is ScaleSetEventKind.JOB_ASSIGNED
    assert (event.job_id, event.repository, event.labels) == (job.id, REPO, ("rs-x64",))
    assert event.queued_at == job.created_at


def test_a_session_being_polled_does_not_lapse_however_far_the_clock_jumps(
    setup: Setup,
) -> None:
    clock, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    held = scale_sets.poll_started(*_queue(session))
    clock.advance(600)
    world.tick()
    assert scale_sets.sessions[record.id] is session
    scale_sets.poll_ended(held)
    clock.advance(60)
    world.tick()
    assert record.id not in scale_sets.sessions


def test_no_secret_in_a_repr_or_an_error(setup: Setup) -> None:
    _, world, scale_sets, record = setup
    session = scale_sets.create_session(ORG, record.id, "listener")
    assert session.queue_token not in repr(session)
    token = world.create_token(ORG, "registration").token
    _, admin = scale_sets.register(token, "/acme")
    for call in (
        lambda: scale_sets.get_message(record.id, session.id, session.queue_token + "x"),
        lambda: scale_sets.admin_scope(99, admin),
        lambda: scale_sets.register(token, "/acme/app"),
    ):
        with pytest.raises(ActionsError) as refused:
            call()
        text = str(refused.value) + repr(refused.value)
        assert session.queue_token not in text
        assert admin not in text
        assert token not in text
