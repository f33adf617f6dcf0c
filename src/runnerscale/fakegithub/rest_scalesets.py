"""``POST /actions/runner-registration`` on the API host: the step of the scale sets'
authentication chain that trades a registration token (``Authorization: RemoteAuth <token>``)
for the Actions service's tenant URL and an admin JWT (``actions/scaleset`` client.go,
``getActionsServiceAdminConnection``). The registration-token routes it starts from are
:mod:`runnerscale.fakegithub.rest_runners`'."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.fakegithub import scaleset_shapes
from runnerscale.fakegithub.actions_service import tenant_url
from runnerscale.fakegithub.api import Simulator, read_json
from runnerscale.fakegithub.scalesets import ActionsError
from runnerscale.fakegithub.world import ApiError

OPERATION = "actions/runner-registration"


def _remote_auth(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme != "RemoteAuth" or not token.strip():
        raise ActionsError(
            401,
            "UnauthorizedException",
            "Send the registration token as 'Authorization: RemoteAuth <token>'.",
        )
    return token.strip()


async def _register(sim: Simulator, request: Request) -> Response:
    token = _remote_auth(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise ActionsError(
            400, "ArgumentException", 'The body must be {"url": "<config URL>", ...}.'
        )
    tenant, admin_token = sim.scale_sets.register(token, urlsplit(body["url"]).path)
    return JSONResponse({"url": tenant_url(sim, tenant), "token": admin_token})


async def runner_registration(request: Request) -> Response:
    """Counted with the REST calls (it is on the API host) but charged to no budget."""
    sim: Simulator = request.app.state.sim
    sim.ledger.asked(OPERATION)
    try:
        response = await _register(sim, request)
    except ActionsError as error:
        response = JSONResponse(scaleset_shapes.error(error.type_name, error.message), error.status)
    except ApiError as error:
        response = JSONResponse(scaleset_shapes.error("ApiException", error.message), error.status)
    sim.stats.statuses[OPERATION][response.status_code] += 1
    return response


def routes() -> list[Route]:
    return [Route("/actions/runner-registration", runner_registration, methods=["POST"])]
