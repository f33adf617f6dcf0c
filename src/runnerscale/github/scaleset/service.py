"""Calls to the Actions service with the admin token: the URL, the token, the expected answer.

Every call goes to ``<tenant URL>/<path>`` with ``api-version`` (:mod:`.urls`), the current
admin token (:mod:`.auth`) and the retry rules of :mod:`.transport`. A 401 means the admin
token was refused before its time (revoked, clocks apart): the chain is run again and the
call repeated once. Any answer the call did not expect becomes the exception its ``typeName``
names (:mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from runnerscale.github.scaleset.auth import AdminAuth
from runnerscale.github.scaleset.errors import error_from_response
from runnerscale.github.scaleset.transport import Transport
from runnerscale.github.scaleset.urls import service_url
from runnerscale.github.scaleset.wire import decode

#: The Actions service's paths (relative to the tenant URL).
SCALE_SETS = "_apis/runtime/runnerscalesets"
RUNNER_GROUPS = "_apis/runtime/runnergroups/"
RUNNERS = "_apis/distributedtask/pools/0/agents"


class ActionsService:
    """The Actions service of one scope, called with its admin token."""

    def __init__(
        self, auth: AdminAuth, transport: Transport, learn_secret: Callable[[str], None]
    ) -> None:
        self._auth = auth
        self.transport = transport
        #: Tells the log redactor a token the service handed out (a session's queue token).
        self.learn_secret = learn_secret

    async def url(self, path: str, params: dict[str, str] | None = None) -> str:
        """``path`` under the current tenant URL (renewing the connection when due)."""
        connection = await self._auth.connection()
        return service_url(connection.tenant_url, path, params)

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        expect: Collection[int] = (200,),
        idempotent: bool = False,
    ) -> Any:
        """The decoded answer (None when empty) of one call with the admin token."""
        refused_once = False
        while True:
            connection = await self._auth.connection()
            response = await self.transport.send(
                operation,
                method,
                service_url(connection.tenant_url, path, params),
                authorization=f"Bearer {connection.token}",
                body=body,
                idempotent=idempotent,
            )
            if response.status_code == 401 and not refused_once:
                refused_once = True
                self._auth.refused(connection)
                continue
            if response.status_code not in expect:
                raise error_from_response(operation, response)
            return decode(response.content)
