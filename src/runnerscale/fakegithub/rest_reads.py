"""The reads clients make first: the API root, accounts, the App, repositories and downloads.

Octokit, PyGithub, ``gh`` and other autoscalers ask for these before (or instead of) the runner
operations: ``GET /`` to find the API, ``GET /user`` or ``GET /app`` to learn who they are,
``GET /repos/{owner}/{repo}`` or ``GET /orgs/{org}`` to check a target exists and what they
may do there, ``.../runners/downloads`` to fetch a runner, a workflow run or a runner group
by id. They all go through :func:`runnerscale.fakegithub.api.serve`, so authentication, rate limits,
faults and ``ETag``\\ s work as everywhere else.

Who may read what, as on GitHub: the API root, accounts and organisations are public (anyone,
even anonymous, though only an organisation's owner sees its plan and settings); a private
repository is a 404 to anyone who cannot see it (anonymous callers, the App's JWT, another
owner's installation); ``GET /user`` is for a personal access token, whose user is
``WorldSettings.token_user`` (an installation token gets GitHub's 403 "Resource not accessible
by integration"); ``GET /app`` is for the App's JWT.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.api import (
    ORG,
    REPO,
    Reply,
    Simulator,
    enum_param,
    error_response,
    int_param,
    operation,
    paginate,
)
from runnerscale.fakegithub.auth import Caller, CallerKind
from runnerscale.fakegithub.entities import RUNNER_VERSION, Owner, Repo, RunnerGroup
from runnerscale.fakegithub.ratelimit import RESOURCE_LIMITS
from runnerscale.fakegithub.rest_apps import repository_permissions
from runnerscale.fakegithub.world import DEFAULT_GROUP_ID, ApiError, not_found

#: Where github.com keeps runner releases; the downloads list points there on the simulator.
RUNNER_RELEASES = "/actions/runner/releases/download/{tag}/{filename}"


def _repo(sim: Simulator, request: Request) -> Repo:
    return sim.world.repo(request.path_params["owner"], request.path_params["repo"])


def _repo_counts(sim: Simulator, owner: Owner) -> tuple[int, int]:
    """How many public and private repositories ``owner`` has."""
    repos = sim.world.repos_of(owner)
    private = sum(1 for repo in repos if repo.private)
    return len(repos) - private, private


def _classic_without(caller: Caller, scopes: set[str]) -> bool:
    """Whether ``caller`` is a classic token with none of ``scopes`` (a fine-grained one is
    never short of a scope in the simulator)."""
    return caller.scopes is not None and not caller.scopes & scopes


def _can_see(caller: Caller, repo: Repo) -> bool:
    """Whether ``caller`` may see ``repo``: anyone a public one; a private one only the
    token's user (who owns everything) and the installation on the repository's owner."""
    if not repo.private or caller.kind is CallerKind.TOKEN:
        return True
    return (
        caller.kind is CallerKind.INSTALLATION
        and caller.owner_login is not None
        and caller.owner_login.lower() == repo.owner.login.lower()
    )


async def api_root(sim: Simulator, request: Request, caller: Caller) -> Reply:
    return Reply(200, shapes.api_root(sim.urls))


async def get_repo(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """A repository the caller cannot see is a 404, as GitHub hides private repositories."""
    repo = _repo(sim, request)
    if not _can_see(caller, repo):
        raise not_found()
    permissions = repository_permissions(sim, caller, repo)
    return Reply(200, shapes.full_repository(repo, sim.urls, permissions=permissions))


async def get_org(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """The token's user owns every organisation, so a personal access token sees the owner's
    fields (a classic one only with ``admin:org``, as GitHub says); the App has no
    organisation-administration permission, so its installations (like anonymous callers)
    see the public profile."""
    owner = sim.world.org(request.path_params["org"])
    public, private = _repo_counts(sim, owner)
    body = shapes.organization_full(
        owner,
        sim.urls,
        public_repos=public,
        private_repos=private,
        admin=caller.kind is CallerKind.TOKEN and not _classic_without(caller, {"admin:org"}),
    )
    return Reply(200, body)


async def get_user(sim: Simulator, request: Request, caller: Caller) -> Reply:
    owner = sim.world.account(request.path_params["username"])
    public, _ = _repo_counts(sim, owner)
    return Reply(200, shapes.public_user(owner, sim.urls, public_repos=public))


async def get_authenticated_user(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """The private profile, except to a classic token without ``user`` or ``read:user``,
    which GitHub answers with the public one."""
    owner = sim.world.token_user()
    public, private = _repo_counts(sim, owner)
    if _classic_without(caller, {"user", "read:user"}):
        return Reply(200, shapes.public_user(owner, sim.urls, public_repos=public))
    body = shapes.private_user(owner, sim.urls, public_repos=public, private_repos=private)
    return Reply(200, body)


async def get_app(sim: Simulator, request: Request, caller: Caller) -> Reply:
    app_id = sim.auth.app_id
    assert app_id is not None  # only the App's JWT gets here
    body = shapes.integration(
        app_id,
        sim.world.settings.app_slug,
        sim.world.token_user(),
        sim.urls,
        created_at=sim.world.created_at,
        installations=len(sim.world.installations),
    )
    return Reply(200, body)


async def get_run(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """``exclude_pull_requests`` changes nothing: simulated runs have no pull requests."""
    run = sim.world.run_in(_repo(sim, request), int_param(request, "run_id"))
    return Reply(200, shapes.workflow_run(run, *sim.world.run_status(run), sim.urls))


async def list_runner_applications(sim: Simulator, request: Request, caller: Caller) -> Reply:
    if "org" in request.path_params:
        sim.world.org(request.path_params["org"])
    else:
        _repo(sim, request)
    return Reply(200, shapes.runner_applications(RUNNER_VERSION, sim.urls))


def _group(sim: Simulator, request: Request) -> tuple[str, RunnerGroup]:
    """The organisation's login and its runner group the path names; 404 when unknown."""
    org = sim.world.org(request.path_params["org"]).login
    group_id = int_param(request, "runner_group_id")
    for group in sim.world.groups_of(org):
        if group.id == group_id:
            return org, group
    raise not_found()


