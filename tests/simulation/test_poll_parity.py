"""The daemon's poll over HTTP and the simulation's poll make the same requests.

One simulated world, read two ways: the production :class:`GitHubClient` through the
simulator's REST app (githubkit over httpx, in-process), and the simulation's
:class:`SimulatedGitHub` straight from the world. Both run the one
:class:`~runnerscale.github.poller.Poller`; after the same polls they must have sent the same
requests per operation, been charged for the same ones (304s are free) and seen the same jobs,
or ``runnerscale simulate``'s API figures would not be the daemon's.
"""

from __future__ import annotations

import httpx
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.app import create_app
from runnerscale.fakegithub.entities import Conclusion
from runnerscale.fakegithub.faults import FaultPlan, Faults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.budget import TOKEN_CREDENTIAL
from runnerscale.github.client import GitHubClient
from runnerscale.github.schedule import PollHints
from runnerscale.model import Target
from runnerscale.protocols import ObservedJob
from runnerscale.simulation.github import SimulatedGitHub

TOKEN = "ghp_parity_token"
URL = "http://simulator.invalid"
EPOCH = 1_767_225_600.0
DAY = 86_400.0
LABELS = ("self-hosted", "linux")
ORG = Target("org", "acme")
REPO = Target("repo", "solo/app")


def _seen(jobs: list[ObservedJob]) -> list[tuple[int, str, str]]:
    return sorted((job.id, job.repo.lower(), job.state.value) for job in jobs)


@pytest.mark.parametrize("webhooks", [False, True], ids=["polling", "webhooks"])
async def test_the_client_and_the_simulation_poll_alike(webhooks: bool) -> None:
    clock = VirtualClock(EPOCH)
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), clock, URL)
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
    direct = SimulatedGitHub(world, Faults(FaultPlan()), RateLimits())
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
            over_http = await http.active_jobs(target)
            assert _seen(over_http) == _seen(await direct.active_jobs(target)), (minute, target)
            active.update(job.repo for job in over_http if job.state.value != "completed")
        assert await http.list_runners(ORG) == await direct.list_runners(ORG)
        for job_id in sorted(world.jobs)[-3:]:
            repo = world.jobs[job_id].repo.full_name
            assert await http.get_job(repo, job_id) == await direct.get_job(repo, job_id)

    budget = http.budget.of(TOKEN_CREDENTIAL)
    requests = {op: n for op, n in budget.calls.items() if n}
    charged = {
        op: n - budget.not_modified_calls[op]
        for op, n in budget.calls.items()
        if n - budget.not_modified_calls[op]
    }
    assert requests == dict(direct.requests)
    assert charged == dict(direct.charged)
    # ...to the same rate-limit resource (the HTTP side as GitHub's answers named it).
    assert budget.charged_by_resource() == dict(direct.charged_by_resource)
    # The poll did read: pages of the organisation, probes and full reads, jobs, 304s.
    assert {"list-org-repos", "list-workflow-runs", "list-jobs-for-run"} <= set(charged)
    assert budget.not_modified > 0


async def test_an_enterprise_target_is_not_polled_in_the_simulation_either() -> None:
    """As in the daemon: GitHub has no API listing an enterprise's jobs (webhooks bring them)."""
    simulator = build_simulator(SimulatorOptions(tokens=(TOKEN,)), VirtualClock(EPOCH), URL)
    direct = SimulatedGitHub(simulator.world, Faults(FaultPlan()), RateLimits())
    assert await direct.active_jobs(Target("enterprise", "acme-corp")) == []
    assert not direct.requests
