"""Which queued job goes to which idle runner, without scanning either list per event.

GitHub's rule (:mod:`runnerscale.fakegithub.world`): oldest queued job first, each to the
lowest-id online idle runner whose scope covers the job's repository and whose labels contain
the job's. Scanning every idle runner for every queued job on every event made a 10,000-job
burst quadratic, so jobs and runners are kept here grouped by what decides a match: queued jobs
by (repository, label set), each group a heap by age; available runners by (scope, label set),
each group a heap by id. A dispatch then pairs groups (a handful) instead of entities.

Entries are removed lazily: the world offers a job or runner when it may have become
routable, and an entry found no longer routable when it comes up is dropped, so a change
the world makes elsewhere (a job completed, a runner gone offline) needs no call here. Jobs
and runners of runner scale sets are not routed here: the world asks its extensions for them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from runnerscale.fakegithub.entities import ENTERPRISE_SCOPE_PREFIX, Job, JobStatus, Repo, Runner


def label_key(labels: list[str]) -> frozenset[str]:
    """Labels compare case-insensitively."""
    return frozenset(label.lower() for label in labels)


def scope_covers(scope: str, repo: Repo) -> bool:
    """Whether runners registered at ``scope`` serve ``repo``: a repository scope its own
    repository, an organisation its repositories, an enterprise its organisations'."""
    if "/" in scope:
        return scope.lower() == repo.full_name.lower()
    if scope.startswith(ENTERPRISE_SCOPE_PREFIX):
        enterprise = repo.owner.enterprise
        return enterprise is not None and scope.lower() == enterprise.scope.lower()
    return scope.lower() == repo.owner.login.lower()


def available(runner: Runner) -> bool:
    """Whether an ordinary runner can take a job now (its scope and labels aside)."""
    return (
        not runner.busy
        and runner.connected
        and not (runner.ephemeral and runner.used)
        and runner.scale_set_id is None
    )


@dataclass(frozen=True)
class _JobGroup:
    repo: str
    labels: frozenset[str]


@dataclass(frozen=True)
class _RunnerGroup:
    scope: str
    labels: frozenset[str]


class Routing:
    """Queued jobs and available runners by what decides a match; see the module docstring."""

    def __init__(self) -> None:
        self._jobs: dict[_JobGroup, list[tuple[float, int, Job]]] = {}
        self._repos: dict[_JobGroup, Repo] = {}
        self._queued: set[int] = set()
        self._runners: dict[_RunnerGroup, list[tuple[int, Runner]]] = {}
        #: Runner ids in each group's heap that are live entries (the rest are stale).
        self._members: dict[_RunnerGroup, set[int]] = {}

    def offer_job(self, job: Job) -> None:
        """Note a job that may have become queued (created, approved)."""
        if job.status is not JobStatus.QUEUED or job.id in self._queued:
            return
        group = _JobGroup(job.repo.full_name.lower(), label_key(job.labels))
        self._repos.setdefault(group, job.repo)
        heapq.heappush(self._jobs.setdefault(group, []), (job.created_at, job.id, job))
        self._queued.add(job.id)

    def offer_runner(self, runner: Runner) -> None:
        """Note a runner that may have become available (connected, released, relabelled)."""
        if not available(runner):
            return
        group = _RunnerGroup(runner.scope, label_key(runner.label_names))
        members = self._members.setdefault(group, set())
        if runner.id not in members:
            members.add(runner.id)
            heapq.heappush(self._runners.setdefault(group, []), (runner.id, runner))

    def forget_runner(self, runner: Runner) -> None:
        """A removed runner: its heap entries become stale."""
        for members in self._members.values():
            members.discard(runner.id)

    def pairs(self) -> Iterator[tuple[Job, Runner]]:
        """The assignments GitHub makes now, oldest job first; each is taken out of the
        index before it is yielded, and the caller assigns it before asking for the next."""
        runner_groups = [group for group, members in self._members.items() if members]
        if not runner_groups:
            return
        candidates: dict[_JobGroup, list[_RunnerGroup]] = {}
        for group, heap in self._jobs.items():
            if not heap:
                continue
            repo = self._repos[group]
            fitting = [
                r for r in runner_groups if group.labels <= r.labels and scope_covers(r.scope, repo)
            ]
            if fitting:
                candidates[group] = fitting
        while candidates:
            oldest: tuple[float, int, Job] | None = None
            chosen: _JobGroup | None = None
            for group in list(candidates):
                head = self._head_job(group)
                if head is None:
                    del candidates[group]
                elif oldest is None or head[:2] < oldest[:2]:
                    oldest, chosen = head, group
            if oldest is None or chosen is None:
                return
            runner = self._lowest_runner(candidates[chosen])
            if runner is None:
                del candidates[chosen]  # the group's later jobs fit the same runners: none
                continue
            heapq.heappop(self._jobs[chosen])
            self._queued.discard(oldest[2].id)
            yield oldest[2], runner

    def _head_job(self, group: _JobGroup) -> tuple[float, int, Job] | None:
        heap = self._jobs[group]
        while heap:
            job = heap[0][2]
            if job.status is JobStatus.QUEUED and job.scale_set_id is None:
                return heap[0]
            heapq.heappop(heap)
            self._queued.discard(job.id)
        return None

    def _lowest_runner(self, groups: list[_RunnerGroup]) -> Runner | None:
        """The lowest-id available runner of ``groups``, taken out of its group."""
        best: _RunnerGroup | None = None
        for group in groups:
            heap, members = self._runners[group], self._members[group]
            while heap and (heap[0][0] not in members or not available(heap[0][1])):
                members.discard(heapq.heappop(heap)[0])
            if heap and (best is None or heap[0][0] < self._runners[best][0][0]):
                best = group
        if best is None:
            return None
        runner_id, runner = heapq.heappop(self._runners[best])
        self._members[best].discard(runner_id)
        return runner
