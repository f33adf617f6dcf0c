"""The simulator's ASGI application: every route of every module, in one table.

Each area of the REST API lives in its own module (the runner, run and installation
operations in :mod:`runnerscale.sim.api`, which also holds the request pipeline they all go
through); this module only puts their routes together with the control API and the runner
protocol, and answers what matches none of them the way GitHub does.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from runnerscale.sim.api import (
    Simulator,
    control_routes,
    error_response,
    rest_routes,
)
from runnerscale.sim.world import ApiError, not_found


def api_routes() -> list[BaseRoute]:
    """The REST operations, by ``operationId``."""
    return [*rest_routes()]


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(not_found())


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(404, "Not Found"))


def create_app(sim: Simulator) -> Starlette:
    """The ASGI application serving ``sim``; run it with uvicorn or call it in-process."""
    app = Starlette(
        routes=[*api_routes(), *control_routes()],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
    app.state.sim = sim
    return app
