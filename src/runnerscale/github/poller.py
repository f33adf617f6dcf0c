"""One GitHub poll: which repositories it reads and how, written once for every transport.

A poll of a target finds its active jobs. For a ``repo:`` target that is a full read of the
repository; for an ``org:`` target, the organisation's repository list (whole every
``REPO_LIST_TTL``, its first page or nothing in between) and the
:class:`~runnerscale.github.schedule.RepoSchedule` choose which repositories to read in full
(both active run lists) and which to probe (their newest runs, in one request); then the jobs
of each active run, and of each run heard of by webhook whose siblings' webhooks may have been
lost. An ``enterprise:`` target is not polled: GitHub has no API listing an
enterprise's jobs.

:class:`Poller` does all of that over a :class:`PollReader`, the few reads a poll makes. The
daemon's reader is :class:`~runnerscale.github.client.GitHubClient` (githubkit over HTTP);
``runnerscale simulate``'s is :class:`~runnerscale.simulation.github.SimulatedGitHub` (the
in-process simulator). Each reader makes its reads conditional as its transport allows (an
unchanged answer is a free 304) and accounts for its requests; the poller never sees a
request. So a simulated figure is a figure of this code.

One repository's failed read (a 5xx after the client's retries, a timeout, a repository
deleted meanwhile or hidden from the credential) does not end the poll: it is logged once
while it keeps failing, the poll goes on with the other repositories, and the result names it
as unread (:class:`~runnerscale.protocols.PolledJobs`): its jobs are unknown, not gone, and the
schedule records no read of it. What concerns every read ends the poll as before
(:func:`ends_the_poll`: a rate limit, bad credentials), as does a failed repository list
(nothing to go on). A poll that read none of the repositories it tried failed: its result
carries the error, for the poll loop to back off; one whose first :data:`HOPELESS_AFTER` reads
all failed leaves the rest unread without trying them (GitHub is failing as a whole).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from runnerscale.github.schedule import PROBE_RUNS, ListedRepo, PollHints, PollPlan, RepoSchedule
from runnerscale.model import Target
from runnerscale.protocols import GitHubError, ObservedJob, PolledJobs

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "HOPELESS_AFTER",
    "PER_PAGE",
    "PollReader",
    "Poller",
    "RunStatus",
    "ends_the_poll",
]

log = logging.getLogger("runnerscale.github")

#: Items per page of every list read (GitHub's maximum).
PER_PAGE = 100
RunStatus = Literal["queued", "in_progress"]
#: Statuses of workflow runs whose jobs may need a runner or hold one.
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "in_progress")
#: A poll whose first this many repository reads all failed reads no further: GitHub is
#: failing as a whole (each read would wait out the client's retries and timeouts).
HOPELESS_AFTER = 3


class PollReader(Protocol):
    """The reads a poll makes. Each raises :class:`~runnerscale.protocols.GitHubError` when
    GitHub refuses or fails; lists are read whole (every page) unless a page is named."""

    @property
    def sees_whole_org(self) -> bool:
        """True when the organisation's own repository list is what may be read (a token); False
        for a GitHub App, which reads its installation's list (:meth:`installation_repos`) and
        takes from the organisation's first page only news of repositories it already knows."""
        ...

    async def org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        """Page ``page`` (from 1) of ``GET /orgs/ORG/repos?sort=pushed``: most recently pushed
        first, :data:`PER_PAGE` a page."""
        ...

    async def installation_repos(self, org: str) -> list[ListedRepo]:
        """Every repository the App's installation on ``org`` may see (no order)."""
        ...

    async def newest_runs(self, repo: str) -> list[tuple[int, str]]:
        """The :data:`PROBE_RUNS` newest runs of a repository: (run id, status)."""
        ...

    async def runs(self, repo: str, status: RunStatus) -> list[int]:
        """The ids of a repository's runs with that status."""
        ...

    async def jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        """The jobs of a run's latest attempt."""
        ...

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        """One job; None when GitHub does not know it (any more)."""
        ...


