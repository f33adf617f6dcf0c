"""The Actions service's runner-scale-set routes over HTTP: the tenant's ``_apis`` and the
broker's message queue, serving :mod:`runnerscale.fakegithub.scalesets`.

Layout (``actions/scaleset``'s client.go and session_client.go; docs/simulator.md):

* ``{origin}/_services/pipelines/tenant-N/_apis/...``: runner groups, scale sets, JIT configs,
  agents, sessions, ``acquirejobs``. ``Authorization: Bearer <admin JWT>`` from
  ``POST /actions/runner-registration`` (``acquirejobs``: the session's queue token).
* ``{origin}/_services/broker/scalesets/ID/messages?sessionId=S``: the long poll (``GET``,
  queue token, ``lastMessageId``, ``X-ScaleSetMaxCapacity``) and the ack (``DELETE .../M``).

Every request must name ``api-version`` (the query, or the ``Accept`` header's parameter as
the client sends on the broker); without it the answer is 400. Refusals are
``{"typeName": ..., "message": ...}``. Calls are counted in ``sim.actions_stats``, apart from
the REST calls (``GET /_sim/stats`` shows both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.fakegithub import scaleset_shapes as shapes
from runnerscale.fakegithub.api import Simulator, read_json
from runnerscale.fakegithub.scalesets import ActionsError
from runnerscale.fakegithub.world import ApiError

TENANT = "/_services/pipelines/tenant-{tenant:int}/_apis"
BROKER = "/_services/broker/scalesets/{scale_set_id:int}/messages"
SCALE_SETS = f"{TENANT}/runtime/runnerscalesets"
ONE = SCALE_SETS + "/{scale_set_id:int}"
AGENTS = f"{TENANT}/distributedtask/pools/0/agents"
#: Waits inside a held poll never exceed this, so a moved virtual clock is noticed.
POLL_STEP = 1.0
JSON = dict[str, Any]

Handler = Callable[[Simulator, Request, str], Awaitable[Response]]


def tenant_url(sim: Simulator, tenant: int) -> str:
    return f"{sim.root_urls.web}/_services/pipelines/tenant-{tenant}/"


def queue_url(sim: Simulator, scale_set_id: int, session_id: str) -> str:
    base = f"{sim.root_urls.web}/_services/broker/scalesets/{scale_set_id}/messages"
    return f"{base}?sessionId={session_id}"


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ActionsError(
            401, "UnauthorizedException", "Send the token as 'Authorization: Bearer <token>'."
        )
    return token.strip()


def _require_api_version(request: Request) -> None:
    if request.query_params.get("api-version"):
        return
    accept = request.headers.get("accept", "")
    if "api-version=" in accept.replace(" ", ""):
        return
    raise ActionsError(
        400,
        "VssInvalidPreviewVersionException",
        "The request names no api-version: add '?api-version=6.0-preview' to the URL.",
    )


def _problem(error: ActionsError | ApiError) -> JSONResponse:
    if isinstance(error, ActionsError):
        return JSONResponse(shapes.error(error.type_name, error.message), error.status)
    return JSONResponse(shapes.error("ApiException", error.message), error.status)


def actions_operation(
    method: str, path: str, name: str, handler: Handler, *, queue_token: bool = False
) -> Route:
    """One Actions-service operation: api-version, the token (admin JWT of the path's tenant,
    or a queue token checked by the handler), counting, and the service's error shape."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        stats = sim.actions_stats
        stats.requests[name] += 1
        try:
            _require_api_version(request)
            token = _bearer(request)
            scope = (
                token
                if queue_token
                else sim.scale_sets.admin_scope(int(request.path_params["tenant"]), token)
            )
            response = await handler(sim, request, scope)
        except (ActionsError, ApiError) as error:
            response = _problem(error)
        stats.statuses[name][response.status_code] += 1
        sim.notify()
        return response

    endpoint.__name__ = name.replace("/", "_").replace("-", "_")
    return Route(path, endpoint, methods=[method])


