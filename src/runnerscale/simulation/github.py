"""The controller's :class:`GitHubAPI` answered directly by the in-process simulator.

The daemon's client (:mod:`runnerscale.github.client`) speaks HTTP through githubkit; replaying
hours of traffic that way costs tens of thousands of round trips. This adapter answers the
same questions from the simulated :class:`~runnerscale.sim.world.World` and mirrors the
client's call pattern exactly (the organisation's repository list by pages, most recently
pushed first, and the same :class:`~runnerscale.github.schedule.RepoSchedule` choosing which
repositories to read in full or probe; the jobs of each active run; the runner list),
including conditional requests: a re-read whose answer did not change is a free 304, as
GitHub counts it. Injected API errors and
the rate-limit budget come from the simulator's fault plan and rate limits; each request is
charged to the resource the daemon's budget expects for its operation
(:data:`~runnerscale.github.budget.OPERATION_RESOURCES`: registering runners to
``actions_runner_registration``, the rest to ``core``), as the simulator charges them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from runnerscale.github.budget import resource_of
from runnerscale.github.client import PER_PAGE
from runnerscale.github.schedule import PROBE_RUNS, ListedRepo, PollHints, PollPlan, RepoSchedule
from runnerscale.model import GitHubRunner, JobState, Target
from runnerscale.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
)
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
        #: As in the client: what the controller knows, and which repositories a poll reads.
        self.poll_hints: Callable[[], PollHints] = PollHints
        self._schedule = RepoSchedule()
        self._repo_lists: dict[str, tuple[float, list[ListedRepo]]] = {}

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
        scope, org_level = self._scope(target)
        if org_level:
            listed = self._repos_of(scope)
            plan = self._schedule.plan(target.key, listed, self.poll_hints(), self.world.now)
            by_name = {repo.name: repo for repo in listed}
        else:
            plan = PollPlan(full=[scope], probe=[])
            by_name = {scope: _listed(self.world.repos[scope.lower()])}
        for name in plan.full + plan.probe:
            repo = self.world.repos[name.lower()]
            run_ids = self._probe(repo) if name in plan.probe else None
            if run_ids is None:
                run_ids = []
                for status in ("queued", "in_progress"):
                    runs = self.world.runs_of(repo, status)
                    content = tuple((run.id, run.updated_at) for run in runs)
                    self._request(
                        "list-workflow-runs", content=content, key=("runs", repo.id, status)
                    )
                    run_ids.extend(run.id for run in runs)
            self._schedule.record(by_name[name], bool(run_ids), self.world.now)
            for run_id in dict.fromkeys(run_ids):
                run = self.world.runs[run_id]
                latest = [j for j in self.world.run_jobs(run) if j.run_attempt == run.run_attempt]
                snapshot = tuple((j.id, j.status, j.runner_id) for j in latest)
                self._request("list-jobs-for-run", content=snapshot, key=("jobs", run_id))
                jobs.extend(observed(job) for job in latest)
        return jobs

    def _probe(self, repo: Repo) -> list[int] | None:
        """As the client: one read of the newest runs; None when they are all active."""
        runs = self.world.runs_of(repo)[:PROBE_RUNS]
        content = tuple((run.id, run.updated_at) for run in runs)
        self._request("list-workflow-runs", content=content, key=("probe", repo.id))
        active = [run.id for run in runs if self.world.run_status(run)[0] != "completed"]
        return None if len(active) >= PROBE_RUNS else active

    def _repos_of(self, org: str) -> list[ListedRepo]:
        """The organisation's repositories as the client last read them (a snapshot: a push
        is seen once the list, or its first page, is read again)."""
        now = self.world.now
        cached = self._repo_lists.get(org)
        how = self._schedule.list_read(
            self.poll_hints(), None if cached is None else now - cached[0]
        )
        if cached is not None and how == "cached":
            return cached[1]
        if cached is not None and how == "recent":
            repos = RepoSchedule.merge_recent(cached[1], self._org_repos_page(org, 0), add_new=True)
            self._repo_lists[org] = (cached[0], repos)
            return repos
        pages = max(1, -(-len(self.world.repos_of(self.world.org(org))) // PER_PAGE))
        repos = [repo for page in range(pages) for repo in self._org_repos_page(org, page)]
        self._repo_lists[org] = (now, repos)
        self._schedule.forget_except(repo.name for repo in repos)
        return repos

    def _org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        """As the client reads it: most recently pushed first, a page of 100; a page's answer
        changes when a repository on it is pushed to."""
        ordered = sorted(
            self.world.repos_of(self.world.org(org)),
            key=lambda repo: (repo.pushed_at, repo.id),
            reverse=True,
        )
        chunk = [_listed(repo) for repo in ordered[page * PER_PAGE : (page + 1) * PER_PAGE]]
        self._request("list-org-repos", content=tuple(chunk), key=("repos", org, page))
        return chunk

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
