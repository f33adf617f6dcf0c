"""The simulator's control API under ``/_sim/``: queue jobs, create repositories, hooks,
runner groups and enterprises, inject faults, read statistics, jobs, runners and the
delivery log. Not GitHub's: unauthenticated, never rate limited, faulted or counted;
``docs/simulator.md`` documents it."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runnerscale.clock import iso8601
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.api import (
    JSON,
    Simulator,
    StrictBody,
    error_response,
    int_param,
    read_json,
    validation_failure,
)
from runnerscale.fakegithub.entities import Conclusion, Enterprise, Job, OwnerType
from runnerscale.fakegithub.faults import FaultPlan
from runnerscale.fakegithub.scalesets import ActionsError
from runnerscale.fakegithub.world import ApiError, JobSpec, WorldSettings, invalid, not_found


class JobRequest(StrictBody):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    labels: list[str] = Field(min_length=1, max_length=100)
    duration: float = Field(ge=0)
    run_id: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1)
    conclusion: Literal["success", "failure", "cancelled", "skipped"] = "success"
    environment: str | None = Field(
        None, description="an environment the job waits on: it starts 'waiting' until approved"
    )


class RepoRequest(StrictBody):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    owner_type: Literal["Organization", "User"] = "Organization"
    pushed_at: float | None = Field(
        None, ge=0, description="the last push, in epoch seconds (default: when created)"
    )


class HookRequest(StrictBody):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class RunnerGroupRequest(StrictBody):
    org: str | None = None
    enterprise: str | None = None
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_owner(self) -> RunnerGroupRequest:
        if (self.org is None) == (self.enterprise is None):
            raise ValueError("give exactly one of org and enterprise")
        return self


class EnterpriseRequest(StrictBody):
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
        raise validation_failure(error) from None


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


def control_endpoint(
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
    # Scale sets' Actions-service calls, apart from the REST calls above.
    body["actions_service"] = sim.actions_stats.public()
    return JSONResponse(body)


async def sim_get_faults(sim: Simulator, request: Request) -> Response:
    return JSONResponse(sim.faults.plan.model_dump())


async def sim_set_faults(sim: Simulator, request: Request) -> Response:
    body = await read_json(request)
    try:
        plan = FaultPlan.model_validate(body)
    except ValidationError as error:
        raise validation_failure(error) from None
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


#: The settings the control API may change while the simulator runs (the scale sets' rules
#: and assumptions, and the world's timeouts).
CHANGEABLE_SETTINGS = frozenset(
    f.name
    for f in dataclasses.fields(WorldSettings)
    if f.name not in {"server_url", "server_ca", "app_id", "app_slug", "token_user", "seed"}
)


async def sim_get_settings(sim: Simulator, request: Request) -> Response:
    return JSONResponse(
        {name: getattr(sim.world.settings, name) for name in sorted(CHANGEABLE_SETTINGS)}
    )


async def sim_set_settings(sim: Simulator, request: Request) -> Response:
    """Change settings by name (``{"zero_capacity_is_forever": false}``); unknown names
    and values of the wrong type are a 422 naming them."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "Validation Failed: the body must be an object of settings")
    defaults = WorldSettings()
    for name, value in body.items():
        if name not in CHANGEABLE_SETTINGS:
            raise invalid(
                f"unknown setting {name!r}; changeable: {', '.join(sorted(CHANGEABLE_SETTINGS))}",
                resource="Settings",
                field_name=name,
            )
        expected = type(getattr(defaults, name))
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (expected is not bool and isinstance(value, bool)):
            raise invalid(
                f"{name} must be a {expected.__name__}, got {value!r}",
                resource="Settings",
                field_name=name,
            )
    if body.get("scale_set_job_mode", "assigned") not in ("assigned", "available"):
        raise invalid(
            "scale_set_job_mode must be 'assigned' or 'available'",
            resource="Settings",
            field_name="scale_set_job_mode",
        )
    sim.world.settings = dataclasses.replace(sim.world.settings, **body)
    sim.world.dispatch()
    return await sim_get_settings(sim, request)


