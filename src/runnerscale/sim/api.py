"""The simulated GitHub over HTTP: REST API, control API (``/_sim``) and runner protocol.

Every REST operation goes through one pipeline, in GitHub's order: injected latency, the
REST API version asked for (400 for one GitHub does not serve), authentication (401 with
GitHub's body), the caller's right to the resource (a classic token's scopes included), the
secondary and primary rate limits (403/429, ``retry-after``; each operation is charged to its
resource, ``core`` or ``actions_runner_registration``), injected server errors, the operation
itself, and finally ``ETag`` / ``If-None-Match`` (a 304 is free). Every answer, errors and 304s
included, carries a unique ``x-github-request-id``, the ``x-ratelimit-*`` headers and, once
known, ``x-github-api-version-selected`` and a classic token's ``x-oauth-scopes`` /
``x-accepted-oauth-scopes``. Operations are named by their OpenAPI ``operationId``, which is
also how ``GET /_sim/stats`` counts them.

The control API and the runner protocol are the simulator's own; ``docs/simulator.md``
documents both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.clock import Clock, iso8601
from runnerscale.sim import shapes
from runnerscale.sim.auth import ANONYMOUS, Authenticator, Caller, CallerKind
from runnerscale.sim.entities import Conclusion, Enterprise, Job, OwnerType, Repo, Runner
from runnerscale.sim.faults import FaultPlan, Faults
from runnerscale.sim.ratelimit import CORE, RESOURCE_LIMITS, RateLimits, resource_for
from runnerscale.sim.scopes import check_scopes, scope_headers
from runnerscale.sim.webhooks import WebhookHub
from runnerscale.sim.world import ApiError, JobSpec, World, not_found

JSON = dict[str, Any]
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_LONG_POLL = 50.0
DOCS = "https://docs.github.com/rest"

#: Which credentials an operation accepts: ``token`` a PAT or an installation token (of the
#: path's owner), ``pat`` a PAT only (GitHub's enterprise runner endpoints "do not work with
#: GitHub App user access tokens, GitHub App installation access tokens"), ``app`` the App's
#: JWT, ``installation`` an installation token only, ``any`` anyone, even anonymous.
AuthMode = Literal["token", "pat", "app", "installation", "any"]

#: The path prefix the request being served came in on: ``""`` at the root, ``"/api/v3"`` in
#: GitHub Enterprise Server's layout (set by :func:`runnerscale.sim.app.create_app`). A GHES
#: client follows the URLs in bodies, so they carry the same prefix (``https://HOST/api/v3/...``).
API_PREFIX: ContextVar[str] = ContextVar("runnerscale_sim_api_prefix", default="")


@dataclass
class Reply:
    """What an operation produced before the pipeline adds headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def public(self) -> JSON:
        return {
            "total": sum(self.requests.values()),
            "not_modified": sum(self.not_modified.values()),
            "operations": {
                op: {
                    "requests": count,
                    "not_modified": self.not_modified[op],
                    "statuses": {str(k): v for k, v in sorted(self.statuses[op].items())},
                }
                for op, count in sorted(self.requests.items())
            },
        }


