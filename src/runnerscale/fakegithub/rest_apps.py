"""The GitHub App over REST: its installations (JWT), installation access tokens, and the
repositories an installation reaches, with the permissions a caller has on a repository."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.api import (
    ORG,
    REPO,
    Reply,
    Simulator,
    int_param,
    operation,
    paginate,
    read_json,
)
from runnerscale.fakegithub.auth import Caller, CallerKind
from runnerscale.fakegithub.entities import OwnerType, Repo


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


def routes() -> list[Route]:
    """The App's own operations (JWT) and the installation's repository list."""
    return [
        operation(
            "GET", "/app/installations", "apps/list-installations", list_installations, "app"
        ),
        operation(
            "POST",
            "/app/installations/{installation_id}/access_tokens",
            "apps/create-installation-access-token",
            create_installation_token,
            "app",
        ),
        operation(
            "GET", f"{ORG}/installation", "apps/get-org-installation", org_installation, "app"
        ),
        operation(
            "GET", f"{REPO}/installation", "apps/get-repo-installation", repo_installation, "app"
        ),
        operation(
            "GET",
            "/installation/repositories",
            "apps/list-repos-accessible-to-installation",
            installation_repositories,
            "installation",
        ),
    ]
