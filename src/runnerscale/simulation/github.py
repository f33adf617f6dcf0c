"""The controller's :class:`GitHubAPI` answered directly by the in-process simulator.

The daemon's client (:mod:`runnerscale.github.client`) speaks HTTP through githubkit; replaying
hours of traffic that way costs tens of thousands of round trips. This transport answers the
same calls from the simulated :class:`~runnerscale.fakegithub.world.World`. What a poll reads is not
written here: the daemon's :class:`~runnerscale.github.poller.Poller` runs over this class's
:class:`~runnerscale.github.poller.PollReader` methods (the organisation's repository list by
pages of 100, most recently pushed first; a repository's newest runs, its runs by status, the
jobs of a run; a job). Each request is accounted for by the fake GitHub's own
:class:`~runnerscale.fakegithub.accounting.Ledger`, the one its HTTP pipeline uses, under the
``operationId`` the client's call sends (:data:`_OPERATION_IDS`): the same rate limits and
resources, the same fault plan, the same order (a write charged whatever it answers, a read
only when it answers 200 with content the client does not hold yet: a re-read whose answer did
not change is a free 304). Only the fault plan's latency is not modelled here: the simulation
has no concurrent requests for it to delay.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

from runnerscale.fakegithub.accounting import (
    ACTIONS_SERVICE_PREFIX,
    Ledger,
    PrimaryLimitError,
    RefusedError,
    SecondaryLimitError,
)
from runnerscale.fakegithub.entities import Job, JobStatus, Repo
from runnerscale.fakegithub.faults import Faults
from runnerscale.fakegithub.ratelimit import RateLimits
from runnerscale.fakegithub.world import DEFAULT_GROUP_ID, ApiError, World, not_found
from runnerscale.github.poller import PER_PAGE, Poller, RunStatus
from runnerscale.github.schedule import PROBE_RUNS, ListedRepo, PollHints
from runnerscale.model import GitHubRunner, JobState, Target
from runnerscale.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
    PolledJobs,
    WaitedCall,
)

IDENTITY = "simulation"
R = TypeVar("R")

#: The REST operation (its ``operationId``, as the fake GitHub names it over HTTP) each of the
#: client's operations sends; ``{level}`` is the target's kind.
_OPERATION_IDS = {
    "generate-jitconfig": "actions/generate-runner-jitconfig-for-{level}",
    "delete-runner": "actions/delete-self-hosted-runner-from-{level}",
    "list-runners": "actions/list-self-hosted-runners-for-{level}",
    "list-org-repos": "repos/list-for-org",
    "list-workflow-runs": "actions/list-workflow-runs-for-repo",
    "list-jobs-for-run": "actions/list-jobs-for-workflow-run",
    "get-job": "actions/get-job-for-workflow-run",
    "rerun-job": "actions/re-run-job-for-workflow-run",
    "list-annotations": "checks/list-annotations",
    "registration-token": "actions/create-registration-token-for-{level}",
}
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


@dataclass
class _Answer:
    """What a read answered, to tell a re-read of the same content (a free 304)."""

    content: Hashable | None = None
    key: Hashable = None

    def page(self, key: tuple[Hashable, ...], items: Sequence[Hashable], page: int) -> None:
        """Page ``page`` of a list read: its items and the list's total count."""
        chunk = tuple(items[(page - 1) * PER_PAGE : page * PER_PAGE])
        self.content, self.key = (len(items), chunk), (*key, page)


def _listed(repo: Repo) -> ListedRepo:
    # GitHub gives pushed_at to the second, like a job's created_at.
    return ListedRepo(repo.full_name, float(math.floor(repo.pushed_at)))