async def get_runner_group(sim: Simulator, request: Request, caller: Caller) -> Reply:
    org, group = _group(sim, request)
    return Reply(200, shapes.runner_group(group, org, sim.urls))


async def list_runners_in_group(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """The organisation's runners in the group (a runner without one is in the default)."""
    org, group = _group(sim, request)
    runners = [
        runner
        for runner in sim.world.runners_in(org)
        if (runner.runner_group.id if runner.runner_group else DEFAULT_GROUP_ID) == group.id
    ]
    page, links = paginate(request, runners)
    body = shapes.paginated("runners", [shapes.runner(r) for r in page], len(runners))
    return Reply(200, body, links)


async def runner_download(request: Request) -> Response:
    """A runner download URL from the list: the simulator serves no runner binaries (its
    runner is ``runnerscale sim-runner``), and says so instead of a bare "Not Found"."""
    return error_response(
        ApiError(
            404,
            "Not Found: the runnerscale simulator serves no runner application; start "
            "`runnerscale sim-runner --jitconfig ...` where you would start the official runner.",
        )
    )


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


def routes() -> list[BaseRoute]:
    """These reads by ``operationId``, plus the (empty) runner download location."""
    groups = f"{ORG}/actions/runner-groups/{{runner_group_id}}"
    return [
        operation("GET", "/", "meta/root", api_root, "any"),
        operation("GET", "/user", "users/get-authenticated", get_authenticated_user, "pat"),
        operation("GET", "/users/{username}", "users/get-by-username", get_user, "any"),
        operation("GET", "/app", "apps/get-authenticated", get_app, "app"),
        operation("GET", ORG, "orgs/get", get_org, "any"),
        operation("GET", REPO, "repos/get", get_repo, "any"),
        operation("GET", f"{REPO}/actions/runs/{{run_id}}", "actions/get-workflow-run", get_run),
        operation(
            "GET",
            f"{REPO}/actions/runners/downloads",
            "actions/list-runner-applications-for-repo",
            list_runner_applications,
        ),
        operation(
            "GET",
            f"{ORG}/actions/runners/downloads",
            "actions/list-runner-applications-for-org",
            list_runner_applications,
        ),
        operation("GET", groups, "actions/get-self-hosted-runner-group-for-org", get_runner_group),
        operation(
            "GET",
            f"{groups}/runners",
            "actions/list-self-hosted-runners-in-group-for-org",
            list_runners_in_group,
        ),
        operation("GET", f"{ORG}/repos", "repos/list-for-org", list_org_repos),
        operation("GET", "/rate_limit", "rate-limit/get", rate_limit, "any"),
        Route(RUNNER_RELEASES, runner_download, methods=["GET", "HEAD"]),
    ]
