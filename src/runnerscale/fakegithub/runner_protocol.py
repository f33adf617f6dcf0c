"""The runner protocol under ``/_sim/runner/``: what ``runnerscale sim-runner`` speaks in
place of the official runner's (register with a token, connect with a JIT credential,
long-poll for a job, heartbeat, complete, disconnect)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    ValidationError,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.fakegithub.api import (
    JSON,
    Simulator,
    StrictBody,
    int_param,
    read_json,
    validation_failure,
)
from runnerscale.fakegithub.control import control_endpoint
from runnerscale.fakegithub.entities import Conclusion, Job
from runnerscale.fakegithub.world import ApiError

#: The longest a runner's job poll is held open (seconds).
MAX_LONG_POLL = 50.0


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


class CompleteRequest(StrictBody):
    conclusion: Literal["success", "failure", "cancelled", "skipped"]


async def runner_complete(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        parsed = CompleteRequest.model_validate(body)
    except ValidationError as error:
        raise validation_failure(error) from None
    sim.world.runner_complete(
        _credential(request), int_param(request, "job_id"), Conclusion(parsed.conclusion)
    )
    return Response(status_code=204)


async def runner_disconnect(sim: Simulator, request: Request) -> Response:
    sim.world.runner_disconnect(_credential(request))
    return Response(status_code=204)


class RegisterRequest(StrictBody):
    token: str
    name: str = Field(min_length=1)
    labels: list[str] = Field(min_length=1, max_length=100)
    ephemeral: bool = False


async def runner_register(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        parsed = RegisterRequest.model_validate(body)
    except ValidationError as error:
        raise validation_failure(error) from None
    runner, encoded = sim.world.register_with_token(
        parsed.token, parsed.name, parsed.labels, ephemeral=parsed.ephemeral
    )
    return JSONResponse({"runner_id": runner.id, "encoded_config": encoded}, status_code=201)


def routes() -> list[Route]:
    """The runner protocol, under ``/_sim/runner/``."""
    return [
        Route("/_sim/runner/register", control_endpoint(runner_register), methods=["POST"]),
        Route("/_sim/runner/connect", control_endpoint(runner_connect), methods=["POST"]),
        Route("/_sim/runner/job", control_endpoint(runner_next_job), methods=["GET"]),
        Route(
            "/_sim/runner/jobs/{job_id}/heartbeat",
            control_endpoint(runner_heartbeat),
            methods=["POST"],
        ),
        Route(
            "/_sim/runner/jobs/{job_id}/complete",
            control_endpoint(runner_complete),
            methods=["POST"],
        ),
        Route("/_sim/runner/disconnect", control_endpoint(runner_disconnect), methods=["POST"]),
    ]
