"""Classic personal access tokens' scopes: the ones GitHub has, and what each operation accepts.

GitHub tells the holder of a classic token what it may do on every answer: ``x-oauth-scopes``
lists the scopes the token was given, ``x-accepted-oauth-scopes`` the scopes the operation
checks for. An operation none of whose accepted scopes the token has is refused. Fine-grained
tokens get neither header (their permissions cannot be read from answers), and neither do App
credentials.

The simulator's tokens behave like fine-grained ones (no headers, never refused for a scope)
unless they were given scopes (``runnerscale fake-github --token-scopes``): then they are
classic tokens, checked against :data:`OPERATION_SCOPES`. That table is keyed by
``operationId``, so a new operation gets its scopes with one entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runnerscale.fakegithub.world import ApiError

#: The scopes a classic token can have (GitHub's "Scopes for OAuth apps", which personal
#: access tokens (classic) share).
CLASSIC_SCOPES: frozenset[str] = frozenset(
    {
        "repo",
        "repo:status",
        "repo_deployment",
        "public_repo",
        "repo:invite",
        "security_events",
        "admin:repo_hook",
        "write:repo_hook",
        "read:repo_hook",
        "admin:org",
        "write:org",
        "read:org",
        "manage_runners:org",
        "admin:public_key",
        "write:public_key",
        "read:public_key",
        "admin:org_hook",
        "gist",
        "notifications",
        "user",
        "read:user",
        "user:email",
        "user:follow",
        "project",
        "read:project",
        "delete_repo",
        "write:packages",
        "read:packages",
        "delete:packages",
        "admin:gpg_key",
        "write:gpg_key",
        "read:gpg_key",
        "admin:ssh_signing_key",
        "write:ssh_signing_key",
        "read:ssh_signing_key",
        "codespace",
        "workflow",
        "write:discussion",
        "read:discussion",
        "admin:enterprise",
        "manage_runners:enterprise",
        "manage_billing:enterprise",
        "read:enterprise",
        "scim:enterprise",
        "audit_log",
        "read:audit_log",
        "copilot",
        "manage_billing:copilot",
    }
)

#: GitHub's answer to a classic token without ``admin:org`` on an organisation's runner
#: operations (as reported from GitHub for ``POST /orgs/{org}/actions/runners/registration-token``).
ADMIN_RIGHTS = "Must have admin rights to Repository."


@dataclass(frozen=True)
class ScopeRule:
    """What an operation accepts, and how GitHub refuses a classic token with none of it."""

    #: The scopes, any one of which lets the token in (``x-accepted-oauth-scopes``).
    accepted: frozenset[str]
    status: int = 403
    message: str = ADMIN_RIGHTS

    def header(self) -> str:
        return ", ".join(sorted(self.accepted))

    def admits(self, granted: frozenset[str]) -> bool:
        # Every simulated repository is private, where ``public_repo`` gives no access.
        return bool(granted & (self.accepted - {"public_repo"}))


#: A repository GitHub will not show a token without ``repo``: private repositories answer
#: 404 to it ("since we don't want to provide any information about private repositories").
_PRIVATE_REPO = ScopeRule(frozenset({"repo"}), 404, "Not Found")
_ORG_RUNNERS = ScopeRule(frozenset({"admin:org"}))
_ENTERPRISE_RUNNERS = ScopeRule(frozenset({"admin:enterprise", "manage_runners:enterprise"}))
#: Repository hooks: ``admin:repo_hook`` may read, write, ping and delete, ``write:repo_hook``
#: all but delete, ``read:repo_hook`` read and ping; ``repo`` covers repository webhooks.
_REPO_HOOK_READ = ScopeRule(
    frozenset({"admin:repo_hook", "write:repo_hook", "read:repo_hook", "repo", "public_repo"}),
    404,
    "Not Found",
)
_REPO_HOOK_WRITE = ScopeRule(
    frozenset({"admin:repo_hook", "write:repo_hook", "repo", "public_repo"}), 404, "Not Found"
)
_REPO_HOOK_DELETE = ScopeRule(
    frozenset({"admin:repo_hook", "repo", "public_repo"}), 404, "Not Found"
)
#: Organisation hooks answer 404 to a token without ``admin:org_hook``.
_ORG_HOOKS = ScopeRule(frozenset({"admin:org_hook"}), 404, "Not Found")

_RUNNER_OPERATIONS = (
    "list-self-hosted-runners-for",
    "list-runner-applications-for",
    "generate-runner-jitconfig-for",
    "create-registration-token-for",
    "create-remove-token-for",
    "get-self-hosted-runner-for",
    "delete-self-hosted-runner-from",
    "list-labels-for-self-hosted-runner-for",
    "add-custom-labels-to-self-hosted-runner-for",
)


def _enterprise_id(operation: str) -> str:
    """GitHub files the enterprise runner operations under ``enterprise-admin/``, except the
    JIT configuration, which is ``actions/`` at every level."""
    tag = "actions" if operation == "generate-runner-jitconfig-for" else "enterprise-admin"
    return f"{tag}/{operation}-enterprise"


#: What each operation accepts from a classic token, by ``operationId`` (from the operation's
#: description in GitHub's REST description: "personal access tokens (classic) need the ...
#: scope"); an operation not listed needs no scope.
OPERATION_SCOPES: dict[str, ScopeRule] = {
    **{f"actions/{op}-repo": _PRIVATE_REPO for op in _RUNNER_OPERATIONS},
    **{f"actions/{op}-org": _ORG_RUNNERS for op in _RUNNER_OPERATIONS},
    **{_enterprise_id(op): _ENTERPRISE_RUNNERS for op in _RUNNER_OPERATIONS},
    "actions/list-self-hosted-runner-groups-for-org": _ORG_RUNNERS,
    "actions/get-self-hosted-runner-group-for-org": _ORG_RUNNERS,
    "actions/list-self-hosted-runners-in-group-for-org": _ORG_RUNNERS,
    "enterprise-admin/list-self-hosted-runner-groups-for-enterprise": _ENTERPRISE_RUNNERS,
    "actions/list-workflow-runs-for-repo": _PRIVATE_REPO,
    "actions/get-workflow-run": _PRIVATE_REPO,
    "actions/cancel-workflow-run": _PRIVATE_REPO,
    "actions/list-jobs-for-workflow-run": _PRIVATE_REPO,
    "actions/get-job-for-workflow-run": _PRIVATE_REPO,
    "actions/re-run-job-for-workflow-run": _PRIVATE_REPO,
    "checks/list-annotations": _PRIVATE_REPO,
    "repos/get": _PRIVATE_REPO,
    "repos/list-webhooks": _REPO_HOOK_READ,
    "repos/get-webhook": _REPO_HOOK_READ,
    "repos/list-webhook-deliveries": _REPO_HOOK_READ,
    "repos/ping-webhook": _REPO_HOOK_READ,
    "repos/create-webhook": _REPO_HOOK_WRITE,
    "repos/redeliver-webhook-delivery": _REPO_HOOK_WRITE,
    "repos/delete-webhook": _REPO_HOOK_DELETE,
    **{
        f"orgs/{op}": _ORG_HOOKS
        for op in (
            "list-webhooks",
            "create-webhook",
            "get-webhook",
            "delete-webhook",
            "list-webhook-deliveries",
            "redeliver-webhook-delivery",
            "ping-webhook",
        )
    },
}


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Scope names as given (each may be a comma-separated list, blanks ignored), checked
    against :data:`CLASSIC_SCOPES`; a ValueError names any GitHub does not have."""
    names = {name.strip() for item in scopes for name in item.split(",") if name.strip()}
    unknown = sorted(names - CLASSIC_SCOPES)
    if unknown:
        raise ValueError(
            f"not a classic token scope: {', '.join(unknown)} (GitHub's scopes: "
            f"{', '.join(sorted(CLASSIC_SCOPES))})"
        )
    return frozenset(names)


def scope_headers(granted: frozenset[str], operation_id: str) -> dict[str, str]:
    """The headers GitHub adds to every answer to a classic token."""
    rule = OPERATION_SCOPES.get(operation_id)
    return {
        "x-oauth-scopes": ", ".join(sorted(granted)),
        "x-accepted-oauth-scopes": rule.header() if rule is not None else "",
    }


def check_scopes(granted: frozenset[str], operation_id: str) -> None:
    """Refuse, as GitHub does, an operation none of whose accepted scopes the token has."""
    rule = OPERATION_SCOPES.get(operation_id)
    if rule is not None and not rule.admits(granted):
        raise ApiError(rule.status, rule.message)
