"""The simulated GitHub's rules, exercised directly on a virtual clock (no HTTP).

Each section follows one rule of :mod:`runnerscale.fakegithub.world`'s module docstring: routing,
the runner lifecycle and its timeouts, the API's errors, tokens, jobs and runs, job events,
determinism and :meth:`World.next_deadline`. Time only moves through ``clock.advance`` followed
by ``world.tick()``, the way the simulation drives the world.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.entities import Conclusion, Job, JobStatus, OwnerType, Runner
from runnerscale.fakegithub.jitconfig import JitConfig, decode
from runnerscale.fakegithub.world import (
    DEFAULT_GROUP_ID,
    LOST_COMMUNICATION,
    MAX_LABELS,
    QUEUE_TIMEOUT_REASON,
    ApiError,
    JobSpec,
    World,
    WorldSettings,
)

REPO = "acme/app"
OTHER_REPO = "acme/site"
FOREIGN_REPO = "globex/app"
ORG = "acme"

#: Short timeouts, all different, so a test can tell which one fired.
SETTINGS = WorldSettings(
    server_url="http://sim.test:9000",
    runner_offline_after=30.0,
    lost_runner_timeout=60.0,
    unconnected_runner_ttl=300.0,
    queue_timeout=600.0,
    registration_token_ttl=120.0,
    installation_token_ttl=3_600.0,
)

Event = tuple[str, int, str]


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def events() -> list[Event]:
    """Every job event as ``(action, job id, job status at the time)``."""
    return []


@pytest.fixture
def world(clock: VirtualClock, events: list[Event]) -> World:
    world = World(clock, SETTINGS, on_job_event=lambda action, job: _record(events, action, job))
    for repo in (REPO, OTHER_REPO, FOREIGN_REPO):
        world.ensure_repo(repo)
    return world


def _record(events: list[Event], action: str, job: Job) -> None:
    events.append((action, job.id, job.status.value))


def jit_body(
    name: str, labels: Sequence[str] = ("linux",), group: int = DEFAULT_GROUP_ID
) -> dict[str, object]:
    return {"name": name, "labels": list(labels), "runner_group_id": group}


def jit_runner(
    world: World,
    name: str,
    labels: Sequence[str] = ("linux",),
    *,
    scope: str = REPO,
    connect: bool = True,
) -> Runner:
    """A JIT runner at ``scope`` (``owner/repo`` or ``org``), connected unless told not to."""
    runner, _ = world.generate_jitconfig(scope, jit_body(name, labels), org_level="/" not in scope)
    if connect:
        world.runner_connect(runner.credential)
    return runner


def token_runner(
    world: World, name: str, labels: Sequence[str] = ("linux",), *, scope: str = REPO
) -> Runner:
    """A non-ephemeral runner registered with a registration token, connected."""
    token = world.create_token(scope, "registration")
    runner, _ = world.register_with_token(token.token, name, list(labels), ephemeral=False)
    world.runner_connect(runner.credential)
    return runner


def queue(
    world: World,
    labels: Sequence[str] = ("self-hosted", "linux"),
    *,
    repo: str = REPO,
    run_id: int | None = None,
    environment: str | None = None,
) -> Job:
    [job] = world.create_jobs(
        [
            JobSpec(
                repo=repo,
                labels=tuple(labels),
                duration=60.0,
                run_id=run_id,
                environment=environment,
            )
        ]
    )
    return job


def finish(world: World, runner: Runner, conclusion: Conclusion = Conclusion.SUCCESS) -> None:
    assert runner.job_id is not None
    world.runner_complete(runner.credential, runner.job_id, conclusion)


def wait(world: World, clock: VirtualClock, seconds: float) -> None:
    clock.advance(seconds)
    world.tick()


def raises_api_error(status: int, call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value


# ---------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("runner_labels", "job_labels", "routed"),
    [
        pytest.param(["linux"], ["self-hosted", "linux"], True, id="exact"),
        pytest.param(["linux"], ["Linux"], True, id="case-insensitive-job"),
        pytest.param(["LINUX", "X64"], ["linux", "x64"], True, id="case-insensitive-runner"),
        pytest.param(["linux"], ["self-hosted"], True, id="implicit-self-hosted"),
        pytest.param(["linux", "gpu", "x64"], ["gpu"], True, id="runner-has-more"),
        pytest.param(["linux"], ["linux", "gpu"], False, id="runner-missing-one"),
        pytest.param(["linux"], ["windows"], False, id="no-overlap"),
        pytest.param(["linux-gpu"], ["linux"], False, id="no-prefix-match"),
    ],
)
def test_a_job_goes_to_a_runner_holding_all_its_labels(
    world: World, runner_labels: list[str], job_labels: list[str], routed: bool
) -> None:
    runner = jit_runner(world, "r1", runner_labels)
    job = queue(world, job_labels)
    if routed:
        assert job.status is JobStatus.IN_PROGRESS
        assert (job.runner_id, job.runner_name, runner.job_id) == (runner.id, "r1", job.id)
    else:
        assert job.status is JobStatus.QUEUED
        assert job.runner_id is None
        assert not runner.busy


def test_a_job_queued_before_the_runner_connects_is_routed_on_connect(world: World) -> None:
    job = queue(world)
    runner = jit_runner(world, "r1", connect=False)
    assert job.status is JobStatus.QUEUED
    world.runner_connect(runner.credential)
    assert job.status is JobStatus.IN_PROGRESS
    assert job.runner_id == runner.id


def test_a_runner_that_never_connected_gets_nothing(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1", connect=False)
    job = queue(world)
    wait(world, clock, 10)
    assert job.status is JobStatus.QUEUED
    assert not runner.busy


@pytest.mark.parametrize(
    ("runner_scope", "job_repo", "routed"),
    [
        pytest.param(REPO, REPO, True, id="repo-runner-own-repo"),
        pytest.param(REPO, "ACME/App", True, id="repo-runner-own-repo-other-case"),
        pytest.param(REPO, OTHER_REPO, False, id="repo-runner-sibling-repo"),
        pytest.param(REPO, FOREIGN_REPO, False, id="repo-runner-other-org"),
        pytest.param(ORG, REPO, True, id="org-runner-repo-of-org"),
        pytest.param(ORG, OTHER_REPO, True, id="org-runner-other-repo-of-org"),
        pytest.param(ORG, FOREIGN_REPO, False, id="org-runner-other-org"),
    ],
)
def test_runners_serve_only_their_scope(
    world: World, runner_scope: str, job_repo: str, routed: bool
) -> None:
    runner = jit_runner(world, "r1", scope=runner_scope)
    job = queue(world, repo=job_repo)
    assert (job.status is JobStatus.IN_PROGRESS) is routed
    assert (runner.job_id == job.id) is routed


def test_an_org_runner_serves_a_repository_created_after_it(world: World) -> None:
    runner = jit_runner(world, "r1", scope=ORG)
    job = queue(world, repo="acme/brand-new")
    assert job.runner_id == runner.id


def test_oldest_job_first(world: World, clock: VirtualClock) -> None:
    older = queue(world)
    clock.advance(5)
    newer = queue(world)
    runner = token_runner(world, "r1")
    assert runner.job_id == older.id
    assert (older.status, newer.status) == (JobStatus.IN_PROGRESS, JobStatus.QUEUED)
    finish(world, runner)
    assert runner.job_id == newer.id


def test_the_first_idle_runner_takes_a_job_and_the_next_one_the_next_job(world: World) -> None:
    first, second = jit_runner(world, "r1"), jit_runner(world, "r2")
    jobs = [queue(world), queue(world), queue(world)]
    assert [job.runner_id for job in jobs] == [first.id, second.id, None]


def test_an_ephemeral_runner_takes_exactly_one_job_and_is_removed(world: World) -> None:
    runner = jit_runner(world, "r1")
    first, second = queue(world), queue(world)
    assert runner.job_id == first.id
    assert second.status is JobStatus.QUEUED
    finish(world, runner)
    assert first.status is JobStatus.COMPLETED
    assert runner.id not in world.runners
    assert second.status is JobStatus.QUEUED  # nobody left to take it
    raises_api_error(401, lambda: world.runner_poll(runner.credential))
    replacement = jit_runner(world, "r1")  # the name is free again
    assert replacement.job_id == second.id


def test_a_token_registered_runner_takes_several_jobs_in_turn(world: World) -> None:
    runner = token_runner(world, "r1")
    jobs = [queue(world) for _ in range(3)]
    for job in jobs:
        assert runner.job_id == job.id
        assert world.runner_poll(runner.credential) is job
        finish(world, runner)
        assert job.conclusion is Conclusion.SUCCESS
    assert runner.id in world.runners
    assert not runner.busy
    assert not runner.ephemeral


def test_added_labels_make_a_queued_job_routable(world: World) -> None:
    runner = jit_runner(world, "r1", ["linux"])
    job = queue(world, ["linux", "gpu"])
    assert job.status is JobStatus.QUEUED
    world.add_labels(REPO, runner.id, {"labels": ["GPU"]})
    assert job.runner_id == runner.id


# ---------------------------------------------------------------------- runner lifecycle


def test_generate_jitconfig_registers_an_offline_ephemeral_runner(
    world: World, clock: VirtualClock
) -> None:
    runner, encoded = world.generate_jitconfig(
        REPO, {**jit_body("builder-1", ["linux", "x64"]), "work_folder": "_w"}, org_level=False
    )
    assert world.runners[runner.id] is runner
    assert (runner.connected, runner.last_seen, runner.busy) == (False, None, False)
    assert (runner.jit, runner.ephemeral, runner.scope) == (True, True, REPO)
    assert runner.label_names == ["self-hosted", "linux", "x64"]
    assert runner.created_at == clock.now()
    assert decode(encoded) == JitConfig(
        server_url="http://sim.test:9000",
        runner_id=runner.id,
        runner_name="builder-1",
        credential=runner.credential,
        work_folder="_w",
    )


def test_runner_connect_makes_the_runner_online(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1", connect=False)
    clock.advance(7)
    assert world.runner_connect(runner.credential) is runner
    assert runner.connected
    assert runner.last_seen == clock.now()


def test_an_unknown_credential_is_refused(world: World) -> None:
    raises_api_error(401, lambda: world.runner_connect("rnr_not-a-runner"))


def test_a_silent_runner_goes_offline_and_gets_no_job(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1")
    wait(world, clock, SETTINGS.runner_offline_after - 1)
    assert runner.connected
    wait(world, clock, 1)
    assert not runner.connected
    job = queue(world)
    assert job.status is JobStatus.QUEUED
    assert world.runner_poll(runner.credential) is job  # speaking again brings it online
    assert runner.connected


def test_polling_keeps_an_idle_runner_online(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1")
    for _ in range(5):
        wait(world, clock, SETTINGS.runner_offline_after - 1)
        assert world.runner_poll(runner.credential) is None
    wait(world, clock, 1)
    assert runner.connected


def test_a_runner_that_never_connects_is_removed(world: World, clock: VirtualClock) -> None:
    never = jit_runner(world, "never", connect=False)
    connected = jit_runner(world, "connected")
    wait(world, clock, SETTINGS.unconnected_runner_ttl - 1)
    assert never.id in world.runners
    wait(world, clock, 1)
    assert never.id not in world.runners
    assert connected.id in world.runners  # offline by now, but it did connect


def test_a_busy_runner_that_keeps_talking_is_not_lost(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world)
    for _ in range(5):
        wait(world, clock, SETTINGS.lost_runner_timeout - 1)
        assert world.runner_heartbeat(runner.credential, job.id) is False
    assert job.status is JobStatus.IN_PROGRESS
    assert runner.connected  # busy runners are not shown offline while they heartbeat


def test_a_silent_busy_runner_fails_its_job_and_is_removed(
    world: World, clock: VirtualClock, events: list[Event]
) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world)
    wait(world, clock, SETTINGS.lost_runner_timeout - 1)
    assert job.status is JobStatus.IN_PROGRESS
    wait(world, clock, 1)
    assert job.status is JobStatus.COMPLETED
    assert job.conclusion is Conclusion.FAILURE
    assert job.failure_reason == LOST_COMMUNICATION.format(runner="r1")
    assert job.completed_at == clock.now()
    assert runner.id not in world.runners
    assert [e for e in events if e[0] == "completed"] == [("completed", job.id, "completed")]
    raises_api_error(
        401, lambda: world.runner_complete(runner.credential, job.id, Conclusion.SUCCESS)
    )


def test_a_lost_non_ephemeral_runner_stays_registered_offline(
    world: World, clock: VirtualClock
) -> None:
    runner = token_runner(world, "r1")
    job = queue(world)
    wait(world, clock, SETTINGS.lost_runner_timeout)
    assert job.failure_reason == LOST_COMMUNICATION.format(runner="r1")
    assert world.runners[runner.id] is runner
    assert (runner.busy, runner.connected) == (False, False)
    later = queue(world)
    assert later.status is JobStatus.QUEUED


def test_a_job_queued_too_long_fails(world: World, clock: VirtualClock) -> None:
    job = queue(world, ["windows"])
    wait(world, clock, SETTINGS.queue_timeout - 1)
    assert job.status is JobStatus.QUEUED
    wait(world, clock, 1)
    assert job.status is JobStatus.COMPLETED
    assert job.conclusion is Conclusion.FAILURE
    assert job.failure_reason == QUEUE_TIMEOUT_REASON
    assert job.runner_id is None


def test_the_queue_timeout_does_not_apply_to_a_running_job(
    world: World, clock: VirtualClock
) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world)
    for _ in range(int(SETTINGS.queue_timeout // 50) + 2):
        wait(world, clock, 50)
        world.runner_heartbeat(runner.credential, job.id)
    assert job.status is JobStatus.IN_PROGRESS


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("first_scope", "second_scope", "second_name", "conflict"),
    [
        pytest.param(REPO, REPO, "builder", True, id="same-repo"),
        pytest.param(REPO, REPO, "BUILDER", True, id="same-repo-other-case"),
        pytest.param(REPO, "ACME/APP", "builder", True, id="same-repo-scope-other-case"),
        pytest.param(ORG, ORG, "Builder", True, id="same-org-other-case"),
        pytest.param(REPO, OTHER_REPO, "builder", False, id="other-repo"),
        pytest.param(REPO, ORG, "builder", False, id="repo-then-org"),
        pytest.param(ORG, "globex", "builder", False, id="other-org"),
        pytest.param(REPO, REPO, "builder-2", False, id="other-name"),
    ],
)
def test_runner_names_are_unique_per_scope(
    world: World, first_scope: str, second_scope: str, second_name: str, conflict: bool
) -> None:
    jit_runner(world, "builder", scope=first_scope, connect=False)

    def second() -> tuple[Runner, str]:
        return world.generate_jitconfig(
            second_scope, jit_body(second_name), org_level="/" not in second_scope
        )

    if conflict:
        error = raises_api_error(409, second)
        assert "already exists" in error.message
        assert len(world.runners) == 1
    else:
        second()
        assert len(world.runners) == 2


def test_a_token_registration_also_refuses_a_taken_name(world: World) -> None:
    jit_runner(world, "builder")
    token = world.create_token(REPO, "registration")
    raises_api_error(
        409, lambda: world.register_with_token(token.token, "Builder", ["linux"], ephemeral=False)
    )


_GOOD = jit_body("builder")


@pytest.mark.parametrize(
    ("scope", "body"),
    [
        pytest.param(REPO, {"labels": ["linux"], "runner_group_id": 1}, id="missing-name"),
        pytest.param(REPO, {**_GOOD, "name": ""}, id="empty-name"),
        pytest.param(REPO, {**_GOOD, "name": "   "}, id="blank-name"),
        pytest.param(REPO, {**_GOOD, "name": 7}, id="non-string-name"),
        pytest.param(REPO, {"name": "builder", "runner_group_id": 1}, id="missing-labels"),
        pytest.param(REPO, {**_GOOD, "labels": []}, id="empty-labels"),
        pytest.param(
            REPO, {**_GOOD, "labels": [f"l{i}" for i in range(MAX_LABELS + 1)]}, id="101-labels"
        ),
        pytest.param(REPO, {**_GOOD, "labels": "linux"}, id="labels-not-a-list"),
        pytest.param(REPO, {**_GOOD, "labels": ["linux", ""]}, id="empty-label"),
        pytest.param(REPO, {**_GOOD, "labels": ["linux", 3]}, id="non-string-label"),
        pytest.param(REPO, {"name": "builder", "labels": ["linux"]}, id="missing-group"),
        pytest.param(REPO, {**_GOOD, "runner_group_id": "1"}, id="string-group"),
        pytest.param(REPO, {**_GOOD, "runner_group_id": True}, id="boolean-group"),
        pytest.param(REPO, {**_GOOD, "runner_group_id": 2}, id="unknown-group-repo"),
        pytest.param(ORG, {**_GOOD, "runner_group_id": 999}, id="unknown-group-org"),
        pytest.param(REPO, {**_GOOD, "work_folder": 5}, id="non-string-work-folder"),
    ],
)
def test_generate_jitconfig_rejects_invalid_bodies(world: World, scope: str, body: object) -> None:
    error = raises_api_error(
        422, lambda: world.generate_jitconfig(scope, body, org_level="/" not in scope)
    )
    # The REST runner endpoints answer ``validation-error-simple``: errors are strings.
    assert isinstance(error.errors, list)
    assert error.errors
    assert all(isinstance(item, str) and item for item in error.errors)
    assert world.runners == {}


@pytest.mark.parametrize("body", [None, [], "builder", 42], ids=repr)
def test_generate_jitconfig_rejects_a_body_that_is_not_an_object(
    world: World, body: object
) -> None:
    error = raises_api_error(400, lambda: world.generate_jitconfig(REPO, body, org_level=False))
    assert error.message == "Problems parsing JSON"
    assert world.runners == {}


def test_generate_jitconfig_accepts_the_label_limit(world: World) -> None:
    labels = [f"l{i}" for i in range(MAX_LABELS)]
    runner, _ = world.generate_jitconfig(REPO, jit_body("builder", labels), org_level=False)
    assert runner.label_names[-MAX_LABELS:] == labels


def test_an_org_runner_joins_the_group_it_names(world: World) -> None:
    gpu = world.add_runner_group(ORG, "gpu")
    assert world.add_runner_group(ORG, "GPU") is gpu  # groups are found by name, too
    runner, _ = world.generate_jitconfig(ORG, jit_body("r1", group=gpu.id), org_level=True)
    assert runner.runner_group is gpu
    world.runner_connect(runner.credential)
    job = queue(world)
    assert (job.runner_group_id, job.runner_group_name) == (gpu.id, "gpu")


def test_deleting_a_busy_runner_answers_422_and_keeps_it(world: World) -> None:
    runner = token_runner(world, "r1")
    job = queue(world)
    error = raises_api_error(422, lambda: world.delete_runner(REPO, runner.id))
    assert "still running a job" in error.message
    assert world.runners[runner.id] is runner
    assert runner.job_id == job.id
    finish(world, runner)
    world.delete_runner(REPO, runner.id)
    assert runner.id not in world.runners
    raises_api_error(401, lambda: world.runner_poll(runner.credential))


@pytest.mark.parametrize(
    ("scope", "runner_id"),
    [
        pytest.param(REPO, 999, id="unknown-id"),
        pytest.param(OTHER_REPO, None, id="other-repo"),
        pytest.param(ORG, None, id="org-for-repo-runner"),
    ],
)
def test_deleting_a_runner_not_in_the_scope_answers_404(
    world: World, scope: str, runner_id: int | None
) -> None:
    runner = jit_runner(world, "r1", connect=False)
    target = runner.id if runner_id is None else runner_id
    raises_api_error(404, lambda: world.delete_runner(scope, target))
    assert runner.id in world.runners


def test_add_labels_adds_custom_labels_once(world: World) -> None:
    runner = jit_runner(world, "r1", ["linux"])
    world.add_labels(REPO, runner.id, {"labels": ["gpu", "GPU", "Linux", "cuda"]})
    assert runner.label_names == ["self-hosted", "linux", "gpu", "cuda"]
    assert [label.type for label in runner.labels] == ["read-only", "read-only", "custom", "custom"]


def test_add_labels_up_to_the_limit_and_not_beyond(world: World) -> None:
    runner = jit_runner(world, "r1", ["linux"])  # two labels: self-hosted and linux
    room = MAX_LABELS - len(runner.labels)
    world.add_labels(REPO, runner.id, {"labels": [f"l{i}" for i in range(room)]})
    assert len(runner.labels) == MAX_LABELS
    error = raises_api_error(
        422, lambda: world.add_labels(REPO, runner.id, {"labels": ["one-more"]})
    )
    assert all(isinstance(item, str) for item in error.errors or [])
    assert len(runner.labels) == MAX_LABELS
    world.add_labels(REPO, runner.id, {"labels": ["L0"]})  # already there: nothing to add
    assert len(runner.labels) == MAX_LABELS


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing-labels"),
        pytest.param(["gpu"], id="not-an-object"),
        pytest.param({"labels": []}, id="empty-labels"),
        pytest.param({"labels": "gpu"}, id="labels-not-a-list"),
        pytest.param({"labels": [f"l{i}" for i in range(MAX_LABELS + 1)]}, id="101-labels"),
    ],
)
def test_add_labels_rejects_invalid_bodies(world: World, body: object) -> None:
    runner = jit_runner(world, "r1")
    before = list(runner.label_names)
    error = raises_api_error(422, lambda: world.add_labels(REPO, runner.id, body))
    assert error.errors
    assert all(isinstance(item, str) for item in error.errors)
    assert runner.label_names == before


# ---------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("elapsed", "accepted"),
    [
        pytest.param(0.0, True, id="fresh"),
        pytest.param(SETTINGS.registration_token_ttl - 1, True, id="just-before-expiry"),
        pytest.param(SETTINGS.registration_token_ttl, False, id="at-expiry"),
        pytest.param(SETTINGS.registration_token_ttl * 10, False, id="long-expired"),
    ],
)
def test_a_registration_token_works_until_it_expires(
    world: World, clock: VirtualClock, elapsed: float, accepted: bool
) -> None:
    token = world.create_token(REPO, "registration")
    assert token.expires_at == clock.now() + SETTINGS.registration_token_ttl
    clock.advance(elapsed)

    def register() -> tuple[Runner, str]:
        return world.register_with_token(token.token, "r1", ["linux"], ephemeral=False)

    if accepted:
        runner, encoded = register()
        assert (runner.scope, runner.jit, runner.ephemeral) == (REPO, False, False)
        assert decode(encoded).credential == runner.credential
    else:
        raises_api_error(401, register)
        assert world.runners == {}


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda world: world.create_token(REPO, "remove").token, id="remove-token"),
        pytest.param(lambda world: "A" + "0" * 36, id="unknown-token"),
    ],
)
def test_only_a_registration_token_registers(
    world: World, make_token: Callable[[World], str]
) -> None:
    token = make_token(world)
    raises_api_error(
        401, lambda: world.register_with_token(token, "r1", ["linux"], ephemeral=False)
    )


def test_an_org_registration_token_registers_an_org_runner(world: World) -> None:
    runner = token_runner(world, "r1", scope=ORG)
    assert runner.scope == ORG
    assert runner.runner_group is not None
    assert runner.runner_group.id == DEFAULT_GROUP_ID
    assert queue(world, repo=OTHER_REPO).runner_id == runner.id


def test_an_installation_token_is_valid_for_an_hour(clock: VirtualClock) -> None:
    world = World(clock, WorldSettings(app_id=1))
    owner = world.ensure_repo(REPO).owner
    installation = world.installation_for(owner)
    token = world.issue_installation_token(installation.id)
    assert token.token.startswith("ghs_")
    assert (token.scope, token.installation_id) == (ORG, installation.id)
    assert world.valid_token(token.token, "installation") is token
    assert world.valid_token(token.token, "registration") is None
    clock.advance(3_599)
    assert world.valid_token(token.token, "installation") is token
    clock.advance(1)
    assert world.valid_token(token.token, "installation") is None
    assert world.valid_token("ghs_unknown", "installation") is None
    raises_api_error(404, lambda: world.issue_installation_token(installation.id + 1000))


def test_in_app_mode_every_owner_with_a_repository_has_an_installation(
    clock: VirtualClock,
) -> None:
    world = World(clock, WorldSettings(app_id=1))
    org = world.ensure_repo("acme/app").owner
    assert world.ensure_repo("acme/site").owner is org
    user = world.ensure_repo("octocat/tool", OwnerType.USER).owner
    ids = {world.installation_for(org).id, world.installation_for(user).id}
    assert ids == set(world.installations)
    assert len(ids) == 2
    assert {i.owner.login for i in world.installations.values()} == {"acme", "octocat"}


def test_without_an_app_id_there_are_no_installations(world: World) -> None:
    assert world.installations == {}
    raises_api_error(404, lambda: world.installation_for(world.repo("acme", "app").owner))


# ---------------------------------------------------------------------- jobs and runs


def test_jobs_with_one_run_id_share_a_run(world: World) -> None:
    jobs = world.create_jobs(
        [JobSpec(repo=REPO, labels=("linux",), duration=1.0, run_id=42) for _ in range(3)]
    )
    run = world.runs[42]
    assert run.job_ids == [job.id for job in jobs]
    assert all(job.run is run for job in jobs)
    assert [job.name for job in jobs] == ["job-0", "job-1", "job-2"]
    assert (run.run_number, run.run_attempt) == (1, 1)
    [other] = world.create_jobs([JobSpec(repo=REPO, labels=("linux",), duration=1.0)])
    assert other.run.id == 43
    assert other.run.run_number == 2
    [elsewhere] = world.create_jobs([JobSpec(repo=OTHER_REPO, labels=("linux",), duration=1.0)])
    assert elsewhere.run.run_number == 1  # run numbers count per repository


def test_a_new_run_is_a_push_but_joining_or_rerunning_one_is_not(
    world: World, clock: VirtualClock
) -> None:
    repo = world.repo("acme", "app")
    created = repo.created_at
    assert repo.pushed_at == created
    clock.advance(10)
    job = queue(world, ["linux"], run_id=7)
    pushed = clock.now()
    assert repo.pushed_at == pushed
    clock.advance(10)
    queue(world, ["linux"], run_id=7)
    assert repo.pushed_at == pushed
    runner = jit_runner(world, "r1")
    finish(world, runner)
    clock.advance(10)
    world.rerun_job(job)
    assert repo.pushed_at == pushed
    clock.advance(10)
    other = queue(world, ["linux"])
    assert repo.pushed_at == clock.now()
    assert other.run.id != 7
    assert world.repo("acme", "site").pushed_at == created  # only the pushed repository
    assert repo.created_at == created


def test_ensure_repo_can_say_when_a_repository_was_last_pushed(
    world: World, clock: VirtualClock
) -> None:
    month_ago = clock.now() - 30 * 86_400
    quiet = world.ensure_repo("acme/quiet", pushed_at=month_ago)
    # A repository is not pushed before it exists: its creation goes back too.
    assert (quiet.created_at, quiet.pushed_at) == (month_ago, month_ago)
    clock.advance(5)
    later = world.ensure_repo("acme/later", pushed_at=clock.now() + 60)
    assert (later.created_at, later.pushed_at) == (clock.now(), clock.now() + 60)
    existing = world.repo("acme", "app")
    created = existing.created_at
    version = world.version
    assert world.ensure_repo("acme/app", pushed_at=month_ago) is existing
    assert (existing.created_at, existing.pushed_at) == (created, month_ago)
    assert world.version == version + 1
    assert world.ensure_repo("acme/app") is existing
    assert existing.pushed_at == month_ago
    assert world.version == version + 1


def test_a_run_id_of_another_repository_is_refused(world: World) -> None:
    queue(world, run_id=42)
    raises_api_error(422, lambda: queue(world, repo=OTHER_REPO, run_id=42))
    assert world.runs[42].repo.full_name == REPO


S, F, C = Conclusion.SUCCESS, Conclusion.FAILURE, Conclusion.CANCELLED


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        pytest.param([JobStatus.QUEUED], ("queued", None), id="queued"),
        pytest.param([JobStatus.QUEUED, JobStatus.QUEUED], ("queued", None), id="all-queued"),
        pytest.param([JobStatus.IN_PROGRESS], ("in_progress", None), id="running"),
        pytest.param([JobStatus.QUEUED, JobStatus.IN_PROGRESS], ("in_progress", None), id="some"),
        pytest.param([S, JobStatus.QUEUED], ("in_progress", None), id="partly-done"),
        pytest.param([JobStatus.WAITING], ("waiting", None), id="waiting"),
        pytest.param([JobStatus.WAITING, S], ("waiting", None), id="waiting-and-done"),
        pytest.param([JobStatus.WAITING, JobStatus.IN_PROGRESS], ("in_progress", None), id="w+r"),
        pytest.param([S], ("completed", "success"), id="success"),
        pytest.param([S, S, S], ("completed", "success"), id="all-success"),
        pytest.param([S, F, S], ("completed", "failure"), id="failure-wins"),
        pytest.param([S, C], ("completed", "cancelled"), id="cancelled-beats-success"),
        pytest.param([C, F], ("completed", "failure"), id="failure-beats-cancelled"),
    ],
)
def test_run_status_derives_from_its_jobs(
    world: World, jobs: list[JobStatus | Conclusion], expected: tuple[str, str | None]
) -> None:
    created = world.create_jobs(
        [JobSpec(repo=REPO, labels=("none",), duration=1.0, run_id=9) for _ in jobs]
    )
    for job, state in zip(created, jobs, strict=True):
        if isinstance(state, Conclusion):
            job.status, job.conclusion = JobStatus.COMPLETED, state
        else:
            job.status = state
    assert world.run_status(world.runs[9]) == expected


def test_run_status_follows_a_run_through_its_life(world: World) -> None:
    job = queue(world, run_id=5)
    run = world.runs[5]
    assert world.run_status(run) == ("queued", None)
    runner = jit_runner(world, "r1")
    assert world.run_status(run) == ("in_progress", None)
    assert run.run_started_at is not None
    world.runner_complete(runner.credential, job.id, Conclusion.FAILURE)
    assert world.run_status(run) == ("completed", "failure")


def test_a_waiting_job_needs_approval_before_it_is_routed(
    world: World, events: list[Event]
) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world, environment="prod")
    assert job.status is JobStatus.WAITING
    assert job.environment == "prod"
    assert not runner.busy
    assert world.run_status(job.run) == ("waiting", None)
    assert world.approve(job.id) is job
    assert job.runner_id == runner.id
    assert events == [
        ("waiting", job.id, "waiting"),
        ("queued", job.id, "queued"),
        ("in_progress", job.id, "in_progress"),
    ]


def test_a_waiting_job_does_not_time_out_in_the_queue(world: World, clock: VirtualClock) -> None:
    job = queue(world, environment="prod")
    wait(world, clock, SETTINGS.queue_timeout * 2)
    assert job.status is JobStatus.WAITING
    world.approve(job.id)
    assert job.status is JobStatus.QUEUED


def test_only_a_waiting_job_can_be_approved(world: World) -> None:
    job = queue(world)
    raises_api_error(409, lambda: world.approve(job.id))
    raises_api_error(404, lambda: world.approve(999))


def test_cancel_run_cancels_every_unfinished_job_and_frees_the_runner(
    world: World, events: list[Event]
) -> None:
    runner = token_runner(world, "r1")
    done, running, queued, waiting = (
        queue(world, run_id=5),
        queue(world, run_id=5),
        queue(world, run_id=5),
        queue(world, run_id=5, environment="prod"),
    )
    finish(world, runner)  # `done` completes, the runner takes `running`
    assert runner.job_id == running.id
    events.clear()
    world.cancel_run(world.runs[5])
    assert done.conclusion is Conclusion.SUCCESS
    for job in (running, queued, waiting):
        assert (job.status, job.conclusion) == (JobStatus.COMPLETED, Conclusion.CANCELLED)
    assert not runner.busy
    assert world.run_status(world.runs[5]) == ("completed", "cancelled")
    # The freed runner is never handed a job of the run being cancelled.
    assert queued.runner_id is None
    assert queued.started_at is None
    assert events == [
        ("completed", running.id, "completed"),
        ("completed", queued.id, "completed"),
        ("completed", waiting.id, "completed"),
    ]
    assert world.runner_heartbeat(runner.credential, running.id) is True  # told to stop


def test_a_runner_freed_by_a_cancel_takes_the_next_run_s_job(world: World) -> None:
    runner = token_runner(world, "r1")
    queue(world, run_id=5)
    other = queue(world, run_id=6)
    world.cancel_run(world.runs[5])
    assert runner.job_id == other.id


def test_a_cancelled_ephemeral_runner_is_told_then_removed_when_it_acknowledges(
    world: World,
) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world, run_id=5)
    world.cancel_run(world.runs[5])
    assert world.runner_heartbeat(runner.credential, job.id) is True  # "you were cancelled"
    world.runner_complete(runner.credential, job.id, Conclusion.CANCELLED)
    assert runner.id not in world.runners
    assert job.conclusion is Conclusion.CANCELLED


def test_a_cancelled_ephemeral_runner_that_goes_silent_is_removed(
    world: World, clock: VirtualClock
) -> None:
    runner = jit_runner(world, "r1")
    queue(world, run_id=5)
    world.cancel_run(world.runs[5])
    queue(world)  # it must not take another job meanwhile
    assert runner.job_id is None
    wait(world, clock, SETTINGS.runner_offline_after)
    assert runner.id not in world.runners


def test_a_completed_run_cannot_be_cancelled(world: World) -> None:
    runner = jit_runner(world, "r1")
    queue(world, run_id=5)
    finish(world, runner)
    raises_api_error(409, lambda: world.cancel_run(world.runs[5]))


@pytest.mark.parametrize("environment", [None, "prod"], ids=["queued", "waiting"])
def test_an_unfinished_job_cannot_be_rerun(world: World, environment: str | None) -> None:
    job = queue(world, environment=environment)
    raises_api_error(403, lambda: world.rerun_job(job))


def test_a_running_job_cannot_be_rerun(world: World) -> None:
    jit_runner(world, "r1")
    job = queue(world)
    assert job.status is JobStatus.IN_PROGRESS
    raises_api_error(403, lambda: world.rerun_job(job))


def test_rerunning_a_completed_job_queues_a_new_attempt(world: World) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world, ["linux"], run_id=5)
    world.runner_complete(runner.credential, job.id, Conclusion.FAILURE)
    rerun = world.rerun_job(job)
    assert rerun.id != job.id
    assert rerun.run is job.run
    assert (rerun.run_attempt, job.run.run_attempt) == (2, 2)
    assert (rerun.status, rerun.labels, rerun.name) == (JobStatus.QUEUED, ["linux"], job.name)
    assert job.run.job_ids == [job.id, rerun.id]
    assert (job.status, job.conclusion) == (JobStatus.COMPLETED, Conclusion.FAILURE)
    # The run's status now follows the new attempt only.
    assert world.run_status(job.run) == ("queued", None)
    second = jit_runner(world, "r2")
    assert second.job_id == rerun.id
    finish(world, second)
    assert world.run_status(job.run) == ("completed", "success")


def test_runs_of_filters_by_status_or_conclusion_newest_first(
    world: World, clock: VirtualClock
) -> None:
    runner = jit_runner(world, "r1")
    done = queue(world, run_id=1).run
    finish(world, runner, Conclusion.FAILURE)
    clock.advance(1)
    jit_runner(world, "r2")
    running = queue(world, run_id=2).run
    clock.advance(1)
    waiting = queue(world, ["windows"], run_id=3).run
    clock.advance(1)
    queue(world, repo=OTHER_REPO, run_id=4)
    repo = world.repo("acme", "app")
    assert world.runs_of(repo) == [waiting, running, done]
    assert world.runs_of(repo, "queued") == [waiting]
    assert world.runs_of(repo, "in_progress") == [running]
    assert world.runs_of(repo, "completed") == [done]
    assert world.runs_of(repo, "failure") == [done]
    assert world.runs_of(repo, "success") == []


# ---------------------------------------------------------------------- events


def test_a_job_routed_on_creation_emits_queued_then_in_progress(
    world: World, events: list[Event]
) -> None:
    jit_runner(world, "r1")
    job = queue(world)
    assert events == [("queued", job.id, "queued"), ("in_progress", job.id, "in_progress")]


def test_completion_is_reported_exactly_once(world: World, events: list[Event]) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world)
    world.runner_complete(runner.credential, job.id, Conclusion.SUCCESS)
    # The ephemeral runner is gone, so its credential no longer works.
    raises_api_error(
        401, lambda: world.runner_complete(runner.credential, job.id, Conclusion.FAILURE)
    )
    assert [e for e in events if e[0] == "completed"] == [("completed", job.id, "completed")]
    assert job.conclusion is Conclusion.SUCCESS


def test_a_second_completion_from_a_non_ephemeral_runner_is_a_conflict(
    world: World, events: list[Event]
) -> None:
    runner = token_runner(world, "r1")
    job = queue(world)
    world.runner_complete(runner.credential, job.id, Conclusion.SUCCESS)
    error = raises_api_error(
        409, lambda: world.runner_complete(runner.credential, job.id, Conclusion.FAILURE)
    )
    assert "not assigned" in error.message
    assert [e for e in events if e[0] == "completed"] == [("completed", job.id, "completed")]
    assert job.conclusion is Conclusion.SUCCESS


def test_a_runner_cannot_complete_another_runner_s_job(world: World) -> None:
    first, second = jit_runner(world, "r1"), jit_runner(world, "r2")
    job = queue(world)
    assert job.runner_id == first.id
    raises_api_error(409, lambda: world.runner_complete(second.credential, job.id, S))
    raises_api_error(409, lambda: world.runner_complete(first.credential, 999, S))
    assert job.status is JobStatus.IN_PROGRESS


_ORDER = ["waiting", "queued", "in_progress", "completed"]


def test_every_job_only_moves_forward(
    world: World, clock: VirtualClock, events: list[Event]
) -> None:
    """A busy scenario touching every transition; each job's events strictly advance."""
    steady = token_runner(world, "steady")
    ephemeral = jit_runner(world, "ephemeral", ["linux", "gpu"])
    jobs = [queue(world, run_id=1), queue(world, ["gpu"], run_id=1), queue(world, run_id=2)]
    gated = queue(world, run_id=3, environment="prod")
    stuck = queue(world, ["windows"], run_id=4)
    finish(world, steady)
    world.approve(gated.id)
    world.cancel_run(world.runs[2])
    wait(world, clock, SETTINGS.lost_runner_timeout)  # both runners fall silent
    rerun = world.rerun_job(jobs[0])
    token_runner(world, "late")
    wait(world, clock, SETTINGS.queue_timeout)
    assert ephemeral.id not in world.runners
    assert stuck.failure_reason == QUEUE_TIMEOUT_REASON

    by_job: dict[int, list[Event]] = {}
    for event in events:
        by_job.setdefault(event[1], []).append(event)
    assert set(by_job) == {job.id for job in world.jobs.values()}
    assert rerun.id in by_job
    for job_id, seen in by_job.items():
        actions = [action for action, _, _ in seen]
        assert all(action == status for action, _, status in seen), seen
        positions = [_ORDER.index(action) for action in actions]
        assert positions == sorted(set(positions)), (job_id, actions)
        assert actions[-1] == "completed", (job_id, actions)
        assert world.jobs[job_id].status is JobStatus.COMPLETED


