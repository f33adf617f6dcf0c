"""The production :class:`~runnerscale.scaleset_api.ScaleSetAPI`: one GitHub scope's scale sets.

It runs on the daemon's :class:`~runnerscale.github.client.GitHubClient`, which holds the
credentials (PAT or App) and hands out registration tokens; everything after that (the admin
connection, the scale sets, sessions, runners) is the Actions service's, reached through
:mod:`.service`. Its calls are counted apart from the REST calls, in the GitHub client's
budget (:attr:`~runnerscale.github.budget.Budgets.actions_service_calls`), so the metrics
show what a scale-set pool costs beside what polling costs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from runnerscale.clock import Clock
from runnerscale.github.scaleset.auth import AdminAuth
from runnerscale.github.scaleset.errors import (
    JobStillRunningError,
    RunnerNotFoundError,
    ScaleSetNotFoundError,
)
from runnerscale.github.scaleset.service import RUNNER_GROUPS, RUNNERS, SCALE_SETS, ActionsService
from runnerscale.github.scaleset.session import Session, create_session
from runnerscale.github.scaleset.transport import Transport
from runnerscale.github.scaleset.wire import (
    RunnerGroup,
    WireError,
    listed,
    parse_jit_config,
    parse_runner_group,
    parse_scale_set,
    scale_set_body,
    scale_set_labels,
)
from runnerscale.model import Target
from runnerscale.protocols import DeleteOutcome, GitHubError, JitConfig
from runnerscale.scaleset_api import ScaleSet, ScaleSetSpec

if TYPE_CHECKING:
    from runnerscale.github.client import GitHubClient

log = logging.getLogger("runnerscale.github.scaleset")

#: The runner's work folder, as the Go client's examples give it.
WORK_FOLDER = "_work"


def _same_labels(have: tuple[str, ...], want: tuple[str, ...]) -> bool:
    return {label.lower() for label in have} == {label.lower() for label in want}


class ScaleSetClient:
    """:class:`~runnerscale.scaleset_api.ScaleSetAPI` for one target, with the credentials of
    ``github``. ``http``: the HTTP client to use (one of its own, closed by :meth:`close`,
    when None)."""

    def __init__(
        self,
        github: GitHubClient,
        target: Target,
        *,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._target = target
        self._clock = clock
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(verify=github.tls_verify)
        transport = Transport(self._http, clock, github.budget.actions_service_calls)
        self._auth = AdminAuth(github, target, github.api_url, transport, clock)
        self._service = ActionsService(self._auth, transport, github.learn_secret)

    def __repr__(self) -> str:
        return f"ScaleSetClient(target={self._target.key!r})"

    async def ensure_scale_set(self, spec: ScaleSetSpec) -> ScaleSet:
        group = await self._runner_group(spec.runner_group)
        labels = scale_set_labels(spec.name, spec.labels)
        found = await self._find_scale_set(spec.name, group)
        if found is None:
            created = parse_scale_set(
                await self._service.call(
                    "create-scale-set",
                    "POST",
                    SCALE_SETS,
                    body=scale_set_body(spec.name, group, labels),
                )
            )
            log.info(
                "created scale set %s (id %d) in runner group %s of %s, labels %s",
                created.name,
                created.id,
                group.name,
                self._target.key,
                ", ".join(created.labels),
            )
            return created
        if _same_labels(found.labels, labels):
            return found
        updated = parse_scale_set(
            await self._service.call(
                "update-scale-set",
                "PATCH",
                f"{SCALE_SETS}/{found.id}",
                body=scale_set_body(spec.name, group, labels, found.id),
            )
        )
        log.info(
            "scale set %s (id %d): labels changed from %s to %s",
            updated.name,
            updated.id,
            ", ".join(found.labels),
            ", ".join(updated.labels),
        )
        if not _same_labels(updated.labels, labels):
            log.warning(
                "scale set %s: GitHub kept the labels %s, not %s: GitHub Enterprise Server "
                "drops extra labels unless it is 3.21 or newer, or 3.18 or newer with the "
                "feature flag DistributedTask.AllowRunnerScaleSetCustomLabels",
                updated.name,
                ", ".join(updated.labels),
                ", ".join(labels),
            )
        return updated

    async def _runner_group(self, name: str) -> RunnerGroup:
        answer = await self._service.call(
            "get-runner-group", "GET", RUNNER_GROUPS, params={"groupName": name}
        )
        groups = [parse_runner_group(item) for item in listed(answer, "runner groups")]
        if len(groups) == 1:
            return groups[0]
        if not groups:
            raise GitHubError(
                f"runner group {name!r} does not exist in {self._target.kind} "
                f"{self._target.name}: create it in GitHub's settings (Actions → Runner "
                "groups) or fix scale_set.runner_group in the config"
            )
        raise GitHubError(
            f"{len(groups)} runner groups are named {name!r} in {self._target.kind} "
            f"{self._target.name}: rename all but one in GitHub's settings"
        )

    async def _find_scale_set(self, name: str, group: RunnerGroup) -> ScaleSet | None:
        answer = await self._service.call(
            "find-scale-set",
            "GET",
            SCALE_SETS,
            params={"runnerGroupId": str(group.id), "name": name},
        )
        found = [parse_scale_set(item) for item in listed(answer, "scale sets")]
        if len(found) > 1:
            raise GitHubError(
                f"{len(found)} scale sets are named {name!r} in runner group {group.name} of "
                f"{self._target.kind} {self._target.name}: delete all but one in GitHub's "
                "settings (Actions → Runners)"
            )
        return found[0] if found else None

    async def open_session(self, scale_set: ScaleSet, owner: str) -> Session:
        info = await create_session(self._service, scale_set, owner, self._clock)
        log.info("scale set %s: message session opened as %s", scale_set.name, owner)
        return Session(self._service, scale_set, owner, info, self._clock)

    async def generate_jitconfig(self, scale_set: ScaleSet, name: str) -> JitConfig:
        answer = await self._service.call(
            "generate-jitconfig",
            "POST",
            f"{SCALE_SETS}/{scale_set.id}/generatejitconfig",
            body={"name": name, "workFolder": WORK_FOLDER},
        )
        return parse_jit_config(answer)

    async def remove_runner(self, runner_id: int) -> DeleteOutcome:
        try:
            await self._service.call(
                "remove-runner", "DELETE", f"{RUNNERS}/{runner_id}", expect=(200, 204)
            )
        except JobStillRunningError:
            return DeleteOutcome.BUSY
        except RunnerNotFoundError:
            return DeleteOutcome.GONE
        except GitHubError as error:
            if error.status == 404 and not isinstance(error, WireError):
                return DeleteOutcome.GONE
            raise
        return DeleteOutcome.DELETED

    async def delete_scale_set(self, scale_set_id: int) -> None:
        try:
            await self._service.call(
                "delete-scale-set", "DELETE", f"{SCALE_SETS}/{scale_set_id}", expect=(200, 204)
            )
        except ScaleSetNotFoundError:
            log.debug("scale set %d was gone already", scale_set_id)

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()
