"""The daemon's poll over HTTP and the simulation's poll make the same requests.

One simulated world, read two ways: the production :class:`GitHubClient` through the
simulator's REST app (githubkit over httpx, in-process), and the simulation's
:class:`SimulatedGitHub` straight from the world. Both run the one
:class:`~runnerscale.github.poller.Poller`; after the same polls they must have sent the same
requests per operation, been charged for the same ones (304s are free) and seen the same jobs,
or ``runnerscale simulate``'s API figures would not be the daemon's.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import httpx
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.entities import Conclusion
from runnerscale.fakegithub.faults import FaultPlan, Faults, OperationFaults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.budget import TOKEN_CREDENTIAL
from runnerscale.github.client import GitHubClient
from runnerscale.github.schedule import PollHints
from runnerscale.model import Target
from runnerscale.protocols import GitHubError, ObservedJob, PolledJobs
from runnerscale.simulation.github import SimulatedGitHub

TOKEN = "ghp_parity_token"
URL = "http://simulator.invalid"
EPOCH = 1_767_225_600.0
DAY = 86_400.0
LABELS = ("self-hosted", "linux")
ORG = Target("org", "acme")
REPO = Target("repo", "solo/app")
T = TypeVar("T")


def _seen(jobs: list[ObservedJob]) -> list[tuple[int, str, str]]:
    return sorted((job.id, job.repo.lower(), job.state.value) for job in jobs)


async def _outcome(call: Awaitable[T]) -> T | tuple[str, int | None]:
    """What a call gave: its result, or the status of the GitHub error it raised."""
    try:
        return await call
    except GitHubError as error:
        return ("error", error.status)


def _status(polled: PolledJobs) -> int | None:
    """The status of the error a poll that read nothing carries (None: no such error)."""
    return None if polled.error is None else polled.error.status


#: Injected server errors on every operation, and more on one: both transports must fail the
#: same requests (one seeded draw per request, in the same order) and charge alike.
FAULTS = FaultPlan(
    seed=7,
    error_rate=0.1,
    operations={"actions/list-jobs-for-workflow-run": OperationFaults(error_rate=0.3)},
)


@pytest.mark.parametrize(
    ("webhooks", "plan"),
    [(False, FaultPlan()), (True, FaultPlan()), (False, FAULTS)],
    ids=["polling", "webhooks", "polling-with-faults"],
)
@pytest.mark.slow
async def test_the_client_and_the_simulation_poll_alike(webhooks: bool, plan: FaultPlan) -> None:
    clock = VirtualClock(EPOCH)
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), clock, URL)
    simulator.set_faults(plan)
    world = simulator.world
    # Two full pages of repositories (so a third, empty, page ends the list): most dormant,
    # some pushed to lately, one pushed to while "runnerscale was down".
    for index in range(200):
        age = 30 * DAY if index % 10 else DAY / 2
        world.ensure_repo(f"acme/r{index:03}", pushed_at=EPOCH - age - index)
    world.ensure_repo("solo/app")
    http = GitHubClient(
        URL,
        TOKEN,
        transport=httpx.ASGITransport(app=create_app(simulator)),
        clock=clock.now,
    )
    direct = SimulatedGitHub(world, Faults(), RateLimits())
    direct.ledger.put_in_force(plan)
    active: set[str] = set()

    def hints() -> PollHints:
        return PollHints(active_repos=frozenset(active), webhooks=webhooks)

    http.poll_hints = hints
    direct.poll_hints = hints
    runners: list[str] = []
    for minute in range(90):
        # Work arrives in a few repositories (each a push), runners take it and finish it.
        if minute % 7 == 0:
            repo = f"acme/r{(minute * 13) % 200:03}"
            world.create_jobs([JobSpec(repo, LABELS, 300, None, f"build-{minute}")])
            world.create_jobs([JobSpec("solo/app", LABELS, 300, None, f"test-{minute}")])
        if minute == 84:
            # Lists longer than a page: a matrix of 120 jobs, and 105 runs queued at once.
            world.create_jobs([JobSpec("acme/r005", LABELS, 300, 9_000, None)] * 120)
            world.create_jobs(JobSpec("solo/app", LABELS, 300, None, "lint") for _ in range(105))
        if minute % 11 == 5:
            runner, _ = world.generate_jitconfig(
                "acme",
                {"name": f"r-{minute}", "labels": list(LABELS), "runner_group_id": 1},
                org_level=True,
            )
            world.runner_connect(runner.credential)
            runners.append(runner.credential)
        if minute % 13 == 12 and runners:
            credential = runners.pop(0)
            busy = next((r for r in world.runners.values() if r.credential == credential), None)
            if busy is not None and busy.job_id is not None:
                world.runner_complete(credential, busy.job_id, Conclusion.SUCCESS)
        clock.advance(60.0)
        world.tick()
        for target in (ORG, REPO):
            over_http = await _outcome(http.active_jobs(target))
            simulated = await _outcome(direct.active_jobs(target))
            if isinstance(over_http, PolledJobs):
                assert isinstance(simulated, PolledJobs), (minute, target, simulated)
                assert _seen(over_http.jobs) == _seen(simulated.jobs), (minute, target)
                # A failed repository read is left out alike (the poll goes on).
                assert over_http.unread == simulated.unread, (minute, target)
                assert _status(over_http) == _status(simulated), (minute, target)
                active.update(job.repo for job in over_http.jobs if job.state.value != "completed")
            else:
                assert over_http == simulated, (minute, target)
        for check in (
            lambda gh: gh.list_runners(ORG),
            # A run and a job that do not exist: a 404 (a read that fails is not charged).
            lambda gh: gh.jobs_of_run("solo/app", 999_999),
            lambda gh: gh.get_job("solo/app", 999_999),
        ):
            assert await _outcome(check(http)) == await _outcome(check(direct)), minute
        for job_id in sorted(world.jobs)[-3:]:
            repo = world.jobs[job_id].repo.full_name
            assert await _outcome(http.get_job(repo, job_id)) == await _outcome(
                direct.get_job(repo, job_id)
            )

    # The same requests by the client's operation names (as its budget counts them)...
    budget = http.budget.of(TOKEN_CREDENTIAL)
    requests = {op: n for op, n in budget.calls.items() if n}
    assert requests == dict(direct.requests)
    # ...and by REST operation, as the fake GitHub counted them over HTTP: the same requests,
    # charged alike (304s and failed reads are free), to the same rate-limit resources.
    assert simulator.stats.requests == direct.ledger.stats.requests
    assert simulator.stats.charged == direct.ledger.stats.charged
    assert simulator.stats.charged_by_resource == direct.charged_by_resource
    assert sum(direct.charged.values()) == sum(simulator.stats.charged.values())
    # The poll did read: pages of the organisation, probes and full reads, jobs, 304s.
    assert {"list-org-repos", "list-workflow-runs", "list-jobs-for-run"} <= set(direct.charged)
    assert budget.not_modified > 0
    assert simulator.stats.statuses["actions/get-job-for-workflow-run"][404] > 0
    if plan.error_rate:
        assert simulator.stats.statuses["actions/list-jobs-for-workflow-run"][500] > 0


async def test_an_enterprise_target_is_not_polled_in_the_simulation_either() -> None:
    """As in the daemon: GitHub has no API listing an enterprise's jobs (webhooks bring them)."""
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), VirtualClock(EPOCH), URL)
    direct = SimulatedGitHub(simulator.world, Faults(FaultPlan()), RateLimits())
    assert (await direct.active_jobs(Target("enterprise", "acme-corp"))).jobs == []
    assert not direct.requests