class Poller:
    """:meth:`active_jobs` of the controller's :class:`~runnerscale.protocols.GitHubAPI`, over
    a :class:`PollReader`. ``clock`` is GitHub's time (``pushed_at``'s); ``hints`` is what the
    controller knows (its active repositories, whether webhooks arrive)."""

    def __init__(
        self,
        reader: PollReader,
        clock: Callable[[], float],
        hints: Callable[[], PollHints] = PollHints,
    ) -> None:
        self._reader = reader
        self._clock = clock
        #: What the controller knows (the daemon sets it once the controller exists).
        self.hints = hints
        self._schedule = RepoSchedule()
        #: Target.key -> (when the list was last read whole, the list as it is known).
        self._repo_lists: dict[str, tuple[float, list[ListedRepo]]] = {}
        self._said_webhooks_only: set[str] = set()
        #: Repositories (lower case) whose last read failed (said once while they fail).
        self._failing: set[str] = set()

    async def active_jobs(self, target: Target) -> PolledJobs:
        if target.kind == "enterprise":
            # GitHub has no API listing an enterprise's organisations' jobs: they arrive by
            # webhook (an enterprise or organisation hook); organisations listed as targets
            # too are polled as a safety net.
            if target.key not in self._said_webhooks_only:
                self._said_webhooks_only.add(target.key)
                log.warning(
                    "enterprise %s: jobs come from webhooks only (GitHub has no API listing an "
                    "enterprise's jobs); add its organisations as targets for polling",
                    target.name,
                )
            return PolledJobs()
        # The list failing leaves nothing to go on: raised, as a rate limit or bad credentials.
        listed = await self._repos_of(target)
        plan = PollPlan(full=[repo.name for repo in listed], probe=[])
        now = self._clock()
        hints = self.hints()
        if target.kind == "org":
            plan = self._schedule.plan(target.key, listed, hints, now)
        by_name = {repo.name: repo for repo in listed}
        reads = _Reads()
        planned = plan.full + plan.probe
        for index, repo in enumerate(planned):
            if reads.hopeless():
                # GitHub answered none of this poll's first reads (down, or unreachable):
                # the others are left unread rather than each tried and waited for.
                log.warning(
                    "poll: %s: the first %d repository reads failed; %d more are left for "
                    "the next poll",
                    target.name,
                    HOPELESS_AFTER,
                    len(planned) - index,
                )
                for left in planned[index:]:
                    reads.unread.add(left.lower())
                    self._schedule.failed(left)
                break
            try:
                run_ids = await self._probe(repo) if repo in plan.probe else None
                if run_ids is None:
                    run_ids = []
                    for status in ACTIVE_RUN_STATUSES:
                        run_ids.extend(await self._reader.runs(repo, status))
                for run_id in dict.fromkeys(run_ids):
                    reads.jobs.extend(await self._reader.jobs_of_run(repo, run_id))
            except GitHubError as error:
                self._failed(repo, error, reads)
                if target.kind == "org":
                    # Not read: neither quiet nor caught up with its pushes; read next poll.
                    self._schedule.failed(repo)
                continue
            self._read(repo, reads)
            self._schedule.record(by_name[repo], bool(run_ids), now)
        if target.kind == "org" and not reads.hopeless():
            read = [repo for repo in planned if repo.lower() not in reads.unread]
            due = self._schedule.runs_to_confirm(hints, by_name, read, now, unread=reads.unread)
            for repo, run_id in due:
                try:
                    reads.jobs.extend(await self._reader.jobs_of_run(repo, run_id))
                except GitHubError as error:
                    self._failed(repo, error, reads)
                    self._schedule.unconfirmed((repo, run_id))
                    continue
                self._read(repo, reads)
        return reads.result()

    def _read(self, repo: str, reads: _Reads) -> None:
        """A read of ``repo`` succeeded: a repository that failed before is said to be back."""
        reads.succeeded += 1
        if repo.lower() in self._failing:
            self._failing.discard(repo.lower())
            log.info("poll: repository %s is read again", repo)

    def _failed(self, repo: str, error: GitHubError, reads: _Reads) -> None:
        """A read of ``repo`` failed: raised when the failure concerns the whole poll (a rate
        limit, bad credentials); else noted (the poll goes on with the other repositories),
        and said once while the repository keeps failing."""
        if ends_the_poll(error):
            raise error
        reads.failed(repo, error)
        if repo.lower() not in self._failing:
            log.warning(
                "poll: repository %s could not be read (%s); its jobs are kept as they were "
                "known, and it is read again at the next poll",
                repo,
                error,
            )
        else:
            log.debug("poll: repository %s still cannot be read (%s)", repo, error)
        self._failing.add(repo.lower())

    async def _probe(self, repo: str) -> list[int] | None:
        """The active ones among a repository's newest runs, in one request; None when they
        are all active (there may be more: read the repository in full)."""
        statuses = await self._reader.newest_runs(repo)
        active = [run_id for run_id, status in statuses if status != "completed"]
        return None if len(active) >= PROBE_RUNS else active

    async def _repos_of(self, target: Target) -> list[ListedRepo]:
        if target.kind == "repo":
            return [ListedRepo(target.name)]
        if target.kind != "org":
            raise _unsupported(target)
        now = self._clock()
        cached = self._repo_lists.get(target.key)
        how = self._schedule.list_read(self.hints(), None if cached is None else now - cached[0])
        if cached is not None and how == "cached":
            return cached[1]
        if cached is not None and how == "recent":
            recent = await self._reader.org_repos_page(target.name, 1)
            # An App sees only its installation's repositories: new ones wait for the full list.
            repos = RepoSchedule.merge_recent(
                cached[1], recent, add_new=self._reader.sees_whole_org
            )
            self._repo_lists[target.key] = (cached[0], repos)
            return repos
        repos = await self._list_org_repos(target.name)
        self._repo_lists[target.key] = (now, repos)
        self._schedule.forget_except(repo.name for repo in repos)
        listed = {repo.name.lower() for repo in repos}
        self._failing = {key for key in self._failing if key in listed or not target.covers(key)}
        return repos

    async def _list_org_repos(self, org: str) -> list[ListedRepo]:
        if not self._reader.sees_whole_org:
            # The installation's own list: only what the App may see, one list for all.
            return await self._reader.installation_repos(org)
        # Most recently pushed first: pushes move repositories to the first page, so the
        # pages behind it rarely change and re-reading them is a free 304.
        repos: list[ListedRepo] = []
        page = 1
        while True:
            batch = await self._reader.org_repos_page(org, page)
            repos += batch
            if len(batch) < PER_PAGE:
                # A push between two pages moves a repository up: count it once.
                return RepoSchedule.merge_recent([], repos, add_new=True)
            page += 1