async def sim_list_scale_sets(sim: Simulator, request: Request) -> Response:
    records = []
    for record in sorted(sim.scale_sets.scale_sets.values(), key=lambda r: r.id):
        session = sim.scale_sets.sessions.get(record.id)
        records.append(
            {
                "id": record.id,
                "name": record.name,
                "scope": record.scope,
                "labels": record.label_names,
                "runner_group": record.group.name,
                "session_owner": session.owner if session else None,
                "max_capacity": session.max_capacity if session else None,
                "statistics": dataclasses.asdict(sim.scale_sets.statistics(record.id)),
            }
        )
    return JSONResponse(records)


async def sim_delete_scale_set(sim: Simulator, request: Request) -> Response:
    """Delete a scale set behind its listener's back (GitHub's clean-up of idle ones)."""
    try:
        sim.scale_sets.delete(None, int_param(request, "scale_set_id"))
    except ActionsError as error:
        raise ApiError(error.status, error.message) from None
    return Response(status_code=204)


def _target(request: Request) -> int | None:
    raw = request.query_params.get("scale_set_id")
    return int(raw) if raw and raw.isdigit() else None


async def sim_expire_queue_tokens(sim: Simulator, request: Request) -> Response:
    return JSONResponse({"expired": sim.scale_sets.expire_queue_tokens(_target(request))})


async def sim_drop_sessions(sim: Simulator, request: Request) -> Response:
    return JSONResponse({"dropped": sim.scale_sets.drop_sessions(_target(request))})


def routes() -> list[Route]:
    """The control API, under ``/_sim/``."""
    return [
        Route("/_sim/settings", control_endpoint(sim_get_settings), methods=["GET"]),
        Route("/_sim/settings", control_endpoint(sim_set_settings), methods=["POST"]),
        Route("/_sim/scale-sets", control_endpoint(sim_list_scale_sets), methods=["GET"]),
        Route(
            "/_sim/scale-sets/{scale_set_id}",
            control_endpoint(sim_delete_scale_set),
            methods=["DELETE"],
        ),
        Route(
            "/_sim/scale-sets/expire-queue-tokens",
            control_endpoint(sim_expire_queue_tokens),
            methods=["POST"],
        ),
        Route(
            "/_sim/scale-sets/drop-sessions",
            control_endpoint(sim_drop_sessions),
            methods=["POST"],
        ),
        Route("/_sim/jobs", control_endpoint(sim_create_jobs), methods=["POST"]),
        Route("/_sim/jobs", control_endpoint(sim_list_jobs), methods=["GET"]),
        Route("/_sim/jobs/{job_id}/approve", control_endpoint(sim_approve_job), methods=["POST"]),
        Route("/_sim/stats", control_endpoint(sim_stats), methods=["GET"]),
        Route("/_sim/faults", control_endpoint(sim_get_faults), methods=["GET"]),
        Route("/_sim/faults", control_endpoint(sim_set_faults), methods=["POST"]),
        Route("/_sim/repos", control_endpoint(sim_create_repos), methods=["POST"]),
        Route("/_sim/hooks", control_endpoint(sim_add_hook), methods=["POST"]),
        Route("/_sim/hooks", control_endpoint(sim_list_hooks), methods=["GET"]),
        Route("/_sim/deliveries", control_endpoint(sim_list_deliveries), methods=["GET"]),
        Route(
            "/_sim/deliveries/{delivery_id}/redeliver",
            control_endpoint(sim_redeliver),
            methods=["POST"],
        ),
        Route("/_sim/runner-groups", control_endpoint(sim_add_runner_group), methods=["POST"]),
        Route("/_sim/enterprises", control_endpoint(sim_create_enterprises), methods=["POST"]),
        Route("/_sim/enterprises", control_endpoint(sim_list_enterprises), methods=["GET"]),
        Route("/_sim/runners", control_endpoint(sim_list_runners), methods=["GET"]),
    ]