class RequestIds:
    """``x-github-request-id`` values shaped like GitHub's (``D2FD:22199:1F504A9:7C8CEDD:
    69D56221``): five hex fields, the last a counter so no two answers share one, the rest
    drawn from a generator of their own (seeded, so they do not disturb the world's)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"request-ids:{seed}")
        self._count = itertools.count(1)

    def next(self) -> str:
        bits = self._rng.getrandbits
        return (
            f"{bits(16):04X}:{bits(20):05X}:{bits(28):07X}:{bits(28):07X}:{next(self._count):08X}"
        )


#: The REST API versions GitHub serves, newest first; a request without
#: ``X-GitHub-Api-Version`` gets :data:`DEFAULT_API_VERSION`.
SUPPORTED_API_VERSIONS = ("2026-03-10", "2022-11-28")
DEFAULT_API_VERSION = "2022-11-28"


def selected_api_version(request: Request) -> str:
    """The version a request asks for (``X-GitHub-Api-Version``), or the default; a version
    GitHub does not serve is its 400."""
    asked = request.headers.get("x-github-api-version")
    if asked is None:
        return DEFAULT_API_VERSION
    if asked.strip() in SUPPORTED_API_VERSIONS:
        return asked.strip()
    newest, *older = SUPPORTED_API_VERSIONS
    supported = ", ".join([f'"{newest}" (most recent)', *(f'"{v}"' for v in older)])
    raise ApiError(
        400,
        f'The version you specified in the "X-GitHub-API-Version" request header, "{asked}", '
        f"is not a supported version. The following versions are currently supported: "
        f"{supported}.",
    )


class Simulator:
    """One simulated GitHub: the world plus everything that serves it."""

    def __init__(
        self,
        world: World,
        clock: Clock,
        authenticator: Authenticator,
        *,
        api_url: str,
        web_url: str | None = None,
    ) -> None:
        self.world = world
        self.clock = clock
        self.auth = authenticator
        #: Where bodies point for a request at the root; :attr:`urls` adds the request's prefix.
        self.root_urls = shapes.Urls(api=api_url.rstrip("/"), web=(web_url or api_url).rstrip("/"))
        self.faults = Faults()
        self.rate_limits = RateLimits()
        self.request_ids = RequestIds(world.settings.seed)
        self.stats = Stats()
        self.webhooks = WebhookHub(
            world, self.faults, clock, web_url=self.root_urls.web, api_url=self.root_urls.api
        )
        self._changed = asyncio.Event()

    @property
    def urls(self) -> shapes.Urls:
        """Where body URLs point: API URLs carry the prefix the current request came in on
        (:data:`API_PREFIX`), as GitHub Enterprise Server's answers do; web URLs never do."""
        prefix = API_PREFIX.get()
        if not prefix:
            return self.root_urls
        return replace(self.root_urls, api=self.root_urls.api + prefix)

    def set_faults(self, plan: FaultPlan) -> None:
        """Put a fault plan in force; it replaces the previous one entirely."""
        self.faults.replace(plan)
        limits = plan.rate_limit
        self.rate_limits.set_limits(limits.resource_limits())
        if limits.exhaust_primary:
            self.rate_limits.exhaust_all(self.clock.now())
        else:
            self.rate_limits.restore()
        self.rate_limits.secondary_until = self.clock.now() + limits.secondary_for
        self.rate_limits.secondary_retry_after = limits.retry_after

    def notify(self) -> None:
        """Wake long-polling runners after a change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, seconds: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


# ---------------------------------------------------------------------- helpers


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    errors = error.errors
    if errors is None:
        body = shapes.error(error.message, DOCS)
    elif all(isinstance(item, str) for item in errors):
        texts = [item for item in errors if isinstance(item, str)]
        body = shapes.validation_error_simple(error.message, texts, DOCS)
    else:
        records: list[JSON] = [dict(item) for item in errors if isinstance(item, dict)]
        body = shapes.validation_error(error.message, records, DOCS)
    return JSONResponse(body, status_code=error.status, headers=headers)


async def read_json(request: Request, *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "Problems parsing JSON")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Problems parsing JSON") from None


def int_param(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise not_found() from None


def paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """Slice ``items`` by ``per_page`` (max 100) and ``page``, with GitHub's Link header."""

    def number(name: str, default: int) -> int:
        try:
            return max(1, int(request.query_params.get(name, default)))
        except ValueError:
            return default

    per_page = min(number("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    page = number("page", 1)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    params = dict(request.query_params)
    base = str(request.url.replace(query=""))

    def link(target: int, rel: str) -> str:
        query = urlencode({**params, "per_page": per_page, "page": target})
        return f'<{base}?{query}>; rel="{rel}"'

    links = []
    if page > 1:
        links += [link(min(page - 1, last), "prev"), link(1, "first")]
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    return chunk, ({"Link": ", ".join(links)} if links else {})


def enum_param(
    request: Request, name: str, allowed: tuple[str, ...], *, resource: str
) -> str | None:
    """The query parameter ``name`` if given, else None; a value outside ``allowed`` (the
    contract's enum) is a 422 ``validation-error`` naming the parameter and the value."""
    value = request.query_params.get(name)
    if value is None or value in allowed:
        return value
    record = {
        "resource": resource,
        "field": name,
        "code": "invalid",
        "value": value,
        "message": f"{name} must be one of: {', '.join(allowed)}",
    }
    raise ApiError(422, "Validation Failed", [record])


def etag_for(body: bytes) -> str:
    return f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# ---------------------------------------------------------------------- the REST pipeline

Handler = Callable[[Simulator, Request, Caller], Awaitable[Reply]]


def _owner_of_request(request: Request) -> str | None:
    params = request.path_params
    return params.get("owner") or params.get("org")


def _check_access(caller: Caller, mode: AuthMode, request: Request, operation_id: str) -> None:
    """Refuse a caller the operation does not accept: the wrong kind of credential, an
    installation of another owner, or a classic token without a scope the operation needs."""
    if mode == "any":
        return
    if caller.kind is CallerKind.ANONYMOUS:
        raise ApiError(401, "Requires authentication")
    if mode == "app":
        if caller.kind is not CallerKind.APP:
            raise ApiError(
                401,
                "A JSON web token could not be decoded"
                if caller.kind is not CallerKind.INSTALLATION
                else "This endpoint requires you to authenticate as a GitHub App (JWT).",
            )
        return
    if caller.kind is CallerKind.APP:
        raise ApiError(403, "This endpoint needs an installation access token, not the App's JWT.")
    if mode == "installation" and caller.kind is not CallerKind.INSTALLATION:
        raise ApiError(403, "You must use an installation access token to access this endpoint.")
    if mode == "pat" and caller.kind is CallerKind.INSTALLATION:
        raise ApiError(403, "Resource not accessible by integration")
    owner = _owner_of_request(request)
    if (
        caller.kind is CallerKind.INSTALLATION
        and owner is not None
        and caller.owner_login is not None
        and owner.lower() != caller.owner_login.lower()
    ):
        raise ApiError(403, "Resource not accessible by integration")
    if caller.scopes is not None:
        check_scopes(caller.scopes, operation_id)


def rest(
    operation_id: str, handler: Handler, auth: AuthMode = "token"
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        return await serve(sim, request, operation_id, handler, auth)

    endpoint.__name__ = operation_id.replace("/", "_").replace("-", "_")
    return endpoint


async def serve(
    sim: Simulator, request: Request, operation_id: str, handler: Handler, auth: AuthMode
) -> Response:
    """One REST request through GitHub's pipeline (the module docstring gives the order)."""
    now = sim.clock.now
    sim.stats.requests[operation_id] += 1
    faults = sim.faults.plan.for_operation(operation_id)
    if faults.latency:
        await sim.clock.sleep(faults.latency)
    free = operation_id == "rate-limit/get"
    resource = resource_for(operation_id)
    # Headers on every answer, whatever it is; more join as the request is understood.
    common = {"x-github-request-id": sim.request_ids.next()}
    # Until the caller is known, answers carry the anonymous budget, as GitHub's 401s do.
    rate_headers = sim.rate_limits.bucket(ANONYMOUS.identity, CORE, now()).headers(CORE)
    try:
        common["x-github-api-version-selected"] = selected_api_version(request)
        caller = sim.auth.identify(request.headers.get("authorization"))
        if caller.scopes is not None:
            common.update(scope_headers(caller.scopes, operation_id))
        rate_headers = sim.rate_limits.bucket(caller.identity, resource, now()).headers(resource)
        _check_access(caller, auth, request, operation_id)
        if not free:
            retry_after = sim.rate_limits.secondary_active(now())
            if retry_after is not None:
                limited = ApiError(
                    sim.faults.plan.rate_limit.status,
                    "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again.",
                )
                return _finish(
                    sim,
                    operation_id,
                    error_response(limited, {**rate_headers, "retry-after": str(retry_after)}),
                    common,
                )
        is_read = request.method in ("GET", "HEAD")
        if not is_read and not free:
            rate_headers = _charge(sim, caller, resource)
        if sim.faults.chance(faults.error_rate):
            raise ApiError(faults.error_status, "Server Error")
        reply = await handler(sim, request, caller)
    except _RateLimitedError as error:
        return _finish(sim, operation_id, error_response(error, error.headers), common)
    except ApiError as error:
        return _finish(sim, operation_id, error_response(error, rate_headers), common)
    body = b"" if reply.body is None else _dumps(reply.body)
    headers = dict(reply.headers)
    if is_read and reply.status == 200:
        etag = etag_for(body)
        headers["ETag"] = etag
        if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
            sim.stats.not_modified[operation_id] += 1
            return _finish(
                sim,
                operation_id,
                Response(status_code=304, headers={**headers, **rate_headers}),
                common,
            )
        if not free:
            try:
                rate_headers = _charge(sim, caller, resource)
            except _RateLimitedError as error:
                return _finish(sim, operation_id, error_response(error, error.headers), common)
    if reply.body is None:
        response = Response(status_code=reply.status, headers={**headers, **rate_headers})
    else:
        response = Response(
            body,
            status_code=reply.status,
            headers={**headers, **rate_headers},
            media_type="application/json; charset=utf-8",
        )
    return _finish(sim, operation_id, response, common)


def _charge(sim: Simulator, caller: Caller, resource: str) -> dict[str, str]:
    """Charge one request to ``resource`` of the caller's budget; a spent budget raises
    GitHub's primary-limit answer, with that resource's headers."""
    ok, bucket = sim.rate_limits.take(caller.identity, resource, sim.clock.now())
    headers = bucket.headers(resource)
    if not ok:
        who = (
            f"installation ID {caller.installation_id}"
            if caller.installation_id is not None
            else "this credential"
        )
        error = ApiError(
            sim.faults.plan.rate_limit.status,
            f"API rate limit exceeded for {who}. If you reach out to GitHub Support for help, "
            "please include the request ID.",
        )
        raise _RateLimitedError(error, headers)
    return headers


class _RateLimitedError(ApiError):
    def __init__(self, error: ApiError, headers: dict[str, str]) -> None:
        super().__init__(error.status, error.message)
        self.headers = headers


def _finish(
    sim: Simulator, operation_id: str, response: Response, common: dict[str, str]
) -> Response:
    """Count the answer and add the headers every answer carries (``common``)."""
    response.headers.update(common)
    sim.stats.statuses[operation_id][response.status_code] += 1
    sim.notify()
    return response


# ---------------------------------------------------------------------- REST operations


def _scope(sim: Simulator, request: Request) -> tuple[str, bool]:
    """The runner scope a path names, and whether it is above a repository (groups apply)."""
    params = request.path_params
    if "enterprise" in params:
        return sim.world.scope_for_enterprise(params["enterprise"]), True
    if "org" in params:
        return sim.world.scope_for_org(params["org"]), True
    return sim.world.scope_for_repo(params["owner"], params["repo"]), False


async def list_runners(sim: Simulator, request: Request, caller: Caller) -> Reply:
    scope, _ = _scope(sim, request)
    runners = sim.world.runners_in(scope)
    name = request.query_params.get("name")
    if name:
        runners = [r for r in runners if r.name == name]
    page, links = paginate(request, runners)
    body = shapes.paginated("runners", [shapes.runner(r) for r in page], len(runners))
    return Reply(200, body, links)


def _runner(sim: Simulator, request: Request) -> Runner:
    scope, _ = _scope(sim, request)
    return sim.world.runner_in(scope, int_param(request, "runner_id"))


async def get_runner(sim: Simulator, request: Request, caller: Caller) -> Reply:
    return Reply(200, shapes.runner(_runner(sim, request)))


async def delete_runner(sim: Simulator, request: Request, caller: Caller) -> Reply:
    scope, _ = _scope(sim, request)
    sim.world.delete_runner(scope, int_param(request, "runner_id"))
    return Reply(204)


def _labels_reply(runner: Runner) -> Reply:
    labels = [shapes.runner_label(label) for label in runner.labels]
    return Reply(200, shapes.paginated("labels", labels, len(labels)))


async def list_labels(sim: Simulator, request: Request, caller: Caller) -> Reply:
    return _labels_reply(_runner(sim, request))


async def add_labels(sim: Simulator, request: Request, caller: Caller) -> Reply:
    scope, _ = _scope(sim, request)
    body = await read_json(request)
    return _labels_reply(sim.world.add_labels(scope, int_param(request, "runner_id"), body))


async def generate_jitconfig(sim: Simulator, request: Request, caller: Caller) -> Reply:
    scope, org_level = _scope(sim, request)
    body = await read_json(request)
    runner, encoded = sim.world.generate_jitconfig(scope, body, org_level=org_level)
    return Reply(201, {"runner": shapes.runner(runner), "encoded_jit_config": encoded})


def _token_handler(kind: str) -> Handler:
    async def handler(sim: Simulator, request: Request, caller: Caller) -> Reply:
        scope, _ = _scope(sim, request)
        return Reply(201, shapes.authentication_token(sim.world.create_token(scope, kind)))

    return handler


async def list_runner_groups(sim: Simulator, request: Request, caller: Caller) -> Reply:
    org = request.path_params["org"]
    groups = sim.world.groups_of(org)
    page, links = paginate(request, groups)
    body = shapes.paginated(
        "runner_groups", [shapes.runner_group(g, org, sim.urls) for g in page], len(groups)
    )
    return Reply(200, body, links)


async def list_enterprise_runner_groups(sim: Simulator, request: Request, caller: Caller) -> Reply:
    enterprise = sim.world.enterprise(request.path_params["enterprise"])
    groups = sim.world.enterprise_groups(enterprise.slug)
    page, links = paginate(request, groups)
    rendered = [shapes.enterprise_runner_group(g, enterprise.slug, sim.urls) for g in page]
    return Reply(200, shapes.paginated("runner_groups", rendered, len(groups)), links)


REPO_TYPES = ("all", "public", "private", "forks", "sources", "member")
REPO_SORTS = ("created", "updated", "pushed", "full_name")
DIRECTIONS = ("asc", "desc")

#: What ``sort`` orders repositories by. The simulator never updates a repository object
#: (only its pushes move), so ``updated_at`` is its creation time, as the shape shows.
_REPO_SORT_KEYS: dict[str, Callable[[Repo], str | float]] = {
    "created": lambda repo: repo.created_at,
    "updated": lambda repo: repo.created_at,
    "pushed": lambda repo: repo.pushed_at,
    "full_name": lambda repo: repo.full_name.lower(),
}


def repository_permissions(sim: Simulator, caller: Caller, repo: Repo) -> dict[str, bool] | None:
    """The ``permissions`` a repository body shows ``caller``: all for a personal access
    token, the installation's (:func:`shapes.repository_permissions`) for its own owner's
    repositories, pull only for another owner's public one; none for anyone else."""
    if caller.kind is CallerKind.TOKEN:
        return shapes.repository_permissions(None)
    if caller.kind is not CallerKind.INSTALLATION or caller.installation_id is None:
        return None
    installation = sim.world.installations[caller.installation_id]
    if installation.owner is not repo.owner:
        return shapes.repository_permissions({})
    return shapes.repository_permissions(installation_permissions(repo.owner.type))


async def list_org_repos(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """``type`` filters (every repository is an organisation-owned source, none is a fork),
    ``sort`` orders (default ``created``) in ``direction`` (default ``asc`` for ``full_name``,
    else ``desc``), ties broken by id; pagination applies to the sorted list."""
    owner = sim.world.org(request.path_params["org"])
    kind = enum_param(request, "type", REPO_TYPES, resource="Repository") or "all"
    sort = enum_param(request, "sort", REPO_SORTS, resource="Repository") or "created"
    direction = enum_param(request, "direction", DIRECTIONS, resource="Repository")
    if direction is None:
        direction = "asc" if sort == "full_name" else "desc"
    repos = sim.world.repos_of(owner)
    if kind == "forks":
        repos = []
    elif kind in ("public", "private"):
        repos = [repo for repo in repos if repo.private == (kind == "private")]
    key = _REPO_SORT_KEYS[sort]
    repos.sort(key=lambda repo: (key(repo), repo.id), reverse=direction == "desc")
    page, links = paginate(request, repos)
    rendered = [
        shapes.minimal_repository(r, sim.urls, permissions=repository_permissions(sim, caller, r))
        for r in page
    ]
    return Reply(200, rendered, links)


async def list_runs(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    runs = sim.world.runs_of(repo, request.query_params.get("status") or None)
    page, links = paginate(request, runs)
    rendered = [shapes.workflow_run(run, *sim.world.run_status(run), sim.urls) for run in page]
    return Reply(200, shapes.paginated("workflow_runs", rendered, len(runs)), links)


async def list_run_jobs(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    run = sim.world.run_in(repo, int_param(request, "run_id"))
    jobs = sim.world.run_jobs(run)
    if request.query_params.get("filter", "latest") == "latest":
        jobs = [job for job in jobs if job.run_attempt == run.run_attempt]
    page, links = paginate(request, jobs)
    return Reply(
        200, shapes.paginated("jobs", [shapes.job(j, sim.urls) for j in page], len(jobs)), links
    )


async def get_job(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    return Reply(200, shapes.job(sim.world.job_in(repo, int_param(request, "job_id")), sim.urls))


async def rerun_job(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    await read_json(request, optional=True)
    sim.world.rerun_job(sim.world.job_in(repo, int_param(request, "job_id")))
    return Reply(201, {})


async def cancel_run(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    sim.world.cancel_run(sim.world.run_in(repo, int_param(request, "run_id")))
    return Reply(202, {})


def _installation_reply(sim: Simulator, installation_id: int) -> Reply:
    installation = sim.world.installations[installation_id]
    app_id = sim.auth.app_id or 0
    return Reply(
        200, shapes.installation(installation, app_id, sim.world.settings.app_slug, sim.urls)
    )


async def list_installations(sim: Simulator, request: Request, caller: Caller) -> Reply:
    installations = sorted(sim.world.installations.values(), key=lambda i: i.id)
    page, links = paginate(request, installations)
    app_id = sim.auth.app_id or 0
    slug = sim.world.settings.app_slug
    return Reply(200, [shapes.installation(i, app_id, slug, sim.urls) for i in page], links)


async def org_installation(sim: Simulator, request: Request, caller: Caller) -> Reply:
    owner = sim.world.org(request.path_params["org"])
    return _installation_reply(sim, sim.world.installation_for(owner).id)


async def repo_installation(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    return _installation_reply(sim, sim.world.installation_for(repo.owner).id)


def installation_permissions(owner_type: OwnerType) -> dict[str, str]:
    permissions = {"actions": "read", "administration": "write", "metadata": "read"}
    if owner_type is OwnerType.ORGANIZATION:
        permissions["organization_self_hosted_runners"] = "write"
    return permissions


async def create_installation_token(sim: Simulator, request: Request, caller: Caller) -> Reply:
    installation_id = int_param(request, "installation_id")
    await read_json(request, optional=True)
    token = sim.world.issue_installation_token(installation_id)
    owner = sim.world.installations[installation_id].owner
    return Reply(201, shapes.installation_token(token, installation_permissions(owner.type)))


async def installation_repositories(sim: Simulator, request: Request, caller: Caller) -> Reply:
    assert caller.installation_id is not None
    owner = sim.world.installations[caller.installation_id].owner
    repos = sim.world.repos_of(owner)
    page, links = paginate(request, repos)
    rendered = [
        shapes.repository(r, sim.urls, permissions=repository_permissions(sim, caller, r))
        for r in page
    ]
    body = shapes.paginated("repositories", rendered, len(repos))
    body["repository_selection"] = "all"
    return Reply(200, body, links)


async def rate_limit(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """Every resource the published schema lists, from the caller's budgets, and the legacy
    top-level ``rate`` (``core`` again). GitHub drops ``rate`` in version 2026-03-10
    (``remove_rate_limit_rate``); the simulator keeps it in every version, as the contract it
    is checked against (the 2022-11-28 description) requires it."""
    now = sim.clock.now()
    resources = {}
    for resource in RESOURCE_LIMITS:
        bucket = sim.rate_limits.bucket(caller.identity, resource, now)
        resources[resource] = (bucket.limit, bucket.remaining, int(bucket.reset), bucket.used)
    return Reply(200, shapes.rate_limit_overview(resources))


REPO = "/repos/{owner}/{repo}"
ORG = "/orgs/{org}"
ENTERPRISE = "/enterprises/{enterprise}"


def _op(
    method: str, path: str, operation_id: str, handler: Handler, auth: AuthMode = "token"
) -> Route:
    return Route(path, rest(operation_id, handler, auth), methods=[method])


def _runner_routes(
    prefix: str, level: str, *, tag: str = "actions", auth: AuthMode = "token"
) -> list[Route]:
    """The self-hosted runner operations, identical at repository, organisation and enterprise
    level. GitHub files the enterprise ones under ``enterprise-admin/`` (``tag``), except
    ``generate-jitconfig``, which is ``actions/`` at every level."""
    runners = f"{prefix}/actions/runners"
    one = f"{runners}/{{runner_id}}"
    return [
        _op("GET", runners, f"{tag}/list-self-hosted-runners-for-{level}", list_runners, auth),
        _op(
            "POST",
            f"{runners}/generate-jitconfig",
            f"actions/generate-runner-jitconfig-for-{level}",
            generate_jitconfig,
            auth,
        ),
        _op(
            "POST",
            f"{runners}/registration-token",
            f"{tag}/create-registration-token-for-{level}",
            _token_handler("registration"),
            auth,
        ),
        _op(
            "POST",
            f"{runners}/remove-token",
            f"{tag}/create-remove-token-for-{level}",
            _token_handler("remove"),
            auth,
        ),
        _op("GET", one, f"{tag}/get-self-hosted-runner-for-{level}", get_runner, auth),
        _op("DELETE", one, f"{tag}/delete-self-hosted-runner-from-{level}", delete_runner, auth),
        _op(
            "GET",
            f"{one}/labels",
            f"{tag}/list-labels-for-self-hosted-runner-for-{level}",
            list_labels,
            auth,
        ),
        _op(
            "POST",
            f"{one}/labels",
            f"{tag}/add-custom-labels-to-self-hosted-runner-for-{level}",
            add_labels,
            auth,
        ),
    ]


def rest_routes() -> list[Route]:
    """Every operation of the OpenAPI subset, by its ``operationId``, plus the enterprise
    runner operations of GitHub's Enterprise Cloud description (which mirror the
    organisation ones)."""
    runs = f"{REPO}/actions/runs"
    jobs = f"{REPO}/actions/jobs"
    return [
        *_runner_routes(REPO, "repo"),
        *_runner_routes(ORG, "org"),
        _op(
            "GET",
            f"{ORG}/actions/runner-groups",
            "actions/list-self-hosted-runner-groups-for-org",
            list_runner_groups,
        ),
        *_runner_routes(ENTERPRISE, "enterprise", tag="enterprise-admin", auth="pat"),
        _op(
            "GET",
            f"{ENTERPRISE}/actions/runner-groups",
            "enterprise-admin/list-self-hosted-runner-groups-for-enterprise",
            list_enterprise_runner_groups,
            "pat",
        ),
        _op("GET", f"{ORG}/repos", "repos/list-for-org", list_org_repos),
        _op("GET", runs, "actions/list-workflow-runs-for-repo", list_runs),
        _op("GET", f"{runs}/{{run_id}}/jobs", "actions/list-jobs-for-workflow-run", list_run_jobs),
        _op("POST", f"{runs}/{{run_id}}/cancel", "actions/cancel-workflow-run", cancel_run),
        _op("GET", f"{jobs}/{{job_id}}", "actions/get-job-for-workflow-run", get_job),
        _op("POST", f"{jobs}/{{job_id}}/rerun", "actions/re-run-job-for-workflow-run", rerun_job),
        _op("GET", "/app/installations", "apps/list-installations", list_installations, "app"),
        _op(
            "POST",
            "/app/installations/{installation_id}/access_tokens",
            "apps/create-installation-access-token",
            create_installation_token,
            "app",
        ),
        _op("GET", f"{ORG}/installation", "apps/get-org-installation", org_installation, "app"),
        _op("GET", f"{REPO}/installation", "apps/get-repo-installation", repo_installation, "app"),
        _op(
            "GET",
            "/installation/repositories",
            "apps/list-repos-accessible-to-installation",
            installation_repositories,
            "installation",
        ),
        _op("GET", "/rate_limit", "rate-limit/get", rate_limit, "any"),
    ]


# ---------------------------------------------------------------------- control API (/_sim)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobRequest(_Strict):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    labels: list[str] = Field(min_length=1, max_length=100)
    duration: float = Field(ge=0)
    run_id: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1)
    conclusion: Literal["success", "failure", "cancelled", "skipped"] = "success"
    environment: str | None = Field(
        None, description="an environment the job waits on: it starts 'waiting' until approved"
    )


class RepoRequest(_Strict):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    owner_type: Literal["Organization", "User"] = "Organization"
    pushed_at: float | None = Field(
        None, ge=0, description="the last push, in epoch seconds (default: when created)"
    )


class HookRequest(_Strict):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class RunnerGroupRequest(_Strict):
    org: str | None = None
    enterprise: str | None = None
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_owner(self) -> RunnerGroupRequest:
        if (self.org is None) == (self.enterprise is None):
            raise ValueError("give exactly one of org and enterprise")
        return self


class EnterpriseRequest(_Strict):
    slug: str = Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$", max_length=60)
    orgs: list[str] = Field(default_factory=list)
    name: str | None = Field(None, min_length=1)

    @field_validator("orgs")
    @classmethod
    def _logins(cls, orgs: list[str]) -> list[str]:
        for login in orgs:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", login):
                raise ValueError(f"not an organization login: {login!r}")
        return orgs


def _validation_failure(error: ValidationError) -> ApiError:
    errors = [
        {
            "resource": "Request",
            "field": ".".join(str(part) for part in item["loc"]) or "body",
            "code": "invalid",
            "message": item["msg"],
        }
        for item in error.errors()
    ]
    return ApiError(422, "Validation Failed", errors)


ModelT = TypeVar("ModelT", bound=BaseModel)


async def _parse_one_or_many(request: Request, model: type[ModelT]) -> tuple[list[ModelT], bool]:
    body = await read_json(request)
    many = isinstance(body, list)
    items = body if many else [body]
    if not items:
        raise ApiError(
            422,
            "Validation Failed",
            [{"resource": "Request", "field": "body", "code": "missing", "message": "empty list"}],
        )
    try:
        return [model.model_validate(item) for item in items], many
    except ValidationError as error:
        raise _validation_failure(error) from None


def job_record(job: Job) -> JSON:
    def when(epoch: float | None) -> str | None:
        return iso8601(epoch) if epoch is not None else None

    return {
        "id": job.id,
        "repo": job.repo.full_name,
        "run_id": job.run.id,
        "run_attempt": job.run_attempt,
        "name": job.name,
        "labels": job.labels,
        "duration": job.duration,
        "status": job.status.value,
        "conclusion": job.conclusion.value if job.conclusion else None,
        "runner_id": job.runner_id,
        "runner_name": job.runner_name,
        "created_at": when(job.created_at),
        "started_at": when(job.started_at),
        "completed_at": when(job.completed_at),
        "failure_reason": job.failure_reason,
        "environment": job.environment,
    }


def control(
    handler: Callable[[Simulator, Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        try:
            response = await handler(sim, request)
        except ApiError as error:
            return error_response(error)
        sim.notify()
        return response

    endpoint.__name__ = handler.__name__
    return endpoint


async def sim_create_jobs(sim: Simulator, request: Request) -> Response:
    requests, many = await _parse_one_or_many(request, JobRequest)
    specs = [
        JobSpec(
            repo=r.repo,
            labels=tuple(r.labels),
            duration=r.duration,
            run_id=r.run_id,
            name=r.name,
            conclusion=Conclusion(r.conclusion),
            environment=r.environment,
        )
        for r in requests
    ]
    jobs = sim.world.create_jobs(specs)
    records = [job_record(job) for job in jobs]
    return JSONResponse(records if many else records[0], status_code=201)


async def sim_list_jobs(sim: Simulator, request: Request) -> Response:
    jobs = sorted(sim.world.jobs.values(), key=lambda j: j.id)
    status = request.query_params.get("status")
    if status:
        jobs = [job for job in jobs if job.status.value == status]
    return JSONResponse([job_record(job) for job in jobs])


async def sim_approve_job(sim: Simulator, request: Request) -> Response:
    return JSONResponse(job_record(sim.world.approve(int_param(request, "job_id"))))


async def sim_stats(sim: Simulator, request: Request) -> Response:
    body = sim.stats.public()
    body["webhooks"] = dict(Counter(d.status for d in sim.webhooks.log))
    return JSONResponse(body)


async def sim_get_faults(sim: Simulator, request: Request) -> Response:
    return JSONResponse(sim.faults.plan.model_dump())


async def sim_set_faults(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        plan = FaultPlan.model_validate(body)
    except ValidationError as error:
        raise _validation_failure(error) from None
    sim.set_faults(plan)
    return JSONResponse(plan.model_dump())


async def sim_create_repos(sim: Simulator, request: Request) -> Response:
    requests, many = await _parse_one_or_many(request, RepoRequest)
    repos = [
        sim.world.ensure_repo(r.repo, OwnerType(r.owner_type), pushed_at=r.pushed_at)
        for r in requests
    ]
    records = [
        {"id": r.id, "full_name": r.full_name, "owner_type": r.owner.type.value} for r in repos
    ]
    return JSONResponse(records if many else records[0], status_code=201)


async def sim_add_hook(sim: Simulator, request: Request) -> Response:
    requests, many = await _parse_one_or_many(request, HookRequest)
    records = [sim.webhooks.add_hook(r.url, r.secret).public() for r in requests]
    return JSONResponse(records if many else records[0], status_code=201)


async def sim_list_hooks(sim: Simulator, request: Request) -> Response:
    return JSONResponse([hook.public() for hook in sim.webhooks.hooks])


async def sim_list_deliveries(sim: Simulator, request: Request) -> Response:
    with_payload = request.query_params.get("payload") in ("1", "true")
    return JSONResponse([d.public(with_payload=with_payload) for d in sim.webhooks.log])


async def sim_redeliver(sim: Simulator, request: Request) -> Response:
    try:
        delivery = sim.webhooks.redeliver(int_param(request, "delivery_id"))
    except KeyError:
        raise not_found() from None
    return JSONResponse(delivery.public(), status_code=202)


async def sim_add_runner_group(sim: Simulator, request: Request) -> Response:
    requests, many = await _parse_one_or_many(request, RunnerGroupRequest)
    records: list[JSON] = []
    for r in requests:
        if r.enterprise is not None:
            group = sim.world.add_enterprise_runner_group(r.enterprise, r.name)
            records.append({"id": group.id, "name": group.name, "enterprise": r.enterprise})
        else:
            assert r.org is not None
            group = sim.world.add_runner_group(r.org, r.name)
            records.append({"id": group.id, "name": group.name, "org": r.org})
    return JSONResponse(records if many else records[0], status_code=201)


def enterprise_record(enterprise: Enterprise) -> JSON:
    return {
        "id": enterprise.id,
        "slug": enterprise.slug,
        "name": enterprise.name,
        "orgs": [org.login for org in enterprise.organizations],
    }


async def sim_create_enterprises(sim: Simulator, request: Request) -> Response:
    requests, many = await _parse_one_or_many(request, EnterpriseRequest)
    enterprises = [sim.world.ensure_enterprise(r.slug, r.orgs, r.name) for r in requests]
    records = [enterprise_record(e) for e in enterprises]
    return JSONResponse(records if many else records[0], status_code=201)


async def sim_list_enterprises(sim: Simulator, request: Request) -> Response:
    enterprises = sorted(sim.world.enterprises.values(), key=lambda e: e.id)
    return JSONResponse([enterprise_record(e) for e in enterprises])


async def sim_list_runners(sim: Simulator, request: Request) -> Response:
    runners = sorted(sim.world.runners.values(), key=lambda r: r.id)
    return JSONResponse(
        [{**shapes.runner(r), "scope": r.scope, "job_id": r.job_id} for r in runners]
    )


# ---------------------------------------------------------------------- runner protocol


def _credential(request: Request) -> str:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "The runner must present its credential as a Bearer token.")
    return credential.strip()


def _job_message(job: Job) -> JSON:
    return {
        "id": job.id,
        "name": job.name,
        "repo": job.repo.full_name,
        "run_id": job.run.id,
        "labels": job.labels,
        "duration": job.duration,
        "conclusion": job.planned_conclusion.value,
    }


async def runner_connect(sim: Simulator, request: Request) -> Response:
    runner = sim.world.runner_connect(_credential(request))
    return JSONResponse({"runner_id": runner.id, "name": runner.name})


async def runner_next_job(sim: Simulator, request: Request) -> Response:
    credential = _credential(request)
    try:
        wait = min(float(request.query_params.get("wait", "0")), MAX_LONG_POLL)
    except ValueError:
        wait = 0.0
    deadline = sim.clock.now() + wait
    while True:
        job = sim.world.runner_poll(credential)
        if job is not None or sim.clock.now() >= deadline:
            break
        await sim.wait_for_change(min(1.0, deadline - sim.clock.now()))
        if await request.is_disconnected():
            # The runner went away mid-poll: do not keep it looking alive.
            return Response(status_code=204)
    return JSONResponse({"job": _job_message(job) if job is not None else None})


async def runner_heartbeat(sim: Simulator, request: Request) -> Response:
    cancelled = sim.world.runner_heartbeat(_credential(request), int_param(request, "job_id"))
    return JSONResponse({"cancelled": cancelled})


class CompleteRequest(_Strict):
    conclusion: Literal["success", "failure", "cancelled", "skipped"]


async def runner_complete(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        parsed = CompleteRequest.model_validate(body)
    except ValidationError as error:
        raise _validation_failure(error) from None
    sim.world.runner_complete(
        _credential(request), int_param(request, "job_id"), Conclusion(parsed.conclusion)
    )
    return Response(status_code=204)


async def runner_disconnect(sim: Simulator, request: Request) -> Response:
    sim.world.runner_disconnect(_credential(request))
    return Response(status_code=204)


class RegisterRequest(_Strict):
    token: str
    name: str = Field(min_length=1)
    labels: list[str] = Field(min_length=1, max_length=100)
    ephemeral: bool = False


async def runner_register(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        parsed = RegisterRequest.model_validate(body)
    except ValidationError as error:
        raise _validation_failure(error) from None
    runner, encoded = sim.world.register_with_token(
        parsed.token, parsed.name, parsed.labels, ephemeral=parsed.ephemeral
    )
    return JSONResponse({"runner_id": runner.id, "encoded_config": encoded}, status_code=201)


def control_routes() -> list[Route]:
    return [
        Route("/_sim/jobs", control(sim_create_jobs), methods=["POST"]),
        Route("/_sim/jobs", control(sim_list_jobs), methods=["GET"]),
        Route("/_sim/jobs/{job_id}/approve", control(sim_approve_job), methods=["POST"]),
        Route("/_sim/stats", control(sim_stats), methods=["GET"]),
        Route("/_sim/faults", control(sim_get_faults), methods=["GET"]),
        Route("/_sim/faults", control(sim_set_faults), methods=["POST"]),
        Route("/_sim/repos", control(sim_create_repos), methods=["POST"]),
        Route("/_sim/hooks", control(sim_add_hook), methods=["POST"]),
        Route("/_sim/hooks", control(sim_list_hooks), methods=["GET"]),
        Route("/_sim/deliveries", control(sim_list_deliveries), methods=["GET"]),
        Route("/_sim/deliveries/{delivery_id}/redeliver", control(sim_redeliver), methods=["POST"]),
        Route("/_sim/runner-groups", control(sim_add_runner_group), methods=["POST"]),
        Route("/_sim/enterprises", control(sim_create_enterprises), methods=["POST"]),
        Route("/_sim/enterprises", control(sim_list_enterprises), methods=["GET"]),
        Route("/_sim/runners", control(sim_list_runners), methods=["GET"]),
        Route("/_sim/runner/register", control(runner_register), methods=["POST"]),
        Route("/_sim/runner/connect", control(runner_connect), methods=["POST"]),
        Route("/_sim/runner/job", control(runner_next_job), methods=["GET"]),
        Route("/_sim/runner/jobs/{job_id}/heartbeat", control(runner_heartbeat), methods=["POST"]),
        Route("/_sim/runner/jobs/{job_id}/complete", control(runner_complete), methods=["POST"]),
        Route("/_sim/runner/disconnect", control(runner_disconnect), methods=["POST"]),
    ]
