"""The production GitHub client: the controller's :class:`GitHubAPI`, built on githubkit.

Three concerns live here and nowhere else:

* **Translation.** githubkit's models become runnerscale's (:class:`ObservedJob`,
  :class:`GitHubRunner`, :class:`JitConfig`); GitHub's answers become outcomes (a 404 on delete
  is "gone", a 422 is "busy").
* **Cost.** Polling re-reads the same lists every interval. Each read is a conditional request
  (``If-None-Match`` with the last ``ETag``); GitHub answers an unchanged list with a 304 that
  does not count against the rate limit, and the last parsed answer is reused.
* **The budget.** Every response's ``x-ratelimit-*`` headers update :class:`RateBudget`, which
  the metrics and the status API report.

Errors surface as :class:`GitHubError` carrying ``retry_after`` when GitHub said how long to
wait. No message ever carries a token or a JIT configuration.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx
from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.response import Response

from runnerscale.controller.protocols import (
    DeleteOutcome,
    GitHubError,
    JitConfig,
    ObservedJob,
)
from runnerscale.model import GitHubRunner, JobState, Target

PER_PAGE = 100
USER_AGENT = "runnerscale"
DEFAULT_GROUP_ID = 1
RunStatus = Literal["queued", "in_progress"]
#: Statuses of workflow runs whose jobs may need a runner or hold one.
ACTIVE_RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "in_progress")

T = TypeVar("T")


@dataclass
class Bucket:
    limit: int = 0
    remaining: int = 0
    used: int = 0
    reset: float = 0.0


@dataclass
class RateBudget:
    """What GitHub last said about each rate-limit resource, plus our own call counts."""

    resources: dict[str, Bucket] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    not_modified: int = 0

    def record(self, response: httpx.Response) -> None:
        headers = response.headers
        resource = headers.get("x-ratelimit-resource", "core")
        if "x-ratelimit-remaining" not in headers:
            return
        try:
            self.resources[resource] = Bucket(
                limit=int(headers.get("x-ratelimit-limit", 0)),
                remaining=int(headers["x-ratelimit-remaining"]),
                used=int(headers.get("x-ratelimit-used", 0)),
                reset=float(headers.get("x-ratelimit-reset", 0)),
            )
        except ValueError:
            return


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _job_state(status: str) -> JobState | None:
    try:
        return JobState(status)
    except ValueError:
        return None  # "pending", "requested": not a state runnerscale acts on


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    return owner, name


class GitHubClient:
    """:class:`~runnerscale.controller.protocols.GitHubAPI` over githubkit (PAT auth)."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
    ) -> None:
        self.budget = RateBudget()
        self._etags: dict[tuple[Any, ...], tuple[str, Any]] = {}
        self._groups: dict[tuple[str, str], int] = {}
        self._github = GitHub(
            token,
            base_url=api_url.rstrip("/") + "/",
            user_agent=USER_AGENT,
            timeout=timeout,
            http_cache=False,
            auto_retry=False,
            async_transport=transport,
            async_event_hooks={"response": [self._on_response]},
            ssl_verify=verify if isinstance(verify, bool) else _ssl_context(verify),
        )

    async def _on_response(self, response: httpx.Response) -> None:
        self.budget.record(response)

    # ------------------------------------------------------------------ calling GitHub

    async def _call(
        self, operation: str, call: Callable[[], Awaitable[Response[T, Any]]]
    ) -> Response[T, Any]:
        self.budget.calls[operation] += 1
        try:
            return await call()
        except RequestFailed as error:
            raise _failure(operation, error.response.raw_response) from None
        except RequestTimeout:
            raise GitHubError(f"{operation}: GitHub did not answer in time") from None
        except RequestError as error:
            cause = error.__cause__ or error
            raise GitHubError(
                f"{operation}: cannot reach GitHub ({type(cause).__name__})"
            ) from None

    async def _conditional(
        self,
        key: tuple[Any, ...],
        operation: str,
        call: Callable[[dict[str, str]], Awaitable[Response[Any, Any]]],
        parse: Callable[[Response[Any, Any]], T],
    ) -> T:
        """A GET that costs nothing when the answer did not change (304 with the last ETag)."""
        cached = self._etags.get(key)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response = await self._call(operation, lambda: call(headers))
        if response.status_code == 304 and cached is not None:
            self.budget.not_modified += 1
            result: T = cached[1]
            return result
        parsed = parse(response)
        etag = response.headers.get("etag")
        if etag:
            self._etags[key] = (etag, parsed)
        return parsed

    async def _all_pages(
        self,
        key: tuple[Any, ...],
        operation: str,
        fetch: Callable[[int, dict[str, str]], Awaitable[Response[Any, Any]]],
        parse: Callable[[Response[Any, Any]], tuple[int | None, list[T]]],
    ) -> list[T]:
        """Every page of a list, each read conditionally. ``parse`` gives the total count when
        the answer has one; without it, a full page means there may be another."""
        items: list[T] = []
        page = 1
        while True:
            total, batch = await self._conditional(
                (*key, page), operation, functools.partial(fetch, page), parse
            )
            items.extend(batch)
            more = len(batch) == PER_PAGE if total is None else len(items) < total
            if not batch or not more:
                return items
            page += 1

    # ------------------------------------------------------------------ runners

    async def _group_id(self, target: Target) -> int:
        if target.kind != "org" or not target.runner_group:
            return DEFAULT_GROUP_ID
        key = (target.name.lower(), target.runner_group.lower())
        if key in self._groups:
            return self._groups[key]
        response = await self._call(
            "list-runner-groups",
            lambda: self._github.rest.actions.async_list_self_hosted_runner_groups_for_org(
                target.name, per_page=PER_PAGE
            ),
        )
        for group in response.parsed_data.runner_groups:
            if group.name.lower() == target.runner_group.lower():
                self._groups[key] = int(group.id)
                return int(group.id)
        raise GitHubError(
            f"runner group {target.runner_group!r} does not exist in organization "
            f"{target.name}; create it or fix runner_group in the config"
        )

    async def generate_jitconfig(
        self, target: Target, name: str, labels: Sequence[str]
    ) -> JitConfig:
        actions = self._github.rest.actions
        group_id = await self._group_id(target)
        if target.kind == "repo":
            owner, repo = _split(target.name)
            response = await self._call(
                "generate-jitconfig",
                lambda: actions.async_generate_runner_jitconfig_for_repo(
                    owner, repo, name=name, runner_group_id=group_id, labels=list(labels)
                ),
            )
        elif target.kind == "org":
            response = await self._call(
                "generate-jitconfig",
                lambda: actions.async_generate_runner_jitconfig_for_org(
                    target.name, name=name, runner_group_id=group_id, labels=list(labels)
                ),
            )
        else:
            raise _unsupported(target)
        data = response.parsed_data
        return JitConfig(runner_id=int(data.runner.id), encoded=data.encoded_jit_config)

    async def delete_runner(self, target: Target, runner_id: int) -> DeleteOutcome:
        actions = self._github.rest.actions
        try:
            if target.kind == "repo":
                owner, repo = _split(target.name)
                await self._call(
                    "delete-runner",
                    lambda: actions.async_delete_self_hosted_runner_from_repo(
                        owner, repo, runner_id
                    ),
                )
            elif target.kind == "org":
                await self._call(
                    "delete-runner",
                    lambda: actions.async_delete_self_hosted_runner_from_org(
                        target.name, runner_id
                    ),
                )
            else:
                raise _unsupported(target)
        except _StatusError as error:
            if error.status == 404:
                return DeleteOutcome.GONE
            if error.status == 422:
                return DeleteOutcome.BUSY
            raise
        return DeleteOutcome.DELETED

    async def list_runners(self, target: Target) -> list[GitHubRunner]:
        actions = self._github.rest.actions
        fetch: Callable[[int, dict[str, str]], Awaitable[Response[Any, Any]]]
        if target.kind == "repo":
            owner, repo = _split(target.name)

            def fetch(page: int, headers: dict[str, str]) -> Awaitable[Response[Any, Any]]:
                return actions.async_list_self_hosted_runners_for_repo(
                    owner, repo, per_page=PER_PAGE, page=page, headers=headers
                )

        elif target.kind == "org":

            def fetch(page: int, headers: dict[str, str]) -> Awaitable[Response[Any, Any]]:
                return actions.async_list_self_hosted_runners_for_org(
                    target.name, per_page=PER_PAGE, page=page, headers=headers
                )

        else:
            raise _unsupported(target)
        return await self._all_pages(("runners", target.key), "list-runners", fetch, _parse_runners)

    # ------------------------------------------------------------------ jobs

    async def _repos_of(self, target: Target) -> list[str]:
        if target.kind == "repo":
            return [target.name]
        if target.kind != "org":
            raise _unsupported(target)
        return await self._all_pages(
            ("org-repos", target.name.lower()),
            "list-org-repos",
            lambda page, headers: self._github.rest.repos.async_list_for_org(
                target.name, per_page=PER_PAGE, page=page, headers=headers
            ),
            lambda response: (None, [repo.full_name for repo in response.parsed_data]),
        )

    async def active_jobs(self, target: Target) -> list[ObservedJob]:
        jobs: list[ObservedJob] = []
        for repo in await self._repos_of(target):
            run_ids: list[int] = []
            for status in ACTIVE_RUN_STATUSES:
                run_ids.extend(await self._active_runs(repo, status))
            for run_id in dict.fromkeys(run_ids):
                jobs.extend(await self._jobs_of_run(repo, run_id))
        return jobs

    async def _active_runs(self, repo: str, status: RunStatus) -> list[int]:
        owner, name = _split(repo)
        return await self._all_pages(
            ("runs", repo.lower(), status),
            "list-workflow-runs",
            lambda page, headers: self._github.rest.actions.async_list_workflow_runs_for_repo(
                owner, name, status=status, per_page=PER_PAGE, page=page, headers=headers
            ),
            lambda response: (
                response.parsed_data.total_count,
                [run.id for run in response.parsed_data.workflow_runs],
            ),
        )

    async def _jobs_of_run(self, repo: str, run_id: int) -> list[ObservedJob]:
        owner, name = _split(repo)
        jobs = await self._all_pages(
            ("jobs", repo.lower(), run_id),
            "list-jobs-for-run",
            lambda page, headers: self._github.rest.actions.async_list_jobs_for_workflow_run(
                owner, name, run_id, filter_="latest", per_page=PER_PAGE, page=page, headers=headers
            ),
            lambda response: (
                response.parsed_data.total_count,
                [_observed(repo, job) for job in response.parsed_data.jobs],
            ),
        )
        return [job for job in jobs if job is not None]

    async def get_job(self, repo: str, job_id: int) -> ObservedJob | None:
        owner, name = _split(repo)
        try:
            response = await self._call(
                "get-job",
                lambda: self._github.rest.actions.async_get_job_for_workflow_run(
                    owner, name, job_id
                ),
            )
        except _StatusError as error:
            if error.status == 404:
                return None
            raise
        return _observed(repo, response.parsed_data)

    async def close(self) -> None:
        """githubkit opens a client per call; nothing is held between calls."""


