"""A repository's recent CI history as a trace (``runnerscale trace export``).

A team that wants to know what a proposed config would do for *its* workload replays its own
last week: this module reads the repository's workflow runs and their jobs through the REST API
(with the production client, githubkit) and turns every job that ran into a trace line:

* ``at``: when the job was queued (its ``created_at``), in seconds from the first job;
* ``duration``: how long it ran (``completed_at - started_at``);
* ``labels``: its ``runs-on`` labels; ``run_id`` and ``job`` (its name) as GitHub reports them.

Jobs still running, jobs that never ran (skipped, or cancelled while queued: no runner took
them) and jobs without labels are left out: they say nothing about runner demand we could
replay. Jobs of GitHub-hosted runners (``ubuntu-latest``) are kept; a config without such a
pool reports them as unserved.

It is gentle with the API: runs are listed with ``per_page=100`` and the ``created`` qualifier
(and filtered again here, since a server may ignore the qualifier), newest first, and listing
stops at the first short page or at a page older than ``since``; requests are made one at a
time, as GitHub asks of integrations. A rate-limit answer (403/429 with ``retry-after`` or
``x-ratelimit-remaining: 0``) is waited out — at most :data:`MAX_WAIT` seconds per wait, at most
:data:`MAX_RETRIES` times per request — before giving up with a message saying when to retry.
Build the client with ``auto_retry=False``, so that githubkit does not wait on its own as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from githubkit import GitHub
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.response import Response

from runnerscale.simulation.trace import TraceJob

PER_PAGE = 100
#: Longest single wait for a rate limit, in seconds.
MAX_WAIT = 60.0
#: How often one request is retried after a rate-limit answer.
MAX_RETRIES = 3

_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")
_RELATIVE = re.compile(r"^(\d+)([dhms])$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
SINCE_FORMS = (
    '"7d", "24h", "90m", "3600s" (that long ago), or an ISO date or time '
    '("2024-05-01", "2024-05-01T12:00:00Z")'
)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Progress = Callable[[int, int], None]


class ExportError(RuntimeError):
    """The export cannot go on; the message says which request failed and what to do."""


def parse_since(text: str, now: float | None = None) -> float:
    """The epoch time ``--since`` means: ``now`` minus a span ("7d", "24h", "90m",
    "3600s"), or an ISO date or time (UTC when it has no offset). ValueError otherwise."""
    value = text.strip()
    now = time.time() if now is None else now
    relative = _RELATIVE.match(value)
    if relative:
        return now - int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"--since {text!r} is not understood; use {SINCE_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = moment.timestamp()
    if epoch > now:
        raise ValueError(f"--since {text!r} is in the future; use a time in the past")
    return epoch


async def export_trace(
    client: GitHub[Any],
    repo: str,
    since_epoch: float,
    *,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[TraceJob]:
    """The jobs of ``repo``'s workflow runs created since ``since_epoch``, as a trace sorted
    by ``at``. ``progress(done_runs, total_runs)`` is called as runs are read."""
    if not _REPO.match(repo):
        raise ValueError(f"repository {repo!r} is not OWNER/NAME; write it like acme/app")
    owner, name = repo.split("/")
    caller = _Caller(sleep)
    # (created_at, run_id, job id, labels, duration, name)
    found: list[tuple[float, int, int, tuple[str, ...], float, str]] = []
    async with contextlib.AsyncExitStack() as stack:
        # One connection for every request (githubkit opens one per call otherwise), unless
        # the caller already holds the client open.
        with contextlib.suppress(RuntimeError):
            await stack.enter_async_context(client)
        run_ids = await _list_runs(client, caller, owner, name, since_epoch)
        total = len(run_ids)
        if progress is not None:
            progress(0, total)
        for done, run_id in enumerate(run_ids, start=1):
            for job in await _list_jobs(client, caller, owner, name, run_id):
                entry = _entry(job)
                if entry is not None:
                    found.append((entry[0], run_id, int(job.id), entry[1], entry[2], str(job.name)))
            if progress is not None:
                progress(done, total)
    if not found:
        return []
    t0 = min(entry[0] for entry in found)
    found.sort(key=lambda entry: (entry[0], entry[1], entry[2]))
    return [
        TraceJob(
            at=created - t0, repo=repo, labels=labels, duration=duration, run_id=run_id, job=job
        )
        for created, run_id, _, labels, duration, job in found
    ]


def _entry(job: Any) -> tuple[float, tuple[str, ...], float] | None:
    """``(created_at, labels, duration)`` of a job that ran to its end, else None."""
    if str(job.status) != "completed" or job.completed_at is None or job.started_at is None:
        return None
    if job.conclusion == "skipped" or not job.runner_name:
        return None  # no runner ever took it
    labels = tuple(str(label) for label in job.labels if str(label).strip())
    if not labels:
        return None
    created = job.created_at.timestamp()
    duration = max(0.0, job.completed_at.timestamp() - job.started_at.timestamp())
    return created, labels, duration


async def _list_runs(
    client: GitHub[Any], caller: _Caller, owner: str, name: str, since: float
) -> list[int]:
    """Ids of the runs created since ``since``, oldest first."""
    qualifier = ">=" + datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs: dict[int, float] = {}
    page = 1
    while True:
        response = await caller.call(
            f"list workflow runs of {owner}/{name} (page {page})",
            functools.partial(
                client.rest.actions.async_list_workflow_runs_for_repo,
                owner,
                name,
                created=qualifier,
                per_page=PER_PAGE,
                page=page,
            ),
        )
        batch = response.parsed_data.workflow_runs
        recent = 0
        for run in batch:
            created = run.created_at.timestamp()
            if created >= since:
                runs[int(run.id)] = created
                recent += 1
        # Runs come newest first: a page with nothing recent means the rest is older still.
        if len(batch) < PER_PAGE or recent == 0:
            break
        page += 1
    return sorted(runs, key=lambda run_id: (runs[run_id], run_id))


async def _list_jobs(
    client: GitHub[Any], caller: _Caller, owner: str, name: str, run_id: int
) -> list[Any]:
    """Every job of a run, every attempt's (a re-run job needed a runner too)."""
    jobs: list[Any] = []
    page = 1
    while True:
        response = await caller.call(
            f"list jobs of run {run_id} of {owner}/{name} (page {page})",
            functools.partial(
                client.rest.actions.async_list_jobs_for_workflow_run,
                owner,
                name,
                run_id,
                filter_="all",
                per_page=PER_PAGE,
                page=page,
            ),
        )
        batch = response.parsed_data.jobs
        jobs.extend(batch)
        if len(batch) < PER_PAGE:
            return jobs
        page += 1


