"""A poll survives one repository's failed read: the others are read, the failed one is named
(its jobs are unknown, not gone) and read again at the next poll. What concerns every read (a
rate limit, bad credentials) and a failed repository list still end the poll.

Over the in-process simulator (the simulation's transport of the one Poller), with the fake
GitHub's fault plan failing one repository's requests."""

from __future__ import annotations

import pytest

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.faults import FaultPlan, Faults, OperationFaults, RateLimitFaults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import JobSpec
from runnerscale.github.poller import HOPELESS_AFTER, ends_the_poll
from runnerscale.model import Target
from runnerscale.protocols import GitHubError
from runnerscale.simulation.github import SimulatedGitHub
from tests.logcapture import daemon_log

EPOCH = 1_767_225_600.0
ORG = Target("org", "acme")
REPOS = ("acme/app", "acme/lib", "acme/site")
LABELS = ("self-hosted", "linux")
ALWAYS = OperationFaults(error_rate=1.0)


def busy_org(plan: FaultPlan) -> SimulatedGitHub:
    """An organisation of three repositories, a job queued in each, under ``plan``."""
    clock = VirtualClock(EPOCH)
    world = build_simulator(SimulatorOptions(), clock, "http://simulator.invalid").world
    github = SimulatedGitHub(world, Faults(), RateLimits())
    world.create_jobs([JobSpec(repo, LABELS, 60.0, None, "build") for repo in REPOS])
    github.ledger.put_in_force(plan)
    return github


async def test_one_repository_failing_leaves_the_others_read_and_is_read_again() -> None:
    github = busy_org(FaultPlan(repos={"acme/LIB": ALWAYS}))
    polled = await github.active_jobs(ORG)
    assert sorted(job.repo for job in polled.jobs) == ["acme/app", "acme/site"]
    assert polled.unread == {"acme/lib"}
    assert polled.error is None  # the poll read something: not a failed poll
    github.ledger.put_in_force(FaultPlan())  # GitHub answers again
    polled = await github.active_jobs(ORG)
    assert sorted(job.repo for job in polled.jobs) == sorted(REPOS)
    assert polled.unread == frozenset()


async def test_a_failing_repository_is_told_of_once_while_it_fails_and_once_when_back() -> None:
    github = busy_org(FaultPlan(repos={"acme/lib": ALWAYS}))
    with daemon_log() as log:
        for _ in range(3):
            assert (await github.active_jobs(ORG)).unread == {"acme/lib"}
        github.ledger.put_in_force(FaultPlan())
        await github.active_jobs(ORG)
    lines = log.getvalue().splitlines()
    [failing] = [line for line in lines if "acme/lib could not be read" in line]
    assert "GitHub answered 500" in failing  # the reason
    assert sum("acme/lib is read again" in line for line in lines) == 1


async def test_a_poll_that_reads_no_repository_fails_and_says_which_were_not_read() -> None:
    runs = {"actions/list-workflow-runs-for-repo": ALWAYS}
    polled = await busy_org(FaultPlan(operations=runs)).active_jobs(ORG)
    assert polled.jobs == []
    assert polled.unread == set(REPOS)
    assert polled.error is not None
    assert polled.error.status == 500


async def test_a_poll_whose_first_reads_all_fail_leaves_the_rest_unread_untried() -> None:
    """GitHub failing as a whole: not every repository waited for in turn."""
    github = busy_org(FaultPlan(operations={"actions/list-workflow-runs-for-repo": ALWAYS}))
    more = [f"acme/more-{index}" for index in range(4)]
    for name in more:
        github.world.ensure_repo(name)
    polled = await github.active_jobs(ORG)
    assert github.requests["list-workflow-runs"] == HOPELESS_AFTER
    assert polled.unread == {*REPOS, *more}
    assert polled.error is not None


async def test_a_rate_limit_on_a_repository_read_ends_the_poll() -> None:
    # The budget holds the repository list's one page, not the first repository's read.
    github = busy_org(FaultPlan(rate_limit=RateLimitFaults(limit=1)))
    with pytest.raises(GitHubError) as limited:
        await github.active_jobs(ORG)
    assert limited.value.retry_after is not None
    assert github.requests["list-workflow-runs"] == 1  # no other repository was tried


async def test_a_failed_repository_list_ends_the_poll() -> None:
    listing = {"repos/list-for-org": ALWAYS}
    with pytest.raises(GitHubError):
        await busy_org(FaultPlan(operations=listing)).active_jobs(ORG)


@pytest.mark.parametrize(
    ("error", "ends"),
    [
        (GitHubError("secondary limit", retry_after=60.0, status=403), True),
        (GitHubError("too many requests", status=429), True),
        (GitHubError("bad credentials", status=401), True),
        (GitHubError("repository gone", status=404), False),
        (GitHubError("no access to the repository", status=403), False),
        (GitHubError("bad gateway", status=502), False),
        (GitHubError("timed out"), False),
    ],
)
def test_what_ends_a_poll_and_what_one_repository_alone_suffers(
    error: GitHubError, ends: bool
) -> None:
    assert ends_the_poll(error) is ends