# ---------------------------------------------------------------------- helpers


class _StatusError(GitHubError):
    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


def _failure(operation: str, response: httpx.Response) -> _StatusError:
    status = response.status_code
    headers = response.headers
    retry_after: float | None = None
    if "retry-after" in headers:
        try:
            retry_after = float(headers["retry-after"])
        except ValueError:
            retry_after = None
    elif status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
        try:
            retry_after = max(1.0, float(headers["x-ratelimit-reset"]) - time.time())
        except (KeyError, ValueError):
            retry_after = 60.0
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = ""
    path = response.request.url.path if response.request is not None else ""
    hint = _HINTS.get(status, "")
    text = f"{operation} {path}: GitHub answered {status} {message}".strip()
    return _StatusError(f"{text}{hint}", status, retry_after)


#: What an operator can do about the answers that mean "the configuration is wrong".
_HINTS = {
    401: " (the token is invalid or expired: check github.token)",
    403: " (the token lacks a permission, or a rate limit was hit: see the message)",
    404: (
        " (check that the repository or organization in targets exists and that the token "
        "can see it)"
    ),
}


def _parse_runners(response: Response[Any, Any]) -> tuple[int, list[GitHubRunner]]:
    data = response.parsed_data
    return data.total_count, [
        GitHubRunner(
            id=int(runner.id),
            name=runner.name,
            online=runner.status == "online",
            busy=bool(runner.busy),
            labels=tuple(label.name for label in runner.labels),
        )
        for runner in data.runners
    ]


def _observed(repo: str, job: Any) -> ObservedJob | None:
    state = _job_state(str(job.status))
    if state is None:
        return None
    created = _epoch(job.created_at) or _epoch(job.started_at) or 0.0
    return ObservedJob(
        id=int(job.id),
        repo=repo,
        labels=tuple(job.labels),
        state=state,
        created_at=created,
        run_id=int(job.run_id),
        name=job.name,
        started_at=_epoch(job.started_at) if state is not JobState.QUEUED else None,
        completed_at=_epoch(job.completed_at),
        runner_name=job.runner_name or None,
        conclusion=job.conclusion,
    )


def _unsupported(target: Target) -> GitHubError:
    return GitHubError(
        f"{target.kind} targets are not supported yet ({target.name}); use repo or org targets"
    )


def _ssl_context(ca_bundle: str) -> Any:
    import ssl  # noqa: PLC0415 - only when a custom CA is configured

    return ssl.create_default_context(cafile=ca_bundle)