@dataclass
class _Caller:
    """Makes one request, waiting out rate limits, and turns failures into ExportError."""

    sleep: Sleep
    #: Seconds spent waiting for rate limits, in all.
    waited: float = 0.0

    async def call(
        self, what: str, request: Callable[[], Awaitable[Response[T, Any]]]
    ) -> Response[T, Any]:
        retries = 0
        while True:
            try:
                return await request()
            except RequestFailed as error:
                wait = _rate_limit_wait(error)
                if wait is None:
                    raise ExportError(_failure_message(what, error)) from error
                if retries >= MAX_RETRIES:
                    raise ExportError(
                        f"{what}: still rate limited after {MAX_RETRIES} waits; GitHub asks "
                        f"to wait {wait:.0f} s more — run the export again later, or with a "
                        "shorter --since"
                    ) from error
                retries += 1
                wait = min(wait, MAX_WAIT)
                self.waited += wait
                await self.sleep(wait)
            except RequestTimeout as error:
                raise ExportError(
                    f"{what}: GitHub did not answer in time — check the network and run the "
                    "export again"
                ) from error
            except RequestError as error:
                cause = error.__cause__ or error.exc
                raise ExportError(
                    f"{what}: cannot reach GitHub ({type(cause).__name__}) — check the API URL "
                    "and the network"
                ) from error


def _rate_limit_wait(error: RequestFailed) -> float | None:
    """Seconds to wait when the answer is a rate limit, else None."""
    response = error.response
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    if "retry-after" in headers:
        try:
            return max(1.0, float(headers["retry-after"]))
        except ValueError:
            return MAX_WAIT
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(1.0, float(headers["x-ratelimit-reset"]) - time.time())
        except (KeyError, ValueError):
            return MAX_WAIT
    return None


_HINTS = {
    401: "the token is invalid or expired: give a valid token",
    403: "the token cannot read this repository's Actions: give it actions:read (or repo)",
    404: "check OWNER/NAME, and that the token can see the repository",
}


def _failure_message(what: str, error: RequestFailed) -> str:
    response = error.response
    status = response.status_code
    try:
        body = response.raw_response.json()
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        message = ""
    hint = _HINTS.get(status, "run the export again; if it keeps failing, check GitHub's status")
    detail = f" ({message})" if message else ""
    return f"{what}: GitHub answered {status}{detail} — {hint}"