async def test_a_rerun_is_sent_and_charged_alike() -> None:
    """A job re-run (after its runner died): the same REST operation, answered and charged
    alike over HTTP and in the simulation."""
    clock = VirtualClock(EPOCH)
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), clock, URL)
    world = simulator.world
    http = GitHubClient(
        URL, TOKEN, transport=httpx.ASGITransport(app=create_app(simulator)), clock=clock.now
    )
    direct = SimulatedGitHub(world, Faults(), RateLimits())
    running, ended = world.create_jobs(
        [JobSpec("solo/app", LABELS, 300, None, "a"), JobSpec("solo/app", LABELS, 300, None, "b")]
    )
    world.cancel_run(ended.run)
    for repo, job_id in (
        ("solo/app", running.id),  # still queued: 403
        ("solo/app", ended.id),  # a new attempt each time
        ("solo/app", 999_999),
        ("solo/nope", ended.id),
    ):
        over_http = await _outcome(http.rerun_job(repo, job_id))
        assert over_http == await _outcome(direct.rerun_job(repo, job_id)), job_id
    attempts = [job for job in world.jobs.values() if job.run is ended.run]
    assert sorted(job.status.value for job in attempts) == ["completed", "queued", "queued"]
    operation = "actions/re-run-job-for-workflow-run"
    assert simulator.stats.requests[operation] == direct.ledger.stats.requests[operation] == 4
    assert simulator.stats.charged == direct.ledger.stats.charged
    assert dict(direct.requests) == {"rerun-job": 4}
