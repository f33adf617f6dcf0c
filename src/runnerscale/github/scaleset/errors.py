"""The Actions service's refusals, as exceptions the listener and registrar can act on.

The service names what went wrong in the ``typeName`` of a JSON body (``{"typeName":
"JobStillRunningException", "message": "..."}``); the HTTP status alone does not tell a gone
scale set from a gone runner (both 404). Each name runnerscale acts on has a class here; any
other failure is a plain :class:`ActionsServiceError` (a :class:`GitHubError`) with the
status. Messages name the operation and the path, never a query (it may carry a session id),
a header or a token.
"""

from __future__ import annotations

from typing import Any

import httpx

from runnerscale.github.scaleset.wire import WireError, decode
from runnerscale.protocols import GitHubError
from runnerscale.scaleset_api import ScaleSetGoneError


class ActionsServiceError(GitHubError):
    """A failed Actions-service call; ``type_name`` is the service's exception name ("" when it
    sent none)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type_name: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, status=status)
        self.type_name = type_name


class RunnerNotFoundError(ActionsServiceError):
    """``AgentNotFoundException``: the service knows no such runner."""


class JobStillRunningError(ActionsServiceError):
    """``JobStillRunningException``: the runner is busy; the service refused to remove it."""


class SessionConflictError(ActionsServiceError):
    """``RunnerScaleSetSessionConflictException`` (409): another listener holds the session."""


class SessionExpiredError(ActionsServiceError):
    """``RunnerScaleSetSessionExpiredException``: the session is already gone."""


class SessionNotFoundError(ActionsServiceError):
    """A 404 on a session that is not the scale set's: the service dropped the session."""


class ScaleSetNotFoundError(ScaleSetGoneError, ActionsServiceError):
    """``RunnerScaleSetNotFoundException``: the scale set was deleted; re-create it."""


#: The service's exception names, by a part of the name (the Go client matches the same way).
_BY_TYPE_NAME: tuple[tuple[str, type[ActionsServiceError]], ...] = (
    ("RunnerScaleSetNotFoundException", ScaleSetNotFoundError),
    ("AgentNotFoundException", RunnerNotFoundError),
    ("JobStillRunningException", JobStillRunningError),
    ("SessionConflictException", SessionConflictError),
    ("SessionExpiredException", SessionExpiredError),
)

#: What an operator can do about a status, when the service names nothing more.
_HINTS = {
    401: " (the admin or queue token was refused)",
    403: " (the credentials may not manage runners of this scope: see docs/github.md)",
}


def exception_of(body: Any) -> tuple[str, str]:
    """``(typeName, message)`` of an error body (empty strings when it has none)."""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("typeName") or ""), str(body.get("message") or "")


def _retry_after(response: httpx.Response) -> float | None:
    """A ``Retry-After`` in seconds (the caller's loop backs off at least that long)."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def error_from_response(operation: str, response: httpx.Response) -> ActionsServiceError:
    """The exception for an answer ``operation`` did not expect."""
    try:
        body = decode(response.content)
    except WireError:
        body = None
    type_name, message = exception_of(body)
    cls = next((c for part, c in _BY_TYPE_NAME if part in type_name), ActionsServiceError)
    status = response.status_code
    if cls is ActionsServiceError and "session" in operation:
        cls = {409: SessionConflictError, 404: SessionNotFoundError}.get(status, cls)
    said = f" {type_name}: {message}" if type_name or message else ""
    text = (
        f"{operation} {response.request.url.path}: the Actions service answered "
        f"{status}{said}{_HINTS.get(status, '') if not type_name else ''}"
    )
    return cls(text, status=status, type_name=type_name, retry_after=_retry_after(response))


def unreachable(operation: str, error: Exception) -> ActionsServiceError:
    """A request that got no answer (only the exception's type is named: its text may quote
    the URL with its query)."""
    return ActionsServiceError(
        f"{operation}: cannot reach the Actions service ({type(error).__name__})"
    )
