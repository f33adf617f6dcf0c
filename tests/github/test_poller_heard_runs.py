"""The safety-net poll finds a job whose webhook was lost when its run's siblings were heard.

Benchmarks found it: with 30% of webhooks lost, the last job of a 39-job run stayed queued
for hours, because the push that started the run was announced by its siblings (no suspect),
and the slow sweep of the repository never came. The poll now reads a heard run's jobs once.
"""

from __future__ import annotations

from runnerscale.clock import VirtualClock
from runnerscale.github.poller import Poller, RunStatus
from runnerscale.github.schedule import WEBHOOK_GRACE, ListedRepo, PollHints
from runnerscale.model import JobState, Target
from runnerscale.protocols import ObservedJob

#: ``webhook_poll_interval``'s default: how often the safety net polls while webhooks arrive.
POLL = 300.0
REPO = "acme/monorepo"
RUN = 5010
TARGET = Target("org", "acme")


class OneRepoGitHub:
    """An organisation of one repository, pushed to a week ago; a run starts when told to.
    Counts the requests the poll makes."""

    def __init__(self, clock: VirtualClock) -> None:
        self.pushed = clock.now() - 7 * 24 * 3600.0 + 60.0
        self.jobs: list[ObservedJob] = []
        self.requests = 0

    def start_run(self, created: float, size: int) -> list[ObservedJob]:
        self.jobs = [
            ObservedJob(7000000 + i, REPO, ("self-hosted",), JobState.QUEUED, created + i, RUN)
            for i in range(size)
        ]
        return self.jobs

    @property
    def sees_whole_org(self) -> bool:
        return True

    async def org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        self.requests += 1
        return [ListedRepo(REPO, self.pushed)] if page == 1 else []

    async def installation_repos(self, org: str) -> list[ListedRepo]:
        raise AssertionError("a token reads the organisation's list")

    async def newest_runs(self, repo: str) -> list[tuple[int, str]]:
        self.requests += 1
        return [(RUN, "in_progress")] if self.jobs else []

    async def runs(self, repo: str, status: RunStatus) -> list[int]:
        self.requests += 1
        return [RUN] if self.jobs and status == "in_progress" else []

    async def jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        self.requests += 1
        return list(self.jobs)

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        raise AssertionError("the poll reads lists")


async def polls_until_found(confirm_heard_runs: bool) -> tuple[float | None, list[int]]:
    """A run of three jobs starts between two polls; the webhooks of the first two arrive,
    the third's is lost. Returns how long after its creation the poll saw the lost job (None:
    not within four polls) and the requests of each poll after the run started."""
    clock = VirtualClock()
    github = OneRepoGitHub(clock)
    hints = PollHints(webhooks=True)
    poller = Poller(github, clock.now, lambda: hints)
    await poller.active_jobs(TARGET)  # reads the repository once: nothing runs yet
    clock.advance(100.0)
    *heard, lost = github.start_run(clock.now(), 3)
    newest = max(job.created_at for job in heard)
    runs = {(REPO, RUN): newest} if confirm_heard_runs else {}
    hints = PollHints(webhooks=True, newest_jobs={REPO: newest}, heard_runs=runs)
    requests: list[int] = []
    clock.advance(POLL - 100.0)
    for _ in range(4):
        before = github.requests
        seen = {job.id for job in (await poller.active_jobs(TARGET)).jobs}
        requests.append(github.requests - before)
        if lost.id in seen:
            return clock.now() - lost.created_at, requests
        clock.advance(POLL)
    return None, requests


async def test_a_lost_job_of_a_heard_run_is_found_within_a_grace_and_a_poll() -> None:
    waited, requests = await polls_until_found(confirm_heard_runs=True)
    assert waited is not None
    assert waited <= WEBHOOK_GRACE + POLL
    assert requests == [1]  # the run's jobs, one request


async def test_a_heard_run_is_read_once_until_a_newer_job_of_it_is_heard() -> None:
    clock = VirtualClock()
    github = OneRepoGitHub(clock)
    heard = github.start_run(clock.now(), 2)
    hints = PollHints(webhooks=True, heard_runs={(REPO, RUN): heard[-1].created_at})
    poller = Poller(github, clock.now, lambda: hints)
    polls: list[int] = []
    for later in (False, False, True, False):
        if later:  # a job of the run queued later (``needs:``) is heard of
            hints = PollHints(webhooks=True, heard_runs={(REPO, RUN): clock.now()})
        clock.advance(POLL)
        before = github.requests
        await poller.active_jobs(TARGET)
        polls.append(github.requests - before)
    # The first poll reads the repository list and the run's jobs; the run is read again
    # only once a newer job of it is heard of.
    assert polls == [2, 0, 1, 0]


async def test_without_reading_heard_runs_the_slow_sweep_leaves_the_lost_job_queued() -> None:
    """Why: the push was announced by the heard jobs, so only the sweep would read it."""
    waited, requests = await polls_until_found(confirm_heard_runs=False)
    assert waited is None
    assert requests == [0, 0, 0, 0]