class SimulatedGitHub:
    def __init__(self, world: World, faults: Faults, rate_limits: RateLimits) -> None:
        self.world = world
        #: The fake GitHub's own accounting (rate limits, the fault plan, counts by
        #: ``operationId``), on GitHub's (the world's) clock.
        self.ledger = Ledger(rate_limits, faults, lambda: self.world.now)
        #: All requests, and those GitHub charged (304s are free), by the client's operation
        #: names (as :class:`~runnerscale.github.budget.ApiBudget` counts them).
        self.requests: Counter[str] = Counter()
        self.charged: Counter[str] = Counter()
        self._last: dict[Hashable, Hashable] = {}
        #: The daemon's own poll, over this simulator's reads, on GitHub's (the world's) clock.
        self._poller = Poller(self, lambda: self.world.now)

    @property
    def faults(self) -> Faults:
        return self.ledger.faults

    @property
    def charged_by_resource(self) -> Counter[str]:
        """Requests GitHub charged, by rate-limit resource."""
        return self.ledger.stats.charged_by_resource

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

    @contextmanager
    def _request(
        self,
        operation: str,
        *,
        level: str | None = None,
        read: bool = True,
        repo: str | None = None,
    ) -> Iterator[_Answer]:
        """One request of the client's ``operation`` (the REST operation at ``level``: repo or
        org), through the fake GitHub's :class:`Ledger` in GitHub's order: admitted (limits,
        a write's charge, injected errors), answered by the world in the ``with`` body, then
        a read charged unless its content is the one already read (a free 304). Raises
        :class:`GitHubError` as the real client does. An operation the table does not name
        is its own ``operationId`` (the Actions service's: :meth:`actions_service`). ``repo``:
        the repository its path names (``owner/name``), whose faults apply to it."""
        operation_id = _OPERATION_IDS.get(operation, operation).format(level=level)
        self.requests[operation] += 1
        self.ledger.asked(operation_id)
        answer = _Answer()
        try:
            if self.ledger.admit(operation_id, IDENTITY, read=read, repo=repo) is not None:
                self.charged[operation] += 1
            yield answer
            if read:
                same = answer.content is not None and self._last.get(answer.key) == answer.content
                if self.ledger.answered(operation_id, IDENTITY, not_modified=same) is not None:
                    self.charged[operation] += 1
                if answer.content is not None:
                    self._last[answer.key] = answer.content
        except SecondaryLimitError as refused:
            raise GitHubError(
                f"{operation}: secondary rate limit",
                retry_after=float(refused.retry_after),
                status=refused.status,
            ) from None
        except PrimaryLimitError as refused:
            raise GitHubError(
                f"{operation}: rate limit exhausted ({refused.resource})",
                retry_after=refused.bucket.reset - self.world.now,
                status=refused.status,
            ) from None
        except RefusedError as refused:
            raise GitHubError(
                f"{operation}: GitHub answered {refused.status}", status=refused.status
            ) from None
        except ApiError as error:
            raise GitHubError(
                f"{operation}: GitHub answered {error.status}", status=error.status
            ) from None

    def _read_list(
        self,
        operation: str,
        key: tuple[Hashable, ...],
        read: Callable[[], tuple[Sequence[Hashable], R]],
        *,
        level: str | None = None,
        repo: str | None = None,
    ) -> R:
        """A whole list read as the client reads it: page by page (:data:`PER_PAGE` a page,
        each one a conditional request) until the total count GitHub gives with every page is
        reached. ``read`` looks the list up in the world (the snapshot whose pages are
        compared, and what the call returns)."""
        with self._request(operation, level=level, repo=repo) as answer:
            snapshot, result = read()
            answer.page(key, snapshot, 1)
        for page in range(2, -(-len(snapshot) // PER_PAGE) + 1):
            with self._request(operation, level=level, repo=repo) as answer:
                answer.page(key, snapshot, page)
        return result

    def _scope(self, target: Target) -> str:
        """The repository or organisation a target names (the world's 404 when unknown)."""
        if target.kind == "repo":
            return self.world.repo(*target.name.split("/", 1)).full_name
        return self.world.org(target.name).login

    @staticmethod
    def _repo_of(target: Target) -> str | None:
        """The repository a target's requests name in their path (a ``repo:`` target's)."""
        return target.name if target.kind == "repo" else None

    def _at(self, operation: str, target: Target) -> AbstractContextManager[_Answer]:
        """A write of ``operation`` about ``target``, at its level (repo or org)."""
        level, repo = self._level(target), self._repo_of(target)
        return self._request(operation, level=level, read=False, repo=repo)

    @staticmethod
    def _level(target: Target) -> str:
        if target.kind not in ("repo", "org"):
            raise GitHubError(f"{target.kind} targets are not supported in the simulation")
        return target.kind

    @contextmanager
    def actions_service(self, operation: str) -> Iterator[None]:
        """One request to the Actions service (``actions-service/<operation>``): counted and
        failed by the fault plan like any other, never charged to a REST budget."""
        with self._request(ACTIONS_SERVICE_PREFIX + operation, read=False):
            yield

    async def registration_token(self, target: Target) -> tuple[str, float]:
        """A registration token of the target (the first step of the scale sets' chain)."""
        with self._at("registration-token", target):
            token = self.world.create_token(self._scope(target), "registration")
        return token.token, token.expires_at

    # ------------------------------------------------------------------ GitHubAPI

    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig:
        with self._at("generate-jitconfig", target):
            body = {"name": name, "labels": list(labels), "runner_group_id": DEFAULT_GROUP_ID}
            org_level = target.kind == "org"
            runner, encoded = self.world.generate_jitconfig(
                self._scope(target), body, org_level=org_level
            )
        return JitConfig(runner_id=runner.id, encoded=encoded)

    def registration_wait(self, target: Target) -> float:
        """Always 0.0: this transport keeps no budget of its own (a spent registration budget
        is GitHub's refusal here, and fails the runner)."""
        return 0.0

    async def registration_ready(self, target: Target) -> None:
        """Nothing to wait for (:meth:`registration_wait`)."""

    def call_wait(self, operation: WaitedCall, target: Target) -> float:
        """Always 0.0: no budget kept here either (a spent one is GitHub's refusal, with its
        ``retry_after``)."""
        return 0.0

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome:
        with self._at("delete-runner", target):
            try:
                self.world.delete_runner(self._scope(target), runner_id)
            except ApiError as error:
                if error.status == 404:
                    return DeleteOutcome.GONE
                if error.status == 422:
                    return DeleteOutcome.BUSY
                raise
        return DeleteOutcome.DELETED

    async def list_runners(self, target: Target) -> list[GitHubRunner]:
        def read() -> tuple[list[GitHubRunner], list[GitHubRunner]]:
            runners = [
                GitHubRunner(r.id, r.name, r.connected, r.busy, tuple(r.label_names))
                for r in self.world.runners_in(self._scope(target))
            ]
            return runners, runners

        key = ("runners", target.kind, target.name.lower())
        level = self._level(target)
        return self._read_list("list-runners", key, read, level=level, repo=self._repo_of(target))

    async def active_jobs(self, target: Target) -> PolledJobs:
        return await self._poller.active_jobs(target)

    # ------------------------------------------------------------------ PollReader

    @property
    def sees_whole_org(self) -> bool:
        return True  # a token: the simulation has no App

    async def org_repos_page(self, org: str, page: int) -> list[ListedRepo]:
        """As GitHub answers it: most recently pushed first, a page of :data:`PER_PAGE`; a
        page's answer changes when a repository on it is pushed to."""
        with self._request("list-org-repos") as answer:
            owner = self.world.org(org)
            ordered = sorted(
                self.world.repos_of(owner),
                key=lambda repo: (repo.pushed_at, repo.id),
                reverse=True,
            )
            chunk = [_listed(repo) for repo in ordered[(page - 1) * PER_PAGE : page * PER_PAGE]]
            answer.content, answer.key = tuple(chunk), ("repos", owner.login, page)
        return chunk

    async def installation_repos(self, org: str) -> list[ListedRepo]:
        raise GitHubError("the simulation has no GitHub App installations")

    async def newest_runs(self, repo: str) -> list[tuple[int, str]]:
        with self._request("list-workflow-runs", repo=repo) as answer:
            found = self._repo(repo)
            runs = self.world.runs_of(found)[:PROBE_RUNS]
            answer.content = tuple((run.id, run.updated_at) for run in runs)
            answer.key = ("probe", found.id)
        return [(run.id, self.world.run_status(run)[0]) for run in runs]

    async def runs(self, repo: str, status: RunStatus) -> list[int]:
        def read() -> tuple[list[tuple[int, float]], list[int]]:
            runs = self.world.runs_of(self._repo(repo), status)
            return [(run.id, run.updated_at) for run in runs], [run.id for run in runs]

        key = ("runs", repo.lower(), status)
        return self._read_list("list-workflow-runs", key, read, repo=repo)

    async def jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        def read() -> tuple[list[tuple[int, JobStatus, int | None]], list[ObservedJob]]:
            run = self.world.runs.get(run_id)
            if run is None or run.repo.full_name.lower() != repo.lower():
                raise not_found()
            latest = [j for j in self.world.run_jobs(run) if j.run_attempt == run.run_attempt]
            snapshot = [(j.id, j.status, j.runner_id) for j in latest]
            return snapshot, [observed(job) for job in latest]

        return self._read_list("list-jobs-for-run", ("jobs", run_id), read, repo=repo)

    def _repo(self, name: str) -> Repo:
        owner, _, repo = name.partition("/")
        return self.world.repo(owner, repo)

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        try:
            with self._request("get-job", repo=repo) as answer:
                job = self.world.jobs.get(job_id)
                if job is None or job.repo.full_name.lower() != repo.lower():
                    raise not_found()
                found = observed(job)
                answer.content, answer.key = found, ("job", job_id)
        except GitHubError as error:
            if error.status == 404:
                return None
            raise
        return found

    async def rerun_job(self, repo: str, job_id: int) -> None:
        with self._request("rerun-job", read=False, repo=repo):
            self.world.rerun_job(self.world.job_in(self._repo(repo), job_id))

    async def job_annotations(self, repo: str, job_id: int) -> list[str]:
        try:
            # Not conditional (the production client reads annotations once, without an
            # ETag): every read is charged.
            with self._request("list-annotations", repo=repo):
                job = self.world.job_in(self._repo(repo), job_id)
                reasons = [job.failure_reason] if job.failure_reason is not None else []
        except GitHubError as error:
            if error.status == 404:
                return []
            raise
        return reasons

    async def close(self) -> None:
        """Nothing to release."""