def ends_the_poll(error: GitHubError) -> bool:
    """Whether a failed read concerns the whole poll rather than one repository: a rate limit
    (GitHub said when to come back: ``retry_after``; or a 429) or credentials GitHub refused
    (401). Reading on would be refused alike, or spend what is left of the budget."""
    return error.retry_after is not None or error.status in (401, 429)


@dataclass
class _Reads:
    """What one poll of a target read so far."""

    jobs: list[ObservedJob] = field(default_factory=list)
    #: Repositories (lower case) some read of which failed.
    unread: set[str] = field(default_factory=set)
    #: Reads (of a repository, or of a heard run's jobs) that succeeded.
    succeeded: int = 0
    first_error: GitHubError | None = None

    def failed(self, repo: str, error: GitHubError) -> None:
        self.unread.add(repo.lower())
        self.first_error = self.first_error or error

    def hopeless(self) -> bool:
        """Whether the first :data:`HOPELESS_AFTER` repositories tried all failed."""
        return self.succeeded == 0 and len(self.unread) >= HOPELESS_AFTER

    def result(self) -> PolledJobs:
        """The poll's result; it failed (``error``) when it read nothing it tried."""
        error = self.first_error if self.succeeded == 0 else None
        return PolledJobs(self.jobs, frozenset(self.unread), error)


def _unsupported(target: Target) -> GitHubError:
    return GitHubError(
        f"{target.kind} targets cannot list jobs ({target.name}): GitHub has no API for an "
        "enterprise's jobs; jobs come from webhooks (an enterprise or organisation webhook), "
        "or add the organisations as targets too"
    )
