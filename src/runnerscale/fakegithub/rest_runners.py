"""Self-hosted runners and runner groups over REST, at repository, organisation and
enterprise level: list, get, delete, labels, JIT configurations, registration and remove
tokens. The three levels share one set of handlers; a path's parameters name the scope."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.api import (
    ENTERPRISE,
    ORG,
    REPO,
    AuthMode,
    Handler,
    Reply,
    Simulator,
    int_param,
    operation,
    paginate,
    read_json,
)
from runnerscale.fakegithub.auth import Caller
from runnerscale.fakegithub.entities import Runner


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


def _runner_routes(
    prefix: str, level: str, *, tag: str = "actions", auth: AuthMode = "token"
) -> list[Route]:
    """The self-hosted runner operations, identical at repository, organisation and enterprise
    level. GitHub files the enterprise ones under ``enterprise-admin/`` (``tag``), except
    ``generate-jitconfig``, which is ``actions/`` at every level."""
    runners = f"{prefix}/actions/runners"
    one = f"{runners}/{{runner_id}}"
    return [
        operation(
            "GET", runners, f"{tag}/list-self-hosted-runners-for-{level}", list_runners, auth
        ),
        operation(
            "POST",
            f"{runners}/generate-jitconfig",
            f"actions/generate-runner-jitconfig-for-{level}",
            generate_jitconfig,
            auth,
        ),
        operation(
            "POST",
            f"{runners}/registration-token",
            f"{tag}/create-registration-token-for-{level}",
            _token_handler("registration"),
            auth,
        ),
        operation(
            "POST",
            f"{runners}/remove-token",
            f"{tag}/create-remove-token-for-{level}",
            _token_handler("remove"),
            auth,
        ),
        operation("GET", one, f"{tag}/get-self-hosted-runner-for-{level}", get_runner, auth),
        operation(
            "DELETE", one, f"{tag}/delete-self-hosted-runner-from-{level}", delete_runner, auth
        ),
        operation(
            "GET",
            f"{one}/labels",
            f"{tag}/list-labels-for-self-hosted-runner-for-{level}",
            list_labels,
            auth,
        ),
        operation(
            "POST",
            f"{one}/labels",
            f"{tag}/add-custom-labels-to-self-hosted-runner-for-{level}",
            add_labels,
            auth,
        ),
    ]


def routes() -> list[Route]:
    """The runner and runner-group operations at repository, organisation and enterprise
    level (the enterprise ones from GitHub's Enterprise Cloud description, which mirror the
    organisation ones and take a personal access token only)."""
    return [
        *_runner_routes(REPO, "repo"),
        *_runner_routes(ORG, "org"),
        operation(
            "GET",
            f"{ORG}/actions/runner-groups",
            "actions/list-self-hosted-runner-groups-for-org",
            list_runner_groups,
        ),
        *_runner_routes(ENTERPRISE, "enterprise", tag="enterprise-admin", auth="pat"),
        operation(
            "GET",
            f"{ENTERPRISE}/actions/runner-groups",
            "enterprise-admin/list-self-hosted-runner-groups-for-enterprise",
            list_enterprise_runner_groups,
            "pat",
        ),
    ]