class _Label(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    type: str = ""


class _ScaleSetBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str | None = None
    runner_group_id: int | None = Field(None, alias="runnerGroupId")
    labels: list[_Label] | None = None
    runner_setting: dict[str, Any] | None = Field(None, alias="RunnerSetting")


ModelT = TypeVar("ModelT", bound=BaseModel)


def _parse(model: type[ModelT], body: Any) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ActionsError(400, "ArgumentException", f"{where}: {first['msg']}") from None


def _tenant(request: Request) -> int:
    return int(request.path_params["tenant"])


def _scale_set_json(sim: Simulator, request: Request, scale_set_id: int, scope: str) -> JSON:
    record = sim.scale_sets.get(scope, scale_set_id)
    stats = sim.scale_sets.statistics(record.id)
    return shapes.scale_set(record, stats, tenant_url(sim, _tenant(request)))


async def list_runner_groups(sim: Simulator, request: Request, scope: str) -> Response:
    name = request.query_params.get("groupName")
    groups = sim.scale_sets.runner_groups(scope, name)
    return JSONResponse(shapes.listing([shapes.runner_group(g) for g in groups]))


async def list_scale_sets(sim: Simulator, request: Request, scope: str) -> Response:
    group = request.query_params.get("runnerGroupId")
    try:
        group_id = int(group) if group else None
    except ValueError:
        raise ActionsError(400, "ArgumentException", "runnerGroupId must be a number") from None
    found = sim.scale_sets.find(scope, group_id, request.query_params.get("name"))
    return JSONResponse(
        shapes.listing([_scale_set_json(sim, request, record.id, scope) for record in found])
    )


async def create_scale_set(sim: Simulator, request: Request, scope: str) -> Response:
    body = _parse(_ScaleSetBody, await read_json(request))
    if not body.name:
        raise ActionsError(400, "ArgumentException", "name is required")
    setting = body.runner_setting or {}
    record = sim.scale_sets.create(
        scope,
        body.name,
        body.runner_group_id or 1,
        [label.name for label in body.labels or []],
        disable_update=bool(setting.get("disableUpdate", False)),
    )
    return JSONResponse(_scale_set_json(sim, request, record.id, scope))


def _id(request: Request) -> int:
    return int(request.path_params["scale_set_id"])


async def get_scale_set(sim: Simulator, request: Request, scope: str) -> Response:
    return JSONResponse(_scale_set_json(sim, request, _id(request), scope))


async def update_scale_set(sim: Simulator, request: Request, scope: str) -> Response:
    body = _parse(_ScaleSetBody, await read_json(request))
    record = sim.scale_sets.update(
        scope,
        _id(request),
        name=body.name,
        group_id=body.runner_group_id,
        labels=None if body.labels is None else [label.name for label in body.labels],
    )
    return JSONResponse(_scale_set_json(sim, request, record.id, scope))


async def delete_scale_set(sim: Simulator, request: Request, scope: str) -> Response:
    sim.scale_sets.delete(scope, _id(request))
    return Response(status_code=204)


class _JitBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = Field(min_length=1)
    work_folder: str = Field("_work", alias="workFolder")


async def generate_jitconfig(sim: Simulator, request: Request, scope: str) -> Response:
    body = _parse(_JitBody, await read_json(request))
    runner, encoded = sim.scale_sets.generate_jitconfig(
        scope, _id(request), body.name, body.work_folder or "_work"
    )
    return JSONResponse({"runner": shapes.runner_reference(runner), "encodedJITConfig": encoded})


async def find_agents(sim: Simulator, request: Request, scope: str) -> Response:
    name = request.query_params.get("agentName")
    runners = [
        r for r in sim.world.runners_in(scope) if name is None or r.name.lower() == name.lower()
    ]
    return JSONResponse(shapes.listing([shapes.runner_reference(r) for r in runners]))


async def get_agent(sim: Simulator, request: Request, scope: str) -> Response:
    runner = sim.scale_sets.runner(scope, int(request.path_params["runner_id"]))
    return JSONResponse(shapes.runner_reference(runner))


async def remove_agent(sim: Simulator, request: Request, scope: str) -> Response:
    sim.scale_sets.remove_runner(scope, int(request.path_params["runner_id"]))
    return Response(status_code=204)


class _SessionBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    owner_name: str = Field(min_length=1, alias="ownerName")


def _session_reply(sim: Simulator, request: Request, scope: str, session_id: str) -> Response:
    scale_set_id = _id(request)
    record = sim.scale_sets.get(scope, scale_set_id)
    found = sim.scale_sets.sessions[scale_set_id]
    stats = sim.scale_sets.statistics(scale_set_id)
    body = shapes.session(
        found,
        record,
        stats,
        tenant_url(sim, _tenant(request)),
        queue_url(sim, scale_set_id, session_id),
    )
    return JSONResponse(body)


async def create_session(sim: Simulator, request: Request, scope: str) -> Response:
    body = _parse(_SessionBody, await read_json(request))
    found = sim.scale_sets.create_session(scope, _id(request), body.owner_name)
    return _session_reply(sim, request, scope, found.id)


async def refresh_session(sim: Simulator, request: Request, scope: str) -> Response:
    found = sim.scale_sets.refresh_session(scope, _id(request), request.path_params["session_id"])
    return _session_reply(sim, request, scope, found.id)


async def delete_session(sim: Simulator, request: Request, scope: str) -> Response:
    sim.scale_sets.delete_session(scope, _id(request), request.path_params["session_id"])
    return Response(status_code=204)


async def acquire_jobs(sim: Simulator, request: Request, token: str) -> Response:
    body = await read_json(request)
    if not isinstance(body, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in body
    ):
        raise ActionsError(400, "ArgumentException", "the body must be a JSON array of ids")
    acquired = sim.scale_sets.acquire_jobs(_id(request), token, body)
    return JSONResponse({"count": len(acquired), "value": acquired})


async def acquirable_jobs(sim: Simulator, request: Request, scope: str) -> Response:
    sim.scale_sets.get(scope, _id(request))
    events = sim.scale_sets.acquirable_jobs(_id(request))
    if not events:
        return Response(status_code=204)
    url = _acquire_url(sim, scope, _id(request))
    return JSONResponse(shapes.listing([shapes.job_message(e, url) for e in events]))


def _acquire_url(sim: Simulator, scope: str, scale_set_id: int) -> str:
    base = tenant_url(sim, sim.scale_sets.tenant_of(scope))
    return f"{base}_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs"


def _capacity(request: Request) -> int | None:
    raw = request.headers.get("x-scalesetmaxcapacity")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ActionsError(
            400, "ArgumentException", f"X-ScaleSetMaxCapacity must be an integer, got {raw!r}"
        ) from None


def _int_query(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "0") or "0"
    try:
        return int(raw)
    except ValueError:
        raise ActionsError(400, "ArgumentException", f"{name} must be a number") from None


async def get_message(sim: Simulator, request: Request, token: str) -> Response:
    """The long poll: held up to ``scale_set_poll_hold`` seconds, woken by any change."""
    scale_set_id = _id(request)
    session_id = request.query_params.get("sessionId", "")
    last = _int_query(request, "lastMessageId")
    capacity = _capacity(request)
    deadline = sim.clock.now() + sim.world.settings.scale_set_poll_hold
    session = sim.scale_sets.poll_started(scale_set_id, session_id, token)
    try:
        while True:
            message = sim.scale_sets.get_message(scale_set_id, session_id, token, last, capacity)
            if message is not None:
                scope = sim.scale_sets.scale_sets[scale_set_id].scope
                url = _acquire_url(sim, scope, scale_set_id)
                return JSONResponse(shapes.envelope(message, url))
            left = deadline - sim.clock.now()
            if left <= 0:
                return Response(status_code=202)
            await sim.wait_for_change(min(POLL_STEP, left))
            if await request.is_disconnected():
                return Response(status_code=202)
    finally:
        sim.scale_sets.poll_ended(session)


async def delete_message(sim: Simulator, request: Request, token: str) -> Response:
    sim.scale_sets.acknowledge(
        _id(request),
        request.query_params.get("sessionId", ""),
        token,
        int(request.path_params["message_id"]),
    )
    return Response(status_code=204)


def routes() -> list[Route]:
    op = actions_operation
    return [
        op("GET", f"{TENANT}/runtime/runnergroups/", "runnergroups/list", list_runner_groups),
        op("GET", f"{TENANT}/runtime/runnergroups", "runnergroups/list", list_runner_groups),
        op("GET", SCALE_SETS, "runnerscalesets/list", list_scale_sets),
        op("POST", SCALE_SETS, "runnerscalesets/create", create_scale_set),
        op("GET", ONE, "runnerscalesets/get", get_scale_set),
        op("PATCH", ONE, "runnerscalesets/update", update_scale_set),
        op("DELETE", ONE, "runnerscalesets/delete", delete_scale_set),
        op(
            "POST",
            f"{ONE}/generatejitconfig",
            "runnerscalesets/generatejitconfig",
            generate_jitconfig,
        ),
        op("POST", f"{ONE}/sessions", "sessions/create", create_session),
        op("PATCH", ONE + "/sessions/{session_id}", "sessions/refresh", refresh_session),
        op("DELETE", ONE + "/sessions/{session_id}", "sessions/delete", delete_session),
        op(
            "POST",
            f"{ONE}/acquirejobs",
            "runnerscalesets/acquirejobs",
            acquire_jobs,
            queue_token=True,
        ),
        op("GET", f"{ONE}/acquirablejobs", "runnerscalesets/acquirablejobs", acquirable_jobs),
        op("GET", AGENTS, "agents/find", find_agents),
        op("GET", AGENTS + "/{runner_id:int}", "agents/get", get_agent),
        op("DELETE", AGENTS + "/{runner_id:int}", "agents/remove", remove_agent),
        op("GET", BROKER, "broker/get-message", get_message, queue_token=True),
        op(
            "DELETE",
            BROKER + "/{message_id:int}",
            "broker/delete-message",
            delete_message,
            queue_token=True,
        ),
    ]
