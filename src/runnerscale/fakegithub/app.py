"""The simulator's ASGI application: every route of every module, in one table.

Each area of the REST API lives in its own module (``rest_runners``, ``rest_runs``,
``rest_apps``, ``rest_reads``, ``rest_hooks``), all going through the request pipeline of
:mod:`runnerscale.fakegithub.api`; this module only puts their routes together with the control API
and the runner protocol, and answers what matches none of them the way GitHub does. The REST
routes are served twice: at the root (api.github.com's layout) and under ``/api/v3`` (GitHub
Enterprise Server's), so clients set up for either reach the same simulator.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from runnerscale.fakegithub import (
    actions_service,
    control,
    rest_apps,
    rest_hooks,
    rest_reads,
    rest_runners,
    rest_runs,
    rest_scalesets,
    runner_protocol,
)
from runnerscale.fakegithub.api import API_PREFIX, Simulator, error_response
from runnerscale.fakegithub.world import ApiError, not_found


def api_routes() -> list[BaseRoute]:
    """The REST operations, by ``operationId``. The reads come first: their literal segments
    (``.../runners/downloads``) must win over the runner operations' ``{runner_id}``."""
    return [
        *rest_reads.routes(),
        *rest_hooks.routes(),
        *rest_runners.routes(),
        *rest_runs.routes(),
        *rest_apps.routes(),
        *rest_scalesets.routes(),
    ]


#: Where GitHub Enterprise Server serves the REST API (``https://HOST/api/v3/...``); the
#: simulator serves every operation there as well as at the root, as api.github.com does.
GHES_PREFIX = "/api/v3"
#: Where GitHub serves GraphQL: ``/graphql`` on api.github.com, ``/api/graphql`` on GHES.
GRAPHQL_PATHS = ("/graphql", "/api/graphql")
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class PrefixedApi:
    """The REST routes again under a prefix, for clients set up for GHES (``/api/v3``).

    The route objects are the same as at the root, so each operation is served and counted in
    ``/_sim/stats`` the same way under both. While a request under the prefix is served,
    :data:`~runnerscale.fakegithub.api.API_PREFIX` holds it, so the URLs in bodies carry it as on
    GHES (``Link`` headers follow the request URL anyway). The bare prefix (``/api/v3``, no
    trailing slash) is the API root too, as on GHES, rather than a redirect.
    """

    def __init__(self, prefix: str, routes: list[BaseRoute]) -> None:
        self.prefix = prefix
        self._router = Router(routes=routes)
        self._mount = Mount(prefix, app=self._serve)

    def routes(self) -> list[BaseRoute]:
        return [Route(self.prefix, endpoint=self), self._mount]

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = API_PREFIX.set(self.prefix)
        try:
            await self._router(scope, receive, send)
        finally:
            API_PREFIX.reset(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The bare prefix, served as the prefix with its trailing slash."""
        slashed = {**scope, "path": scope["path"] + "/"}
        if "raw_path" in scope:
            slashed["raw_path"] = scope["raw_path"] + b"/"
        _, child = self._mount.matches(slashed)
        await self._mount.handle({**slashed, **child}, receive, send)


async def _graphql_not_served(request: Request) -> Response:
    """GraphQL is not simulated: say so plainly rather than a bare "Not Found"."""
    return error_response(
        ApiError(
            404,
            "Not Found: the runnerscale simulator serves only GitHub's REST API, at / and at "
            f"{GHES_PREFIX}/ (GitHub Enterprise Server's layout); GraphQL is not simulated.",
        ),
        _request_id(request),
    )


def _request_id(request: Request) -> dict[str, str]:
    """An answer matching no operation still carries a request id, as every GitHub answer."""
    sim: Simulator = request.app.state.sim
    return {"x-github-request-id": sim.request_ids.next()}


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(not_found(), _request_id(request))


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(404, "Not Found"), _request_id(request))


def create_app(sim: Simulator) -> Starlette:
    """The ASGI application serving ``sim``; run it with uvicorn or call it in-process."""
    routes = api_routes()
    app = Starlette(
        routes=[
            *PrefixedApi(GHES_PREFIX, routes).routes(),
            *(Route(path, _graphql_not_served, methods=_ALL_METHODS) for path in GRAPHQL_PATHS),
            *routes,
            *control.routes(),
            *runner_protocol.routes(),
            *actions_service.routes(),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
    app.state.sim = sim
    return app