def test_listeners_added_later_hear_every_event(world: World, events: list[Event]) -> None:
    extra: list[Event] = []
    world.add_listener(lambda action, job: _record(extra, action, job))
    jit_runner(world, "r1")
    queue(world)
    assert extra == events
    assert len(extra) == 2


# ---------------------------------------------------------------------- determinism


def _script(seed: int) -> list[object]:
    """The same operations on a fresh world; everything a client could observe of them."""
    clock = VirtualClock()
    world = World(clock, WorldSettings(seed=seed, app_id=1))
    world.ensure_repo(REPO)
    registration = world.create_token(REPO, "registration")
    runner, encoded = world.generate_jitconfig(REPO, jit_body("r1"), org_level=False)
    world.runner_connect(runner.credential)
    jobs = world.create_jobs([JobSpec(repo=REPO, labels=("linux",), duration=1.0)] * 2)
    installation = world.installation_for(world.repo("acme", "app").owner)
    access = world.issue_installation_token(installation.id)
    return [
        registration.token,
        runner.id,
        runner.credential,
        encoded,
        [(job.id, job.run.id, job.run.head_sha, job.runner_id) for job in jobs],
        installation.id,
        access.token,
        world.new_uuid(),
    ]


def test_the_same_seed_gives_the_same_world() -> None:
    assert _script(7) == _script(7)


