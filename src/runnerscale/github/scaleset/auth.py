"""The admin connection to the Actions service of one scope, and keeping it fresh.

The chain (``actions/scaleset``'s ``client.go``): the daemon's GitHub credentials (a PAT, or a
GitHub App's installation token, as :class:`~runnerscale.github.client.GitHubClient` already
handles them) get a *registration token* over REST; ``POST /actions/runner-registration`` with
``Authorization: RemoteAuth <registration token>`` exchanges it for the scope's tenant URL and
an *admin token* (a JWT). The token's ``exp`` is read without verifying it (only the service
can) and the whole chain runs again when less than :data:`REFRESH_MARGIN` is left, or once
when the service refuses the token (:meth:`AdminAuth.refused`).

None of the tokens is ever logged, put in an error or shown by a ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import jwt

from runnerscale.clock import Clock, iso8601
from runnerscale.github.scaleset.errors import error_from_response
from runnerscale.github.scaleset.transport import Transport
from runnerscale.github.scaleset.urls import config_url, registration_url
from runnerscale.github.scaleset.wire import AdminConnection, decode, parse_connection
from runnerscale.model import Target

log = logging.getLogger("runnerscale.github.scaleset")

#: Renew the admin connection when less than this is left of the admin token (the Go client's
#: rule).
REFRESH_MARGIN = 60.0
_OPERATION = "runner-registration"
#: What an operator can do when the exchange is refused.
_HINTS = {
    401: " (GitHub refused the registration token)",
    403: (
        " (the credentials may not register runners at this scope: see docs/github.md for "
        "the permissions)"
    ),
    404: (
        " (this GitHub does not serve runner scale sets: GitHub Enterprise Server needs 3.10 "
        "or newer; or github.api_url is not the API base)"
    ),
}


class RegistrationTokens(Protocol):
    """Where registration tokens come from (:class:`~runnerscale.github.client.GitHubClient`)."""

    async def registration_token(self, target: Target) -> tuple[str, float]: ...

    def learn_secret(self, secret: str) -> None: ...


def token_expiry(token: str, fallback: float) -> float:
    """The ``exp`` claim of a JWT, read without verifying it; ``fallback`` when the token is
    no JWT or has no ``exp``."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        return float(claims["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return fallback


class AdminAuth:
    """The admin connection of one scope (target), renewed before it expires."""

    def __init__(
        self,
        tokens: RegistrationTokens,
        target: Target,
        api_url: str,
        transport: Transport,
        clock: Clock,
    ) -> None:
        self._tokens = tokens
        self._target = target
        self._api_url = api_url
        self._transport = transport
        self._clock = clock
        self._lock = asyncio.Lock()
        self._connection: AdminConnection | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"AdminAuth(target={self._target.key!r}, expires_at={self._expires_at:.0f})"

    @property
    def expires_at(self) -> float:
        """When the current admin token expires (0: none yet)."""
        return self._expires_at if self._connection is not None else 0.0

    async def connection(self) -> AdminConnection:
        """The current connection, renewed first when it is missing or about to expire."""
        async with self._lock:
            connection = self._connection
            if connection is None or self._expires_at - self._clock.now() < REFRESH_MARGIN:
                connection = self._connection = await self._connect()
            return connection

    def refused(self, connection: AdminConnection) -> None:
        """The service refused ``connection``'s token (401): the next call renews it (unless
        another call renewed it meanwhile)."""
        if self._connection is connection:
            self._connection = None

    async def _connect(self) -> AdminConnection:
        token, token_expires = await self._tokens.registration_token(self._target)
        response = await self._transport.send(
            _OPERATION,
            "POST",
            registration_url(self._api_url),
            authorization=f"RemoteAuth {token}",
            body={"url": config_url(self._api_url, self._target), "runner_event": "register"},
            idempotent=True,
            retry_statuses=(401, 403),
        )
        if not response.is_success:
            error = error_from_response(_OPERATION, response)
            error.args = (f"{error.args[0]}{_HINTS.get(response.status_code, '')}",)
            raise error
        connection = parse_connection(decode(response.content))
        self._tokens.learn_secret(connection.token)
        self._expires_at = token_expiry(connection.token, token_expires)
        log.info(
            "connected to the Actions service for %s (admin token valid until %s)",
            self._target.key,
            iso8601(self._expires_at),
        )
        return connection
