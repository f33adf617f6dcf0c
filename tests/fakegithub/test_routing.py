"""The indexed routing and noted deadlines decide exactly what scanning every runner and job
decided: seeded random histories replayed on two worlds, one dispatching by the index and one
by the scan (:meth:`World._dispatch_by_scanning`, GitHub's rule applied to every pair), give
the same assignments, events and deadlines at every step."""

from __future__ import annotations

import contextlib
import random

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.entities import Conclusion, Job, JobStatus
from runnerscale.fakegithub.scalesets import ScaleSets
from runnerscale.fakegithub.world import ApiError, JobSpec, World, WorldSettings

SETTINGS = WorldSettings(
    runner_offline_after=30.0,
    lost_runner_timeout=60.0,
    unconnected_runner_ttl=300.0,
    queue_timeout=600.0,
)
REPOS = ("acme/app", "acme/site", "globex/app", "initech/api")
LABELS = ("self-hosted", "linux", "x64", "arm64", "gpu")
SCOPES = ("acme", "acme/app", "globex", "enterprise:megacorp")


def scanning_deadline(world: World) -> float | None:
    """The deadline as found by scanning every runner and job (the reference)."""
    settings = world.settings
    deadlines: list[float] = []
    for runner in world.runners.values():
        if runner.last_seen is None:
            deadlines.append(runner.created_at + settings.unconnected_runner_ttl)
        elif runner.busy:
            deadlines.append(runner.last_seen + settings.lost_runner_timeout)
        elif runner.connected or (runner.ephemeral and runner.used):
            deadlines.append(runner.last_seen + settings.runner_offline_after)
    deadlines.extend(
        job.created_at + settings.queue_timeout
        for job in world.jobs.values()
        if job.status is JobStatus.QUEUED
    )
    return min(deadlines, default=None)


def new_world(
    events: list[tuple[str, int, int | None]], *, scanning: bool, scale_sets: bool = False
) -> World:
    def record(action: str, job: Job) -> None:
        events.append((action, job.id, job.runner_id))

    world = World(VirtualClock(), SETTINGS, on_job_event=record)
    if scale_sets:
        ScaleSets(world)  # as fake-github has it: dormant while it has no scale set
    if scanning:
        world._dispatch = world._dispatch_by_scanning  # type: ignore[method-assign]
    for repo in REPOS:
        world.ensure_repo(repo)
    world.ensure_enterprise("megacorp", orgs=["acme", "initech"])
    return world


def some_labels(rng: random.Random, *, runner: bool) -> list[str]:
    chosen = rng.sample(LABELS, rng.randint(1 if runner else 0, 3 if runner else 2))
    return [label.upper() if rng.random() < 0.2 else label for label in chosen]


def step(world: World, rng: random.Random, serial: int) -> None:
    """One random change; the same ``rng`` state gives the same change on either world."""
    action = rng.random()
    runners = sorted(world.runners)
    if action < 0.25:
        world.create_jobs(
            JobSpec(
                rng.choice(REPOS),
                ("self-hosted", *some_labels(rng, runner=False)),
                duration=60.0,
                environment="prod" if rng.random() < 0.1 else None,
            )
            for _ in range(rng.randint(1, 4))
        )
    elif action < 0.4:
        scope = rng.choice(SCOPES)
        body = {"name": f"r{serial}", "labels": some_labels(rng, runner=True), "runner_group_id": 1}
        world.generate_jitconfig(scope, body, org_level="/" not in scope)
    elif action < 0.45:
        token = world.create_token(rng.choice(SCOPES[:3]), "registration").token
        world.register_with_token(
            token, f"p{serial}", some_labels(rng, runner=True), ephemeral=False
        )
    elif action < 0.6 and runners:
        world.runner_poll(world.runners[rng.choice(runners)].credential)
    elif action < 0.72 and runners:
        runner = world.runners[rng.choice(runners)]
        if runner.job_id is not None:
            world.runner_complete(runner.credential, runner.job_id, Conclusion.SUCCESS)
    elif action < 0.75 and runners:
        world.runner_disconnect(world.runners[rng.choice(runners)].credential)
    elif action < 0.78 and runners:
        runner = world.runners[rng.choice(runners)]
        with contextlib.suppress(ApiError):
            world.delete_runner(runner.scope, runner.id)
    elif action < 0.81 and runners:
        runner = world.runners[rng.choice(runners)]
        world.add_labels(runner.scope, runner.id, {"labels": some_labels(rng, runner=True)})
    elif action < 0.84:
        waiting = sorted(j.id for j in world.jobs.values() if j.status is JobStatus.WAITING)
        if waiting:
            world.approve(rng.choice(waiting))
    elif action < 0.87 and world.runs:
        run = world.runs[rng.choice(sorted(world.runs))]
        with contextlib.suppress(ApiError):
            world.cancel_run(run)
    elif action < 0.9 and runners:
        world.runner_shut_down(world.runners[rng.choice(runners)].credential)
    else:
        assert isinstance(world.clock, VirtualClock)
        world.clock.advance(rng.choice((1.0, 10.0, 45.0, 200.0)))
        world.tick()


@pytest.mark.parametrize("scale_sets", [False, True], ids=["simulation", "fake-github"])
@pytest.mark.parametrize("seed", range(12))
def test_indexed_routing_assigns_as_scanning_does(seed: int, scale_sets: bool) -> None:
    indexed_events: list[tuple[str, int, int | None]] = []
    scanned_events: list[tuple[str, int, int | None]] = []
    indexed = new_world(indexed_events, scanning=False, scale_sets=scale_sets)
    scanned = new_world(scanned_events, scanning=True, scale_sets=scale_sets)
    for serial in range(400):
        state = random.Random(f"{seed}:{serial}")
        step(indexed, random.Random(state.random()), serial)
        state = random.Random(f"{seed}:{serial}")
        step(scanned, random.Random(state.random()), serial)
        assert indexed_events == scanned_events, f"step {serial}"
        assert indexed.next_deadline() == scanning_deadline(indexed), f"step {serial}"
        assert scanned.next_deadline() == scanning_deadline(scanned)
    assigned = sum(1 for action, _, _ in indexed_events if action == "in_progress")
    assert assigned > 20  # the histories do exercise the routing


def test_a_burst_takes_the_lowest_id_runners_oldest_job_first() -> None:
    events: list[tuple[str, int, int | None]] = []
    world = new_world(events, scanning=False)
    jobs = world.create_jobs(JobSpec("acme/app", ("self-hosted", "x64"), 60.0) for _ in range(5))
    for index in range(3):
        body = {"name": f"r{index}", "labels": ["x64"], "runner_group_id": 1}
        runner, _ = world.generate_jitconfig("acme", body, org_level=True)
        world.runner_connect(runner.credential)
    assert [(job.id, job.runner_id) for job in jobs[:3]] == [
        (jobs[0].id, 1),
        (jobs[1].id, 2),
        (jobs[2].id, 3),
    ]
    assert all(job.status is JobStatus.QUEUED for job in jobs[3:])