def test_different_seeds_give_different_secrets() -> None:
    first, second = _script(7), _script(8)
    assert first[0] != second[0]  # registration token
    assert first[2] != second[2]  # runner credential
    assert first[6] != second[6]  # installation token
    assert first[7] != second[7]  # uuid
    assert first[1] == second[1]  # ids are sequences, not random
    assert first[4] == second[4]


# ---------------------------------------------------------------------- next_deadline


def test_next_deadline_is_none_when_nothing_can_time_out(world: World) -> None:
    assert world.next_deadline() is None
    queue(world, environment="prod")  # a waiting job has no queue timeout
    assert world.next_deadline() is None


@pytest.mark.parametrize(
    ("setup", "after"),
    [
        pytest.param(
            lambda w: jit_runner(w, "r1", connect=False),
            SETTINGS.unconnected_runner_ttl,
            id="unconnected-runner",
        ),
        pytest.param(
            lambda w: jit_runner(w, "r1"), SETTINGS.runner_offline_after, id="idle-runner"
        ),
        pytest.param(
            lambda w: (jit_runner(w, "r1"), queue(w)),
            SETTINGS.lost_runner_timeout,
            id="busy-runner",
        ),
        pytest.param(queue, SETTINGS.queue_timeout, id="queued-job"),
        pytest.param(
            lambda w: (jit_runner(w, "r1", connect=False), queue(w)),
            SETTINGS.unconnected_runner_ttl,
            id="earliest-of-several",
        ),
    ],
)
def test_next_deadline_is_the_earliest_pending_timeout(
    world: World, clock: VirtualClock, setup: Callable[[World], object], after: float
) -> None:
    setup(world)
    assert world.next_deadline() == clock.now() + after


