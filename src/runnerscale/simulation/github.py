"""The controller's :class:`GitHubAPI` answered directly by the in-process simulator.

The daemon's client (:mod:`runnerscale.github.client`) speaks HTTP through githubkit; replaying
hours of traffic that way costs tens of thousands of round trips. This transport answers the
same calls from the simulated :class:`~runnerscale.fakegithub.world.World`. What a poll reads is not
written here: the daemon's :class:`~runnerscale.github.poller.Poller` runs over this class's
:class:`~runnerscale.github.poller.PollReader` methods (the organisation's repository list by
pages of 100, most recently pushed first; a repository's newest runs, its runs by status, the
jobs of a run; a job). Each request is accounted for in one place, :meth:`SimulatedGitHub._request`:
conditional reads (a re-read whose answer did not change is a free 304, as GitHub counts it),
the simulator's secondary and primary rate limits, each request charged to the resource the
daemon's budget expects for its operation (:data:`~runnerscale.github.budget.OPERATION_RESOURCES`:
registering runners to ``actions_runner_registration``, the rest to ``core``), and the fault
plan's injected errors.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from runnerscale.fakegithub.entities import Job, JobStatus, Repo
from runnerscale.fakegithub.faults import Faults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.world import DEFAULT_GROUP_ID, ApiError, World
from runnerscale.github.budget import resource_of
from runnerscale.github.poller import PER_PAGE, Poller, RunStatus
from runnerscale.github.schedule import PROBE_RUNS, ListedRepo, PollHints
from runnerscale.model import GitHubRunner, JobState, Target
from runnerscale.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
)

IDENTITY = "simulation"
T = TypeVar("T")
_STATES = {
    JobStatus.WAITING: JobState.WAITING,
    JobStatus.QUEUED: JobState.QUEUED,
    JobStatus.IN_PROGRESS: JobState.IN_PROGRESS,
    JobStatus.COMPLETED: JobState.COMPLETED,
}


def observed(job: Job) -> ObservedJob:
    state = _STATES[job.status]
    return ObservedJob(
        id=job.id,
        repo=job.repo.full_name,
        labels=tuple(job.labels),
        state=state,
        created_at=job.created_at,
        run_id=job.run.id,
        name=job.name,
        started_at=job.started_at if state is not JobState.QUEUED else None,
        completed_at=job.completed_at,
        runner_name=job.runner_name,
        conclusion=job.conclusion.value if job.conclusion else None,
    )


def _listed(repo: Repo) -> ListedRepo:
    # GitHub gives pushed_at to the second, like a job's created_at.
    return ListedRepo(repo.full_name, float(math.floor(repo.pushed_at)))


class SimulatedGitHub:
    def __init__(self, world: World, faults: Faults, rate_limits: RateLimits) -> None:
        self.world = world
        self.faults = faults
        self.rate_limits = rate_limits
        #: Requests GitHub charged (304s are free), and all requests, by operation.
        self.charged: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        #: Requests GitHub charged, by rate-limit resource.
        self.charged_by_resource: Counter[str] = Counter()
        self._last: dict[Hashable, Hashable] = {}
        #: The daemon's own poll, over this simulator's reads, on GitHub's (the world's) clock.
        self._poller = Poller(self, lambda: self.world.now)

    @property
    def poll_hints(self) -> Callable[[], PollHints]:
        """What the controller knows (set by the engine): active repositories, webhooks."""
        return self._poller.hints

    @poll_hints.setter
    def poll_hints(self, hints: Callable[[], PollHints]) -> None:
        self._poller.hints = hints

    @property
    def api_calls(self) -> int:
        return sum(self.charged.values())

    # ------------------------------------------------------------------ the request pipeline

    def _request(
        self, operation: str, *, content: Hashable | None = None, key: Hashable = None
    ) -> bool:
        """Count one request; True when it was a free 304. Raises like the real client."""
        self.requests[operation] += 1
        now = self.world.now
        retry = self.rate_limits.secondary_active(now)
        if retry is not None:
            raise GitHubError(f"{operation}: secondary rate limit", retry_after=float(retry))
        if content is not None and self._last.get(key) == content:
            return True
        plan = self.faults.plan.for_operation(operation)
        resource = resource_of(operation)
        ok, bucket = self.rate_limits.take(IDENTITY, resource, now)
        if not ok:
            raise GitHubError(
                f"{operation}: rate limit exhausted ({resource})", retry_after=bucket.reset - now
            )
        self.charged[operation] += 1
        self.charged_by_resource[resource] += 1
        if self.faults.chance(plan.error_rate):
            raise GitHubError(f"{operation}: GitHub answered {plan.error_status}")
        if content is not None:
            self._last[key] = content
        return False

    def _read_pages(
        self, operation: str, key: tuple[Hashable, ...], items: Sequence[Hashable]
    ) -> None:
        """A whole list read as the client reads it: page by page (:data:`PER_PAGE` a page,
        each one conditional) until the total count GitHub gives with every page is reached."""
        total = len(items)
        for page in range(max(1, -(-total // PER_PAGE))):
            chunk = tuple(items[page * PER_PAGE : (page + 1) * PER_PAGE])
            self._request(operation, content=(total, chunk), key=(*key, page + 1))

    def _scope(self, target: Target) -> tuple[str, bool]:
        try:
            if target.kind == "repo":
                return self.world.repo(*target.name.split("/", 1)).full_name, False
            if target.kind == "org":
                return self.world.org(target.name).login, True
        except ApiError:
            raise GitHubError(f"{target.kind} {target.name}: GitHub answered 404") from None
        raise GitHubError(f"{target.kind} targets are not supported in the simulation")

    # ------------------------------------------------------------------ GitHubAPI

    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig:
        self._request("generate-jitconfig")
        try:
            scope, org_level = self._scope(target)
            body = {"name": name, "labels": list(labels), "runner_group_id": DEFAULT_GROUP_ID}
            runner, encoded = self.world.generate_jitconfig(scope, body, org_level=org_level)
        except ApiError as error:
            raise GitHubError(f"generate-jitconfig: GitHub answered {error.status}") from None
        return JitConfig(runner_id=runner.id, encoded=encoded)

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome:
        self._request("delete-runner")
        try:
            scope, _ = self._scope(target)
            self.world.delete_runner(scope, runner_id)
        except ApiError as error:
            if error.status == 404:
                return DeleteOutcome.GONE
            if error.status == 422:
                return DeleteOutcome.BUSY
            raise GitHubError(f"delete-runner: GitHub answered {error.status}") from None
        return DeleteOutcome.DELETED

    async def list_runners(self, target: Target) -> list[GitHubRunner]:
        scope, _ = self._scope(target)
        runners = [
            GitHubRunner(r.id, r.name, r.connected, r.busy, tuple(r.label_names))
            for r in self.world.runners_in(scope)
        ]
        self._read_pages("list-runners", ("runners", scope), runners)
        return runners

    async def active_jobs(self, target: Target) -> list[ObservedJob]:
        return await self._poller.active_jobs(target)

    # ------------------------------------------------------------------ PollReader

    @property
    def sees_whole_org(self) -> bool:
        return True  # a token: the simulation has no App

    async def org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        """As GitHub answers it: most recently pushed first, a page of :data:`PER_PAGE`; a
        page's answer changes when a repository on it is pushed to."""
        owner = self._found(f"org {org}", lambda: self.world.org(org))
        ordered = sorted(
            self.world.repos_of(owner),
            key=lambda repo: (repo.pushed_at, repo.id),
            reverse=True,
        )
        chunk = [_listed(repo) for repo in ordered[(page - 1) * PER_PAGE : page * PER_PAGE]]
        self._request("list-org-repos", content=tuple(chunk), key=("repos", owner.login, page))
        return chunk

    async def installation_repos(self, org: str) -> list[ListedRepo]:
        raise GitHubError("the simulation has no GitHub App installations")

    async def newest_runs(self, repo: str) -> list[tuple[int, str]]:
        found = self._repo(repo)
        runs = self.world.runs_of(found)[:PROBE_RUNS]
        content = tuple((run.id, run.updated_at) for run in runs)
        self._request("list-workflow-runs", content=content, key=("probe", found.id))
        return [(run.id, self.world.run_status(run)[0]) for run in runs]

    async def runs(self, repo: str, status: RunStatus) -> list[int]:
        found = self._repo(repo)
        runs = self.world.runs_of(found, status)
        snapshot = [(run.id, run.updated_at) for run in runs]
        self._read_pages("list-workflow-runs", ("runs", found.id, status), snapshot)
        return [run.id for run in runs]

    async def jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        run = self.world.runs.get(run_id)
        if run is None or run.repo.full_name.lower() != repo.lower():
            self._request("list-jobs-for-run")
            raise GitHubError("list-jobs-for-run: GitHub answered 404", status=404)
        latest = [j for j in self.world.run_jobs(run) if j.run_attempt == run.run_attempt]
        snapshot = [(j.id, j.status, j.runner_id) for j in latest]
        self._read_pages("list-jobs-for-run", ("jobs", run_id), snapshot)
        return [observed(job) for job in latest]

    def _repo(self, name: str) -> Repo:
        owner, _, repo = name.partition("/")
        return self._found(f"repo {name}", lambda: self.world.repo(owner, repo))

    @staticmethod
    def _found(what: str, find: Callable[[], T]) -> T:
        """What ``find`` finds in the world; GitHub's 404 when it does not exist."""
        try:
            return find()
        except ApiError as error:
            raise GitHubError(
                f"{what}: GitHub answered {error.status}", status=error.status
            ) from None

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        job = self.world.jobs.get(job_id)
        if job is None or job.repo.full_name.lower() != repo.lower():
            self._request("get-job")
            return None
        answer = observed(job)
        self._request("get-job", content=answer, key=("job", job_id))
        return answer

    async def close(self) -> None:
        """Nothing to release."""
