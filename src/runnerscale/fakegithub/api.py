"""The simulated GitHub's REST request pipeline, and the helpers every REST area shares.

The operations themselves live by area (``rest_runners``, ``rest_runs``, ``rest_apps``,
``rest_reads``, ``rest_hooks``); :mod:`runnerscale.fakegithub.app` puts their routes together.
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

The control API (:mod:`runnerscale.fakegithub.control`) and the runner protocol
(:mod:`runnerscale.fakegithub.runner_protocol`) are the simulator's own and skip this pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.clock import Clock
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.accounting import (
    Ledger,
    PrimaryLimitError,
    RefusedError,
    SecondaryLimitError,
    Stats,
)
from runnerscale.fakegithub.auth import ANONYMOUS, Authenticator, Caller, CallerKind
from runnerscale.fakegithub.faults import FaultPlan, Faults
from runnerscale.fakegithub.ratelimit import CORE, RateLimits
from runnerscale.fakegithub.scalesets import ScaleSets
from runnerscale.fakegithub.scopes import check_scopes, scope_headers
from runnerscale.fakegithub.webhooks import WebhookHub
from runnerscale.fakegithub.world import ApiError, World, not_found

JSON = dict[str, Any]
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
DOCS = "https://docs.github.com/rest"

#: Which credentials an operation accepts: ``token`` a PAT or an installation token (of the
#: path's owner), ``pat`` a PAT only (GitHub's enterprise runner endpoints "do not work with
#: GitHub App user access tokens, GitHub App installation access tokens"), ``app`` the App's
#: JWT, ``installation`` an installation token only, ``any`` anyone, even anonymous.
AuthMode = Literal["token", "pat", "app", "installation", "any"]


#: The path prefix the request being served came in on: ``""`` at the root, ``"/api/v3"`` in
#: GitHub Enterprise Server's layout (set by :func:`runnerscale.fakegithub.app.create_app`). A GHES
#: client follows the URLs in bodies, so they carry the same prefix (``https://HOST/api/v3/...``).
API_PREFIX: ContextVar[str] = ContextVar("runnerscale_sim_api_prefix", default="")


@dataclass
class Reply:
    """What an operation produced before the pipeline adds headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


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
        self.ledger = Ledger(self.rate_limits, self.faults, clock.now)
        #: Requests, charges and answers by operation (``GET /_sim/stats``).
        self.stats = self.ledger.stats
        self.request_ids = RequestIds(world.settings.seed)
        #: The runner scale sets (:mod:`runnerscale.fakegithub.actions_service` serves them).
        self.scale_sets = ScaleSets(world)
        #: Actions-service calls (scale sets), counted apart from REST calls: GitHub has
        #: not published their limits, and they are not charged to any REST budget.
        self.actions_stats = Stats()
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
        self.ledger.put_in_force(plan)

    def notify(self) -> None:
        """Wake long-polling runners after a change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, seconds: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()


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
    try:
        raw = await request.body()
    except ClientDisconnect:
        # The client went away mid-request (a stopping daemon): an answer nobody reads,
        # not a traceback in the simulator's log.
        raise ApiError(400, "The client disconnected before sending its body") from None
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


Handler = Callable[[Simulator, Request, Caller], Awaitable[Reply]]


def _owner_of_request(request: Request) -> str | None:
    params = request.path_params
    return params.get("owner") or params.get("org")


def _repo_of_request(request: Request) -> str | None:
    """The repository (``owner/name``) a request's path names, if any."""
    params = request.path_params
    return f"{params['owner']}/{params['repo']}" if "repo" in params else None


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
    """One REST request through GitHub's pipeline (the module docstring gives the order; the
    accounting steps are :class:`~runnerscale.fakegithub.accounting.Ledger`'s)."""
    ledger = sim.ledger
    ledger.asked(operation_id)
    repo = _repo_of_request(request)
    faults = sim.faults.plan.for_operation(operation_id, repo)
    if faults.latency:
        await sim.clock.sleep(faults.latency)
    # Headers on every answer, whatever it is; more join as the request is understood.
    common = {"x-github-request-id": sim.request_ids.next()}
    # Until the caller is known, answers carry the anonymous budget, as GitHub's 401s do.
    caller = ANONYMOUS
    rate_headers = sim.rate_limits.bucket(ANONYMOUS.identity, CORE, sim.clock.now()).headers(CORE)
    is_read = request.method in ("GET", "HEAD")
    try:
        common["x-github-api-version-selected"] = selected_api_version(request)
        caller = sim.auth.identify(request.headers.get("authorization"))
        if caller.scopes is not None:
            common.update(scope_headers(caller.scopes, operation_id))
        resource, bucket = ledger.bucket(operation_id, caller.identity)
        rate_headers = bucket.headers(resource)
        _check_access(caller, auth, request, operation_id)
        charged = ledger.admit(operation_id, caller.identity, read=is_read, repo=repo)
        if charged is not None:
            rate_headers = charged.headers(resource)
        reply = await handler(sim, request, caller)
    except RefusedError as refused:
        return _finish(sim, operation_id, _refused(refused, caller, rate_headers), common)
    except ApiError as error:
        return _finish(sim, operation_id, error_response(error, rate_headers), common)
    body = b"" if reply.body is None else _dumps(reply.body)
    headers = dict(reply.headers)
    if is_read and reply.status == 200:
        etag = etag_for(body)
        headers["ETag"] = etag
        not_modified = etag in {
            tag.strip() for tag in request.headers.get("if-none-match", "").split(",")
        }
        try:
            charged = ledger.answered(operation_id, caller.identity, not_modified=not_modified)
        except PrimaryLimitError as refused:
            return _finish(sim, operation_id, _refused(refused, caller, rate_headers), common)
        if charged is not None:
            rate_headers = charged.headers(resource)
        if not_modified:
            return _finish(
                sim,
                operation_id,
                Response(status_code=304, headers={**headers, **rate_headers}),
                common,
            )
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


def _refused(refused: RefusedError, caller: Caller, rate_headers: dict[str, str]) -> JSONResponse:
    """GitHub's answer when the accounting refused the request (limits, injected errors)."""
    if isinstance(refused, SecondaryLimitError):
        message = (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again."
        )
        headers = {**rate_headers, "retry-after": str(refused.retry_after)}
    elif isinstance(refused, PrimaryLimitError):
        who = (
            f"installation ID {caller.installation_id}"
            if caller.installation_id is not None
            else "this credential"
        )
        message = (
            f"API rate limit exceeded for {who}. If you reach out to GitHub Support for help, "
            "please include the request ID."
        )
        headers = refused.bucket.headers(refused.resource)
    else:
        message, headers = "Server Error", rate_headers
    return error_response(ApiError(refused.status, message), headers)


def _finish(
    sim: Simulator, operation_id: str, response: Response, common: dict[str, str]
) -> Response:
    """Count the answer and add the headers every answer carries (``common``)."""
    response.headers.update(common)
    sim.stats.statuses[operation_id][response.status_code] += 1
    sim.notify()
    return response


REPO = "/repos/{owner}/{repo}"
ORG = "/orgs/{org}"
ENTERPRISE = "/enterprises/{enterprise}"


def operation(
    method: str, path: str, operation_id: str, handler: Handler, auth: AuthMode = "token"
) -> Route:
    return Route(path, rest(operation_id, handler, auth), methods=[method])


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


def validation_failure(error: ValidationError) -> ApiError:
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
