"""The deliveries the simulated GitHub sends (``workflow_job`` and ``ping``): bodies and headers.

An autoscaler is only as good as its reading of these deliveries, and the simulator is only a
fair test of it if what it sends is what GitHub sends. So the bodies built here follow the
published octokit ``workflow_job`` schemas to the letter (every required key, the right
nullability per action, GitHub's URL patterns, the large ``repository`` object) and the test
suite validates them against the bundled schema. The headers follow GitHub's documented
delivery headers, signed with the same :func:`runnerscale.github.webhooks.sign` the production
side verifies against.

The objects are the REST shapes of :mod:`runnerscale.fakegithub.shapes`, trimmed or extended where
the webhook schemas differ, so the same account, repository or job has the same ids and URLs
in a delivery as in an API answer. Each body is a snapshot *as of the transition named by*
``action``, not of the job's current state: a delivery built late (after the job moved on)
still says what GitHub would have said at that moment.

A job that waits on an environment is a deployment on GitHub, so its deliveries carry the
``deployment`` object the published example (``queued.with-deployment``) shows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any, Final, Literal
from urllib.parse import urlencode

from githubkit.webhooks import sign as githubkit_sign

from runnerscale.clock import iso8601
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.entities import Job, JobStatus, Owner, OwnerType, Repo
from runnerscale.github.webhooks import (
    HEADER_DELIVERY,
    HEADER_EVENT,
    HEADER_HOOK_ID,
    HEADER_SIGNATURE_256,
    HEADER_SIGNATURE_SHA1,
    HEADER_TARGET_ID,
    HEADER_TARGET_TYPE,
    sign,
)

__all__ = [
    "GITHUB_ZEN",
    "HOOKSHOT_VERSION",
    "WORKFLOW_JOB_ACTIONS",
    "ContentType",
    "deployment_object",
    "encode_body",
    "legacy_node_id",
    "organization_object",
    "ping_payload",
    "repository_object",
    "user_object",
    "webhook_delivery_headers",
    "workflow_job_payload",
]

#: How a hook wants its bodies: ``json`` (``application/json``) or ``form``
#: (``application/x-www-form-urlencoded`` with the JSON in a ``payload`` field).
ContentType = Literal["json", "form"]

_MEDIA_TYPES: Final[dict[str, str]] = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
}

#: The actions GitHub sends for ``workflow_job``, in the order a job normally goes through.
WORKFLOW_JOB_ACTIONS: Final = ("waiting", "queued", "in_progress", "completed")

#: The short hex GitHub puts after ``GitHub-Hookshot/`` (a build id; any stable value will do).
HOOKSHOT_VERSION: Final = "5e2b1f0"

#: The sayings a ``ping`` carries in ``zen`` (GitHub's own, as ``GET /zen`` answers them).
GITHUB_ZEN: Final = (
    "Design for failure.",
    "Keep it logically awesome.",
    "Speak like a human.",
    "Approachable is better than simple.",
    "Mind your words, they are important.",
    "Non-blocking is better than blocking.",
    "Favor focus over features.",
    "Avoid administrative distraction.",
    "Anything added dilutes everything else.",
    "Practicality beats purity.",
    "Responsive is better than fast.",
    "It's not fully shipped until it's fast.",
    "Encourage flow.",
    "Half measures are as bad as nothing at all.",
)

#: The GitHub Actions App, which performs every deployment a workflow job makes (ids and
#: dates as in the published ``queued.with-deployment`` example).
_ACTIONS_APP: Final[dict[str, Any]] = {
    "id": 15368,
    "slug": "github-actions",
    "node_id": "MDM6QXBwMTUzNjg=",
    "name": "GitHub Actions",
    "description": "Automate your workflow from idea to production",
    "external_url": "https://help.github.com/en/actions",
    "created_at": "2018-07-30T09:30:17Z",
    "updated_at": "2019-12-10T19:04:12Z",
    "permissions": {
        "actions": "write",
        "checks": "write",
        "contents": "write",
        "deployments": "write",
        "metadata": "read",
        "statuses": "write",
    },
    "events": ["deployment", "deployment_status", "workflow_job", "workflow_run"],
}
_ACTIONS_OWNER: Final = Owner(
    login="github", id=9919, type=OwnerType.ORGANIZATION, created_at=1_202_256_000.0
)
#: Deployments get ids of their own range (one per job that waits on an environment).
DEPLOYMENT_ID_BASE: Final = 800_000_000


def legacy_node_id(type_name: str, id_: int) -> str:
    """A node id in GitHub's legacy format: base64 of ``0<len(type)>:<type><id>``.

    GitHub still sends this form for installations (``MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u…``
    is ``023:IntegrationInstallation…``) while newer objects use the ``X_kwDO…`` form that
    :mod:`runnerscale.fakegithub.shapes` renders.
    """
    return base64.b64encode(f"0{len(type_name)}:{type_name}{id_}".encode()).decode("ascii")


def user_object(owner: Owner, urls: shapes.Urls) -> dict[str, Any]:
    """The octokit ``common/user`` object: the REST ``simple-user`` without the keys that
    schema does not know (it allows no others)."""
    user = shapes.simple_user(owner, urls)
    user.pop("user_view_type", None)
    return user


def organization_object(owner: Owner, urls: shapes.Urls) -> dict[str, Any]:
    """The octokit ``common/organization`` object (sent when the repository's owner is one)."""
    user = shapes.simple_user(owner, urls)
    base = f"{urls.api}/orgs/{owner.login}"
    return {
        "login": owner.login,
        "id": owner.id,
        "node_id": user["node_id"],
        "url": base,
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events",
        "hooks_url": f"{base}/hooks",
        "issues_url": f"{base}/issues",
        "members_url": f"{base}/members{{/member}}",
        "public_members_url": f"{base}/public_members{{/member}}",
        "avatar_url": user["avatar_url"],
        "description": "",
    }


def repository_object(
    repo: Repo, urls: shapes.Urls, *, pushed_at: float | None = None
) -> dict[str, Any]:
    """The octokit ``common/repository`` object, built on the REST repository shape.

    The simulator keeps no pushes; the payload's ``pushed_at``/``updated_at`` are the
    triggering run's time when ``pushed_at`` is given (never before the repository's creation).
    """
    body = shapes.minimal_repository(repo, urls)
    body["owner"] = user_object(repo.owner, urls)
    # Required by the webhook schema (organisation custom properties; none in the simulator).
    body["custom_properties"] = {}
    if pushed_at is not None:
        # The schema also allows an integer here (push events send epoch seconds); every
        # other event, workflow_job included, sends the string form.
        pushed = iso8601(max(repo.created_at, pushed_at))
        body["pushed_at"] = body["updated_at"] = pushed
    return body


def deployment_object(job: Job, urls: shapes.Urls, creator: Owner) -> dict[str, Any]:
    """The octokit ``common/deployment`` object of a job that waits on its environment.

    GitHub makes one deployment per such job, for the run's commit and branch, performed by
    the GitHub Actions App; the simulator derives its id from the job's, so every delivery of
    the job names the same deployment.
    """
    if job.environment is None:
        msg = f"job {job.id} waits on no environment, so it has no deployment"
        raise ValueError(msg)
    repo_url = f"{urls.api}/repos/{job.repo.full_name}"
    deployment_id = DEPLOYMENT_ID_BASE + job.id
    url = f"{repo_url}/deployments/{deployment_id}"
    created = iso8601(job.created_at)
    app = dict(_ACTIONS_APP)
    app["owner"] = user_object(_ACTIONS_OWNER, urls)
    app["html_url"] = f"{urls.web}/apps/{app['slug']}"
    return {
        "url": url,
        "id": deployment_id,
        "node_id": legacy_node_id("Deployment", deployment_id),
        "task": "deploy",
        "original_environment": job.environment,
        "environment": job.environment,
        "description": None,
        "created_at": created,
        "updated_at": created,
        "statuses_url": f"{url}/statuses",
        "repository_url": repo_url,
        "creator": user_object(creator, urls),
        "sha": job.run.head_sha,
        "ref": job.run.head_branch,
        "payload": {},
        "transient_environment": False,
        "production_environment": False,
        "performed_via_github_app": app,
    }


def _snapshot(action: str, job: Job) -> Job:
    """The job as it was when ``action`` happened: runner fields only once a runner has it,
    a conclusion and completion time only once it has ended."""
    status = JobStatus(action)
    if status in (JobStatus.QUEUED, JobStatus.WAITING):
        return replace(
            job,
            status=status,
            conclusion=None,
            started_at=None,
            completed_at=None,
            runner_id=None,
            runner_name=None,
            runner_group_id=None,
            runner_group_name=None,
        )
    if status is JobStatus.IN_PROGRESS:
        return replace(job, status=status, conclusion=None, completed_at=None)
    if job.conclusion is None:
        msg = f"job {job.id}: a 'completed' delivery needs the job's conclusion"
        raise ValueError(msg)
    return replace(job, status=status)


def workflow_job_payload(
    action: str,
    job: Job,
    *,
    web_url: str,
    api_url: str,
    installation_id: int | None,
    sender: Owner | None = None,
) -> dict[str, Any]:
    """The ``workflow_job`` event body for ``job``'s transition named by ``action``.

    ``workflow_job.status`` is the action's status; runner fields are null until
    ``in_progress``; ``conclusion`` is set only on ``completed`` (a ValueError if the job has
    none). ``organization`` appears for organisation-owned repositories, ``installation`` when
    ``installation_id`` is given (only the App's webhook gets it), ``deployment`` when the
    job waits on an environment, and ``sender`` defaults to the repository's owner.
    """
    if action not in WORKFLOW_JOB_ACTIONS:
        msg = f"unknown workflow_job action {action!r}; expected one of {WORKFLOW_JOB_ACTIONS}"
        raise ValueError(msg)
    urls = shapes.Urls(api=api_url.rstrip("/"), web=web_url.rstrip("/"))
    repo = job.repo
    payload: dict[str, Any] = {
        "action": action,
        # The webhook's workflow_job has exactly the REST job's keys.
        "workflow_job": shapes.job(_snapshot(action, job), urls),
        "repository": repository_object(repo, urls, pushed_at=job.run.created_at),
    }
    if repo.owner.type is OwnerType.ORGANIZATION:
        payload["organization"] = organization_object(repo.owner, urls)
    payload["sender"] = user_object(sender or repo.owner, urls)
    if job.environment is not None:
        payload["deployment"] = deployment_object(job, urls, sender or repo.owner)
    if installation_id is not None:
        payload["installation"] = {
            "id": installation_id,
            "node_id": legacy_node_id("IntegrationInstallation", installation_id),
        }
    return payload


def ping_payload(
    hook: dict[str, Any],
    *,
    zen: str,
    urls: shapes.Urls,
    repo: Repo | None = None,
    organization: Owner | None = None,
) -> dict[str, Any]:
    """The ``ping`` event body GitHub sends to a new hook and on ``POST .../pings``.

    ``hook`` is the hook as the REST API renders it; the body names the resource the hook
    belongs to (``repository``, with ``organization`` when an organisation owns it, or just
    the ``organization`` of an organisation hook) and a ``sender`` (the resource's owner stands
    in for the user who asked: the simulator does not track who did what).
    """
    payload: dict[str, Any] = {"zen": zen, "hook_id": hook["id"], "hook": hook}
    owner = repo.owner if repo is not None else organization
    if owner is None:
        msg = "a ping names the repository or the organisation its hook belongs to"
        raise ValueError(msg)
    if repo is not None:
        payload["repository"] = repository_object(repo, urls)
    if owner.type is OwnerType.ORGANIZATION:
        payload["organization"] = organization_object(owner, urls)
    payload["sender"] = user_object(owner, urls)
    return payload


def encode_body(payload: dict[str, Any], content_type: ContentType) -> bytes:
    """The bytes of a delivery: compact JSON, or for ``form`` hooks GitHub's
    ``payload=<url-encoded JSON>``; the signature covers these exact bytes."""
    text = json.dumps(payload, separators=(",", ":"))
    if content_type == "form":
        return urlencode({"payload": text}).encode()
    return text.encode()


def webhook_delivery_headers(
    *,
    event: str,
    delivery_id: str,
    hook_id: int,
    body: bytes,
    secret: str | None,
    target_type: str,
    target_id: int,
    content_type: ContentType = "json",
) -> dict[str, str]:
    """The headers GitHub sends with a delivery of ``body``, named as GitHub's docs name them.

    The two signature headers appear only when the hook has a secret (an empty secret counts
    as none, as on GitHub). ``Content-Length`` is left to the HTTP client.
    ``target_type`` and ``target_id`` name the resource the hook was created on:
    ``"integration"`` and the App's id for the App's webhook, ``"organization"`` and the
    organisation's id, or ``"repository"`` and the repository's id.
    """
    headers = {
        HEADER_DELIVERY: delivery_id,
        HEADER_EVENT: event,
        HEADER_HOOK_ID: str(hook_id),
        HEADER_TARGET_ID: str(target_id),
        HEADER_TARGET_TYPE: target_type,
        "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
        "Content-Type": _MEDIA_TYPES[content_type],
    }
    if secret:
        headers[HEADER_SIGNATURE_SHA1] = githubkit_sign(secret, body, "sha1")
        headers[HEADER_SIGNATURE_256] = sign(secret, body)
    return headers