def test_next_deadline_moves_with_the_runner_s_last_word(world: World, clock: VirtualClock) -> None:
    runner = jit_runner(world, "r1")
    clock.advance(10)
    world.runner_poll(runner.credential)
    assert world.next_deadline() == clock.now() + SETTINGS.runner_offline_after
    job = queue(world)
    clock.advance(10)
    world.runner_heartbeat(runner.credential, job.id)
    assert world.next_deadline() == clock.now() + SETTINGS.lost_runner_timeout


def test_ticking_at_each_deadline_drains_them_all(world: World, clock: VirtualClock) -> None:
    """Jumping from deadline to deadline applies every timeout, then nothing is left."""
    jit_runner(world, "never", connect=False)
    jit_runner(world, "idle", ["other"])
    busy = jit_runner(world, "busy")
    queue(world)
    stuck = queue(world, ["windows"])
    start = clock.now()
    fired: list[float] = []
    while (deadline := world.next_deadline()) is not None:
        assert deadline >= clock.now()
        clock.set(deadline)
        world.tick()
        fired.append(deadline - start)
    assert fired == [
        SETTINGS.runner_offline_after,  # "idle" shown offline
        SETTINGS.lost_runner_timeout,  # "busy" lost, its job failed, the runner removed
        SETTINGS.unconnected_runner_ttl,  # "never" removed
        SETTINGS.queue_timeout,  # "stuck" gives up
    ]
    assert busy.id not in world.runners
    assert stuck.failure_reason == QUEUE_TIMEOUT_REASON
    assert [r.name for r in world.runners.values()] == ["idle"]
    assert not world.runners_in(REPO)[0].connected


