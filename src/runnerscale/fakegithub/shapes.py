"""The simulated GitHub's records rendered as the JSON bodies GitHub's REST API returns.

An autoscaler talks to GitHub through a generated client (githubkit) that parses every body
into typed models, and real GitHub answers with dozens of fields the autoscaler never reads.
If the simulator answered with only the fields we happen to use, the client's parsing, and
any code that touches other fields, would only meet reality in production. So every function
here returns a body that validates against the matching schema of GitHub's own OpenAPI
description (the contract in ``shared/github-contract/openapi-subset.json``), with URLs built
the way GitHub builds them, from the simulator's base URLs.

Pure functions: no I/O and no HTTP library, so the simulator core can use them on its virtual
clock. Status codes, pagination and headers are the HTTP layer's business.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runnerscale.clock import iso8601
from runnerscale.fakegithub.entities import (
    Conclusion,
    ExpiringToken,
    Installation,
    Job,
    JobStatus,
    Owner,
    OwnerType,
    Repo,
    Runner,
    RunnerGroup,
    RunnerLabel,
    WorkflowRun,
)

JSON = dict[str, Any]

DOCUMENTATION_URL = "https://docs.github.com/rest"

#: The resources ``GET /rate_limit`` must always report (the ``rate-limit-overview`` schema
#: requires them), with GitHub's default limit for a resource the caller does not track.
REQUIRED_RATE_LIMIT_RESOURCES: dict[str, int] = {"core": 5000, "search": 30}

#: What the simulated App may do on an organisation; on a user account GitHub has no
#: organisation-level permissions, so ``organization_self_hosted_runners`` is dropped.
ORG_INSTALLATION_PERMISSIONS: dict[str, str] = {
    "actions": "read",
    "administration": "write",
    "organization_self_hosted_runners": "write",
    "metadata": "read",
}
USER_INSTALLATION_PERMISSIONS: dict[str, str] = {
    k: v for k, v in ORG_INSTALLATION_PERMISSIONS.items() if not k.startswith("organization_")
}

# URL templates relative to a user's / repository's API URL, as GitHub renders them
# (RFC 6570 placeholders such as ``{/sha}`` are part of the value).
_USER_URLS: dict[str, str] = {
    "followers_url": "/followers",
    "following_url": "/following{/other_user}",
    "gists_url": "/gists{/gist_id}",
    "starred_url": "/starred{/owner}{/repo}",
    "subscriptions_url": "/subscriptions",
    "organizations_url": "/orgs",
    "repos_url": "/repos",
    "events_url": "/events{/privacy}",
    "received_events_url": "/received_events",
}
_REPO_URLS: dict[str, str] = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


@dataclass(frozen=True)
class Urls:
    """Where the simulator serves the API (``api``) and its web pages (``web``).

    No trailing slash. ``url``/``*_url`` fields are built from ``api``, ``html_url`` (and the
    clone URLs, which live on GitHub's web host) from ``web``.
    """

    api: str
    web: str


def _node_id(prefix: str, *numbers: int) -> str:
    """A GraphQL node id in GitHub's current format, deterministic from database ids.

    GitHub's "next" ids are ``<type>_<base64url(msgpack([0, *ids]))>`` (e.g. ``R_kgDO…`` for a
    repository, ``CR_kwDO…`` for a check run); clients treat them as opaque strings.
    """
    packed = bytes([0x90 | (len(numbers) + 1), 0x00])
    for n in numbers:
        if n < 0x80:
            packed += bytes([n])
        elif n <= 0xFF:
            packed += b"\xcc" + n.to_bytes(1, "big")
        elif n <= 0xFFFF:
            packed += b"\xcd" + n.to_bytes(2, "big")
        elif n <= 0xFFFF_FFFF:
            packed += b"\xce" + n.to_bytes(4, "big")
        else:
            packed += b"\xcf" + n.to_bytes(8, "big")
    return f"{prefix}_{base64.urlsafe_b64encode(packed).rstrip(b'=').decode()}"


def _optional_time(epoch: float | None) -> str | None:
    return None if epoch is None else iso8601(epoch)


def simple_user(owner: Owner, urls: Urls) -> JSON:
    """An account as GitHub embeds it (repository owner, installation account, run actor)."""
    api = f"{urls.api}/users/{owner.login}"
    prefix = "O" if owner.type is OwnerType.ORGANIZATION else "U"
    return {
        "login": owner.login,
        "id": owner.id,
        "node_id": _node_id(prefix, owner.id),
        "avatar_url": f"{urls.api}/avatars/u/{owner.id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.web}/{owner.login}",
        **{key: api + suffix for key, suffix in _USER_URLS.items()},
        "type": owner.type.value,
        "user_view_type": "public",
        "site_admin": False,
    }


def minimal_repository(
    repo: Repo, urls: Urls, *, permissions: dict[str, bool] | None = None
) -> JSON:
    """A repository as listed by ``GET /orgs/{org}/repos`` and embedded in workflow runs.

    It carries every field the full ``repository`` shape requires, as GitHub's own listings
    do; :func:`repository` only adds the merge settings. ``permissions`` are the caller's
    (:func:`repository_permissions`): listings carry them, embedded copies do not.
    """
    api = f"{urls.api}/repos/{repo.full_name}"
    web = f"{urls.web}/{repo.full_name}"
    host = urlsplit(urls.web).hostname or "localhost"
    created = iso8601(repo.created_at)
    return {
        "id": repo.id,
        "node_id": _node_id("R", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": simple_user(repo.owner, urls),
        "private": repo.private,
        "html_url": web,
        "description": None,
        "fork": False,
        "url": api,
        **{key: api + suffix for key, suffix in _REPO_URLS.items()},
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "clone_url": f"{web}.git",
        "svn_url": web,
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": "main",
        "open_issues_count": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": True,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "pushed_at": iso8601(repo.pushed_at),
        "created_at": created,
        "updated_at": created,
        "allow_forking": not repo.private,
        "web_commit_signoff_required": False,
        "delete_branch_on_merge": False,
        "license": None,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        **({} if permissions is None else {"permissions": dict(permissions)}),
    }


def repository(repo: Repo, urls: Urls, *, permissions: dict[str, bool] | None = None) -> JSON:
    """The full ``repository`` shape (installation repository listings, token bodies)."""
    return {
        **minimal_repository(repo, urls, permissions=permissions),
        "allow_rebase_merge": True,
        "allow_squash_merge": True,
        "allow_merge_commit": True,
        "allow_auto_merge": False,
        "allow_update_branch": False,
        "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
        "squash_merge_commit_message": "COMMIT_MESSAGES",
        "merge_commit_title": "MERGE_MESSAGE",
        "merge_commit_message": "PR_TITLE",
    }


def installation(inst: Installation, app_id: int, app_slug: str, urls: Urls) -> JSON:
    """The simulated App's installation on one account, installed on all its repositories."""
    owner = inst.owner
    is_org = owner.type is OwnerType.ORGANIZATION
    settings = f"organizations/{owner.login}/settings" if is_org else "settings"
    created = iso8601(inst.created_at)
    return {
        "id": inst.id,
        "account": simple_user(owner, urls),
        "repository_selection": "all",
        "access_tokens_url": f"{urls.api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{urls.api}/installation/repositories",
        "html_url": f"{urls.web}/{settings}/installations/{inst.id}",
        "app_id": app_id,
        "app_slug": app_slug,
        "client_id": app_client_id(app_id),
        "target_id": owner.id,
        "target_type": owner.type.value,
        "permissions": dict(
            ORG_INSTALLATION_PERMISSIONS if is_org else USER_INSTALLATION_PERMISSIONS
        ),
        "events": ["workflow_job"],
        "created_at": created,
        "updated_at": created,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def installation_token(token: ExpiringToken, permissions: dict[str, str]) -> JSON:
    """The body of ``POST /app/installations/{id}/access_tokens``."""
    return {
        "token": token.token,
        "expires_at": iso8601(token.expires_at),
        "permissions": dict(permissions),
        "repository_selection": "all",
    }


# ------------------------------------------------------------ the reads clients make first
# The API root, accounts, the App itself, full repositories and the runner downloads: what
# Octokit, PyGithub, ``gh`` and other autoscalers ask for before anything else.

#: The plan every simulated account is on (GitHub Free's values).
_FREE_PLAN_SPACE = 976_562_499
_FREE_PLAN_PRIVATE_REPOS = 10_000

#: The platforms GitHub publishes the runner application for, as ``(os, architecture)``.
RUNNER_PLATFORMS: tuple[tuple[str, str], ...] = (
    ("osx", "x64"),
    ("osx", "arm64"),
    ("linux", "x64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("win", "x64"),
    ("win", "arm64"),
)

# The API root's URL templates, relative to the API URL (``_ROOT_WEB_URLS``: the web URL).
_SEARCH = "{&page,per_page,sort,order}"
_ROOT_API_URLS: dict[str, str] = {
    "current_user_url": "/user",
    "authorizations_url": "/authorizations",
    "code_search_url": f"/search/code?q={{query}}{_SEARCH}",
    "commit_search_url": f"/search/commits?q={{query}}{_SEARCH}",
    "emails_url": "/user/emails",
    "emojis_url": "/emojis",
    "events_url": "/events",
    "feeds_url": "/feeds",
    "followers_url": "/user/followers",
    "following_url": "/user/following{/target}",
    "gists_url": "/gists{/gist_id}",
    "hub_url": "/hub",
    "issue_search_url": f"/search/issues?q={{query}}{_SEARCH}",
    "issues_url": "/issues",
    "keys_url": "/user/keys",
    "label_search_url": "/search/labels?q={query}&repository_id={repository_id}{&page,per_page}",
    "notifications_url": "/notifications",
    "organization_url": "/orgs/{org}",
    "organization_repositories_url": "/orgs/{org}/repos{?type,page,per_page,sort}",
    "organization_teams_url": "/orgs/{org}/teams",
    "public_gists_url": "/gists/public",
    "rate_limit_url": "/rate_limit",
    "repository_url": "/repos/{owner}/{repo}",
    "repository_search_url": f"/search/repositories?q={{query}}{_SEARCH}",
    "current_user_repositories_url": "/user/repos{?type,page,per_page,sort}",
    "starred_url": "/user/starred{/owner}{/repo}",
    "starred_gists_url": "/gists/starred",
    "topic_search_url": "/search/topics?q={query}{&page,per_page}",
    "user_url": "/users/{user}",
    "user_organizations_url": "/user/orgs",
    "user_repositories_url": "/users/{user}/repos{?type,page,per_page,sort}",
    "user_search_url": f"/search/users?q={{query}}{_SEARCH}",
}
_ROOT_WEB_URLS: dict[str, str] = {
    "current_user_authorizations_html_url": "/settings/connections/applications{/client_id}",
}


def api_root(urls: Urls) -> JSON:
    """``GET /``: GitHub's URL templates (all of ``api.github.com``'s, including the
    ``authorizations_url`` and ``hub_url`` the 2022-11-28 API version still lists), pointing
    at the simulator. Only some of those URLs are served by the simulator."""
    return {
        **{key: urls.api + path for key, path in _ROOT_API_URLS.items()},
        **{key: urls.web + path for key, path in _ROOT_WEB_URLS.items()},
    }


def app_client_id(app_id: int) -> str:
    """The App's OAuth client id: GitHub's older ``Iv1.`` + 16 hex digits form, derived from
    the App id so it is stable across runs."""
    digest = hashlib.sha256(f"runnerscale-app:{app_id}".encode()).hexdigest()
    return f"Iv1.{digest[:16]}"


def repository_permissions(app_permissions: dict[str, str] | None) -> dict[str, bool]:
    """The caller's ``permissions`` on a repository it can see.

    ``None`` stands for the token's user, who owns (administers) everything in the simulator.
    For an App installation they follow its permissions (GitHub does not document the
    mapping): ``administration: write`` gives ``admin`` and ``maintain``, ``contents: write``
    gives ``push`` and ``triage``, and whoever sees a repository may ``pull`` it; ``{}`` (a
    public repository outside the installation) gives ``pull`` only.
    """
    if app_permissions is None:
        return dict.fromkeys(("admin", "maintain", "push", "triage", "pull"), True)
    admin = app_permissions.get("administration") == "write"
    push = app_permissions.get("contents") == "write"
    return {
        "admin": admin,
        "maintain": admin,
        "push": push,
        "triage": push,
        "pull": True,
    }


def full_repository(repo: Repo, urls: Urls, *, permissions: dict[str, bool] | None) -> JSON:
    """``GET /repos/{owner}/{repo}``: the repository with its counts, its organisation (when
    an organisation owns it) and the caller's permissions (none for an anonymous caller)."""
    body: JSON = {
        **repository(repo, urls, permissions=permissions),
        "network_count": 0,
        "subscribers_count": 0,
        "custom_properties": {},
    }
    if repo.owner.type is OwnerType.ORGANIZATION:
        body["organization"] = simple_user(repo.owner, urls)
    return body


def _account_counts(public_repos: int) -> JSON:
    return {"public_repos": public_repos, "public_gists": 0, "followers": 0, "following": 0}


def public_user(owner: Owner, urls: Urls, *, public_repos: int) -> JSON:
    """``GET /users/{username}``: an account's public profile (an organisation's too, which
    GitHub also serves there, with ``type: Organization``). No profile field is set."""
    created = iso8601(owner.created_at)
    return {
        **simple_user(owner, urls),
        "name": None,
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        **_account_counts(public_repos),
        "created_at": created,
        "updated_at": created,
    }


def private_user(owner: Owner, urls: Urls, *, public_repos: int, private_repos: int) -> JSON:
    """``GET /user``: the token's user with the private fields a classic token with the
    ``user`` scope sees, on GitHub Free."""
    return {
        **public_user(owner, urls, public_repos=public_repos),
        "user_view_type": "private",
        "private_gists": 0,
        "total_private_repos": private_repos,
        "owned_private_repos": private_repos,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": True,
        "plan": {
            "name": "free",
            "space": _FREE_PLAN_SPACE,
            "private_repos": _FREE_PLAN_PRIVATE_REPOS,
            "collaborators": 0,
        },
    }


def organization_full(
    owner: Owner, urls: Urls, *, public_repos: int, private_repos: int, admin: bool
) -> JSON:
    """``GET /orgs/{org}``. Everyone sees the profile; an owner of the organisation (``admin``)
    also sees its counts, plan and member settings, which are GitHub's defaults for a new
    organisation. ``company``, ``blog``, ``location`` and ``email`` are unset, so left out
    (the contract does not let them be null)."""
    api = f"{urls.api}/orgs/{owner.login}"
    created = iso8601(owner.created_at)
    body: JSON = {
        "login": owner.login,
        "id": owner.id,
        "node_id": _node_id("O", owner.id),
        "url": api,
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events",
        "hooks_url": f"{api}/hooks",
        "issues_url": f"{api}/issues",
        "members_url": f"{api}/members{{/member}}",
        "public_members_url": f"{api}/public_members{{/member}}",
        "avatar_url": simple_user(owner, urls)["avatar_url"],
        "description": None,
        "name": owner.login,
        "twitter_username": None,
        "is_verified": False,
        "has_organization_projects": True,
        "has_repository_projects": True,
        **_account_counts(public_repos),
        "html_url": f"{urls.web}/{owner.login}",
        "type": "Organization",
        "created_at": created,
        "updated_at": created,
        "archived_at": None,
    }
    if not admin:
        return body
    enterprise = owner.enterprise is not None
    return {
        **body,
        "total_private_repos": private_repos,
        "owned_private_repos": private_repos,
        "private_gists": 0,
        "disk_usage": 0,
        "collaborators": 0,
        "billing_email": None,
        "plan": {
            "name": "enterprise" if enterprise else "free",
            "space": _FREE_PLAN_SPACE,
            "private_repos": _FREE_PLAN_PRIVATE_REPOS,
            "filled_seats": 1,
            "seats": 1 if enterprise else 0,
        },
        "default_repository_permission": "read",
        "default_repository_branch": "main",
        "members_can_create_repositories": True,
        "two_factor_requirement_enabled": False,
        "members_allowed_repository_creation_type": "all",
        "members_can_create_public_repositories": True,
        "members_can_create_private_repositories": True,
        "members_can_create_internal_repositories": enterprise,
        "members_can_create_pages": True,
        "members_can_create_public_pages": True,
        "members_can_create_private_pages": True,
        "members_can_delete_repositories": True,
        "members_can_change_repo_visibility": True,
        "members_can_invite_outside_collaborators": True,
        "members_can_delete_issues": False,
        "display_commenter_full_name_setting_enabled": False,
        "readers_can_create_discussions": True,
        "members_can_create_teams": True,
        "members_can_view_dependency_insights": True,
        "members_can_fork_private_repositories": False,
        "web_commit_signoff_required": False,
        "advanced_security_enabled_for_new_repositories": False,
        "dependabot_alerts_enabled_for_new_repositories": False,
        "dependabot_security_updates_enabled_for_new_repositories": False,
        "dependency_graph_enabled_for_new_repositories": False,
        "secret_scanning_enabled_for_new_repositories": False,
        "secret_scanning_push_protection_enabled_for_new_repositories": False,
        "secret_scanning_push_protection_custom_link_enabled": False,
        "secret_scanning_push_protection_custom_link": None,
        "deploy_keys_enabled_for_repositories": True,
    }


def integration(
    app_id: int, app_slug: str, owner: Owner, urls: Urls, *, created_at: float, installations: int
) -> JSON:
    """``GET /app``: the simulated App, owned by ``owner``, with every permission and event
    its installations have (:data:`ORG_INSTALLATION_PERMISSIONS`, ``workflow_job``)."""
    created = iso8601(created_at)
    return {
        "id": app_id,
        "slug": app_slug,
        "node_id": _node_id("A", app_id),
        "client_id": app_client_id(app_id),
        "owner": simple_user(owner, urls),
        "name": app_slug.replace("-", " ").title(),
        "description": None,
        "external_url": urls.web,
        "html_url": f"{urls.web}/apps/{app_slug}",
        "created_at": created,
        "updated_at": created,
        "permissions": dict(ORG_INSTALLATION_PERMISSIONS),
        "events": ["workflow_job"],
        "installations_count": installations,
    }


def runner_download_url(urls: Urls, version: str, filename: str) -> str:
    """Where ``filename`` would be: github.com's release path, on the simulator's web URL."""
    return f"{urls.web}/actions/runner/releases/download/v{version}/{filename}"


def runner_applications(version: str, urls: Urls) -> list[JSON]:
    """``GET .../actions/runners/downloads``: the runner application for each platform, named
    as GitHub names its releases, at :func:`runner_download_url`, where the simulator serves
    nothing (its runner is ``runnerscale sim-runner``), so there is no checksum either."""
    applications = []
    for os_name, architecture in RUNNER_PLATFORMS:
        extension = "zip" if os_name == "win" else "tar.gz"
        filename = f"actions-runner-{os_name}-{architecture}-{version}.{extension}"
        applications.append(
            {
                "os": os_name,
                "architecture": architecture,
                "download_url": runner_download_url(urls, version, filename),
                "filename": filename,
            }
        )
    return applications


def authentication_token(token: ExpiringToken) -> JSON:
    """A runner registration or remove token."""
    return {"token": token.token, "expires_at": iso8601(token.expires_at)}


def runner_label(label: RunnerLabel) -> JSON:
    return {"id": label.id, "name": label.name, "type": label.type}


def runner(r: Runner) -> JSON:
    """A self-hosted runner; ``version`` is only known once the runner has connected."""
    body: JSON = {
        "id": r.id,
        "name": r.name,
        "os": r.os,
        "status": "online" if r.connected else "offline",
        "busy": r.busy,
        "ephemeral": r.ephemeral,
        "version": r.version if r.last_seen is not None else None,
        "labels": [runner_label(label) for label in r.labels],
    }
    if r.runner_group is not None:
        body["runner_group_id"] = r.runner_group.id
    return body


def runner_group(group: RunnerGroup, org: str, urls: Urls) -> JSON:
    """An organisation runner group open to all of the organisation's private repositories."""
    return _runner_group(group, f"{urls.api}/orgs/{org}/actions/runner-groups/{group.id}")


def enterprise_runner_group(group: RunnerGroup, enterprise: str, urls: Urls) -> JSON:
    """An enterprise runner group open to all of the enterprise's organisations.

    It has the organisation group's fields (GitHub's ``runner-groups-enterprise`` is a subset
    of them, apart from ``selected_organizations_url``, which is added), so one client model
    reads both.
    """
    base = f"{urls.api}/enterprises/{enterprise}/actions/runner-groups/{group.id}"
    return {**_runner_group(group, base), "selected_organizations_url": f"{base}/organizations"}


def _runner_group(group: RunnerGroup, base: str) -> JSON:
    return {
        "id": group.id,
        "name": group.name,
        "visibility": "all",
        "default": group.default,
        "runners_url": f"{base}/runners",
        "hosted_runners_url": f"{base}/hosted-runners",
        "inherited": False,
        "allows_public_repositories": False,
        "restricted_to_workflows": False,
        "selected_workflows": [],
        "workflow_restrictions_read_only": False,
    }


def _step(
    number: int, name: str, conclusion: str | None, started: float, completed: float | None
) -> JSON:
    """One step; it is still running while it has no completion time."""
    return {
        "name": name,
        "status": "in_progress" if completed is None else "completed",
        "conclusion": conclusion,
        "number": number,
        "started_at": iso8601(started),
        "completed_at": _optional_time(completed),
    }


def _steps(job: Job) -> list[JSON]:
    """Plausible steps: none before a runner takes the job (or if it never ran), one running
    step while it runs, and set-up / run / complete steps once it has finished."""
    if job.started_at is None or job.status in (JobStatus.QUEUED, JobStatus.WAITING):
        return []
    started = job.started_at
    if job.status is JobStatus.IN_PROGRESS:
        return [_step(1, "Set up job", None, started, None)]
    if job.conclusion is None or job.conclusion is Conclusion.SKIPPED:
        return []
    end = max(started, job.completed_at if job.completed_at is not None else started)
    set_up_done = min(started + 1, end)
    return [
        _step(1, "Set up job", "success", started, set_up_done),
        _step(2, f"Run {job.name}", job.conclusion.value, set_up_done, end),
        _step(3, "Complete job", "success", end, end),
    ]


def job(job: Job, urls: Urls) -> JSON:
    """A workflow job. GitHub reports ``started_at`` even for queued jobs (as the creation
    time), and the schema makes it a required, non-null string, so we do the same."""
    run = job.run
    full_name = run.repo.full_name
    api = f"{urls.api}/repos/{full_name}"
    return {
        "id": job.id,
        "run_id": run.id,
        "run_url": f"{api}/actions/runs/{run.id}",
        "run_attempt": job.run_attempt,
        "node_id": _node_id("CR", run.repo.id, job.id),
        "head_sha": run.head_sha,
        "head_branch": run.head_branch,
        "url": f"{api}/actions/jobs/{job.id}",
        "html_url": f"{urls.web}/{full_name}/actions/runs/{run.id}/job/{job.id}",
        "status": job.status.value,
        "conclusion": None if job.conclusion is None else job.conclusion.value,
        "created_at": iso8601(job.created_at),
        "started_at": iso8601(job.started_at if job.started_at is not None else job.created_at),
        "completed_at": _optional_time(job.completed_at),
        "name": job.name,
        "steps": _steps(job),
        "check_run_url": f"{api}/check-runs/{job.id}",
        "labels": list(job.labels),
        "runner_id": job.runner_id,
        "runner_name": job.runner_name,
        "runner_group_id": job.runner_group_id,
        "runner_group_name": job.runner_group_name,
        "workflow_name": run.name,
    }


def check_annotations(job: Job, urls: Urls) -> list[JSON]:
    """The annotations on a job's check run (a job's id is its check run's). GitHub says why
    it failed a job other than by its steps (lost communication with a runner, a queue
    timeout) only here, as one ``failure`` annotation on the workflow folder."""
    if job.failure_reason is None:
        return []
    run = job.run
    return [
        {
            "path": ".github",
            "blob_href": f"{urls.web}/{run.repo.full_name}/blob/{run.head_sha}/.github",
            "start_line": 1,
            "end_line": 1,
            "start_column": None,
            "end_column": None,
            "annotation_level": "failure",
            "title": "",
            "message": job.failure_reason,
            "raw_details": "",
        }
    ]


def _workflow_path(run: WorkflowRun) -> str:
    """The workflow file a run comes from, named after the workflow (``CI`` -> ``ci.yml``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", run.name.lower()).strip("-") or "ci"
    return f".github/workflows/{slug}.yml"


def workflow_run(run: WorkflowRun, status: str, conclusion: str | None, urls: Urls) -> JSON:
    """A workflow run. Its status and conclusion derive from its jobs, so the caller passes
    them; the workflow id is a stable function of the repository and workflow file."""
    repo = run.repo
    api = f"{urls.api}/repos/{repo.full_name}"
    run_api = f"{api}/actions/runs/{run.id}"
    path = _workflow_path(run)
    workflow_id = zlib.crc32(f"{repo.id}:{path}".encode())
    actor = simple_user(repo.owner, urls)
    person = {
        "name": repo.owner.login,
        "email": f"{repo.owner.id}+{repo.owner.login}@users.noreply.github.com",
    }
    message = f"Update {run.name} ({run.head_sha[:7]})"
    tree_id = hashlib.sha1(f"tree:{run.head_sha}".encode(), usedforsecurity=False).hexdigest()
    head_repository = minimal_repository(repo, urls)
    return {
        "id": run.id,
        "name": run.name,
        "node_id": _node_id("WFR", repo.id, run.id),
        "check_suite_id": run.id,
        "check_suite_node_id": _node_id("CS", repo.id, run.id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": path,
        "display_title": message,
        "run_number": run.run_number,
        "run_attempt": run.run_attempt,
        "event": run.event,
        "status": status,
        "conclusion": conclusion,
        "workflow_id": workflow_id,
        "url": run_api,
        "html_url": f"{urls.web}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "referenced_workflows": [],
        "created_at": iso8601(run.created_at),
        "updated_at": iso8601(run.updated_at),
        "run_started_at": iso8601(
            run.run_started_at if run.run_started_at is not None else run.created_at
        ),
        "actor": actor,
        "triggering_actor": actor,
        "jobs_url": f"{run_api}/jobs",
        "logs_url": f"{run_api}/logs",
        "check_suite_url": f"{api}/check-suites/{run.id}",
        "artifacts_url": f"{run_api}/artifacts",
        "cancel_url": f"{run_api}/cancel",
        "rerun_url": f"{run_api}/rerun",
        "previous_attempt_url": (
            f"{run_api}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None
        ),
        "workflow_url": f"{api}/actions/workflows/{workflow_id}",
        "head_commit": {
            "id": run.head_sha,
            "tree_id": tree_id,
            "message": message,
            "timestamp": iso8601(run.created_at),
            "author": person,
            "committer": dict(person),
        },
        "repository": head_repository,
        "head_repository": head_repository,
        "head_repository_id": repo.id,
    }


def _rate_limit(limit: int, remaining: int, reset: int, used: int) -> JSON:
    return {"limit": limit, "remaining": remaining, "reset": int(reset), "used": used}


def rate_limit_overview(resources: dict[str, tuple[int, int, int, int]]) -> JSON:
    """``GET /rate_limit``. Values are ``(limit, remaining, reset_epoch, used)``; ``core`` is
    required (it is also reported as the legacy top-level ``rate``), and any other resource
    the schema requires but the caller does not track is reported as untouched."""
    if "core" not in resources:
        raise ValueError("rate_limit_overview needs the 'core' resource")
    core_reset = resources["core"][2]
    body = {name: _rate_limit(*values) for name, values in resources.items()}
    for name, limit in REQUIRED_RATE_LIMIT_RESOURCES.items():
        body.setdefault(name, _rate_limit(limit, limit, core_reset, 0))
    return {"resources": body, "rate": _rate_limit(*resources["core"])}


def error(
    message: str, documentation_url: str = DOCUMENTATION_URL, *, status: int | None = None
) -> JSON:
    """A ``basic-error`` body; GitHub now also echoes the status code as a string."""
    body: JSON = {"message": message, "documentation_url": documentation_url}
    if status is not None:
        body["status"] = str(status)
    return body


def validation_error(
    message: str, errors: list[JSON], documentation_url: str = DOCUMENTATION_URL
) -> JSON:
    """A ``validation-error`` body (422 with structured errors, e.g. on token creation).

    Each error needs a ``code`` (``missing_field``, ``invalid``, ``custom``, ...) and may name
    ``resource``, ``field`` and a ``message``.
    """
    return {"message": message, "errors": list(errors), "documentation_url": documentation_url}


def validation_error_simple(
    message: str, errors: list[str], documentation_url: str = DOCUMENTATION_URL
) -> JSON:
    """A ``validation-error-simple`` body: the 422 the runner endpoints document (JIT config,
    runner deletion, labels), whose ``errors`` are plain strings."""
    return {"message": message, "errors": list(errors), "documentation_url": documentation_url}


def paginated(items_key: str, items: list[JSON], total_count: int) -> JSON:
    """A list page as the Actions and installation endpoints wrap it."""
    return {"total_count": total_count, items_key: items}
