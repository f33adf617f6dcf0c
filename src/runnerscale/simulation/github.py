"""The controller's :class:`GitHubAPI` answered directly by the in-process simulator.

The daemon's client (:mod:`runnerscale.github.client`) speaks HTTP through githubkit; replaying
hours of traffic that way costs tens of thousands of round trips. This adapter answers the
same questions from the simulated :class:`~runnerscale.sim.world.World` and mirrors the
client's call pattern exactly (organisation repositories, queued and in-progress runs per
repository, the jobs of each active run, the runner list), including conditional requests: a
re-read whose answer did not change is a free 304, as GitHub counts it. Injected API errors and
the rate-limit budget come from the simulator's fault plan and rate limits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from runnerscale.controller.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
)
from runnerscale.github.client import PER_PAGE, REPO_LIST_TTL
from runnerscale.github.schedule import PollHints, RepoSchedule
from runnerscale.model import GitHubRunner, JobState, Target
from runnerscale.sim.entities import Job, JobStatus, Repo
from runnerscale.sim.faults import Faults
from runnerscale.sim.ratelimit import RateLimits
from runnerscale.sim.world import DEFAULT_GROUP_ID, ApiError, World

IDENTITY = "simulation"
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


class SimulatedGitHub:
    def __init__(self, world: World, faults: Faults, rate_limits: RateLimits) -> None:
        self.world = world
        self.faults = faults
        self.rate_limits = rate_limits
        #: Requests GitHub charged (304s are free), and all requests, by operation.
        self.charged: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._last: dict[Hashable, Hashable] = {}
        #: As in the client: what the controller knows, and which repositories a poll reads.
        self.poll_hints: Callable[[], PollHints] = PollHints
        self._schedule = RepoSchedule()
        self._repo_lists: dict[str, tuple[float, list[Repo]]] = {}

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
        ok, bucket = self.rate_limits.take(IDENTITY, "core", now)
        if not ok:
            raise GitHubError(f"{operation}: rate limit exhausted", retry_after=bucket.reset - now)
        self.charged[operation] += 1
        if self.faults.chance(plan.error_rate):
            raise GitHubError(f"{operation}: GitHub answered {plan.error_status}")
        if content is not None:
            self._last[key] = content
        return False

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
        self._request("list-runners", content=tuple(runners), key=("runners", scope))
        return runners

    async def active_jobs(self, target: Target) -> list[ObservedJob]:
        jobs: list[ObservedJob] = []
        repos = self._repos_of(target)
        if target.kind == "org":
            by_name = {repo.full_name: repo for repo in repos}
            planned = self._schedule.plan(target.key, list(by_name), self.poll_hints())
            repos = [by_name[name] for name in planned]
        for repo in repos:
            run_ids: list[int] = []
            for status in ("queued", "in_progress"):
                runs = self.world.runs_of(repo, status)
                content = tuple((run.id, run.updated_at) for run in runs)
                self._request("list-workflow-runs", content=content, key=("runs", repo.id, status))
                run_ids.extend(run.id for run in runs)
            self._schedule.record(repo.full_name, bool(run_ids))
            for run_id in dict.fromkeys(run_ids):
                run = self.world.runs[run_id]
                latest = [j for j in self.world.run_jobs(run) if j.run_attempt == run.run_attempt]
                snapshot = tuple((j.id, j.status, j.runner_id) for j in latest)
                self._request("list-jobs-for-run", content=snapshot, key=("jobs", run_id))
                jobs.extend(observed(job) for job in latest)
        return jobs

    def _repos_of(self, target: Target) -> list[Repo]:
        scope, org_level = self._scope(target)
        if not org_level:
            return [self.world.repos[scope.lower()]]
        now = self.world.now
        cached = self._repo_lists.get(scope)
        if cached is not None and now - cached[0] < REPO_LIST_TTL:
            return cached[1]
        repos = list(self.world.repos_of(self.world.org(scope)))
        # The client reads the list a page of 100 at a time.
        for page in range(max(1, -(-len(repos) // PER_PAGE))):
            chunk = tuple(r.id for r in repos[page * PER_PAGE : (page + 1) * PER_PAGE])
            self._request("list-org-repos", content=chunk, key=("repos", scope, page))
        self._repo_lists[scope] = (now, repos)
        return repos

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        self._request("get-job")
        job = self.world.jobs.get(job_id)
        if job is None or job.repo.full_name.lower() != repo.lower():
            return None
        return observed(job)

    async def close(self) -> None:
        """Nothing to release."""