def test_a_disconnected_runner_stays_registered_offline(world: World) -> None:
    reusable = token_runner(world, "reusable")
    queue(world, ["linux"])
    finish(world, reusable)
    world.runner_disconnect(reusable.credential)
    assert reusable.id in world.runners
    assert not world.runners[reusable.id].connected
    idle_jit = jit_runner(world, "idle-jit")
    world.runner_disconnect(idle_jit.credential)
    assert idle_jit.id in world.runners


def test_rerunning_an_environment_gated_job_waits_for_approval_again(world: World) -> None:
    job = queue(world, ["linux"], environment="prod")
    world.approve(job.id)
    runner = jit_runner(world, "r1")
    finish(world, runner)
    rerun = world.rerun_job(job)
    assert rerun.status is JobStatus.WAITING
    assert rerun.environment == "prod"


def test_a_runner_cancelled_before_it_picked_up_its_job_still_learns_of_it(
    world: World,
) -> None:
    runner = jit_runner(world, "r1")
    job = queue(world, run_id=9)
    assert runner.job_id == job.id  # assigned, but the runner has not polled yet
    world.cancel_run(world.runs[9])
    handed = world.runner_poll(runner.credential)
    assert handed is job
    assert world.runner_heartbeat(runner.credential, job.id) is True
    world.runner_complete(runner.credential, job.id, Conclusion.CANCELLED)
    assert runner.id not in world.runners
