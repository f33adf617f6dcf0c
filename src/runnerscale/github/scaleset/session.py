"""One scale set's message session: the long poll, acknowledgements, acquiring jobs.

A scale set has one session at a time. Its requests to the message queue carry the session's
*queue token*, which expires on its own schedule: a 401 refreshes the session (``PATCH``, with
the admin token) and repeats the request once. A session the service has dropped (a 404 that
is not the scale set's, seen on refresh in the field: ``actions/scaleset`` PR #123) is deleted
for good measure and created anew; a scale set that is gone raises
:class:`~runnerscale.scaleset_api.ScaleSetGoneError` so the pool re-creates it.

Creating a session while another listener holds one (a crashed daemon's, until the service
expires it, about a minute in field reports) is refused with 409: :func:`create_session`
waits with backoff, 1 s doubling to 15 s, without a deadline, saying at INFO how long it has
waited. Giving up would leave the pool without demand, and the conflict does clear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import httpx

from runnerscale.clock import Clock
from runnerscale.github.scaleset.errors import (
    ScaleSetNotFoundError,
    SessionConflictError,
    SessionExpiredError,
    SessionNotFoundError,
    error_from_response,
)
from runnerscale.github.scaleset.service import SCALE_SETS, ActionsService
from runnerscale.github.scaleset.transport import TIMEOUT
from runnerscale.github.scaleset.urls import message_url, poll_url
from runnerscale.github.scaleset.wire import (
    SessionInfo,
    decode,
    parse_acquired,
    parse_message,
    parse_session,
)
from runnerscale.scaleset_api import ScaleSet, ScaleSetMessage, ScaleSetStatistics

log = logging.getLogger("runnerscale.github.scaleset")

#: The 409 wait: the first wait, doubling up to the longest.
CONFLICT_FIRST_WAIT = 1.0
CONFLICT_MAX_WAIT = 15.0
#: Seconds to wait for a long poll's answer: the service holds it about 50 s.
POLL_TIMEOUT = 90.0
MAX_CAPACITY_HEADER = "X-ScaleSetMaxCapacity"
#: The queue URL is the service's own (opaque): the API version goes in the Accept header.
_QUEUE_ACCEPT = "application/json; api-version=6.0-preview"


def conflict_wait(attempt: int) -> float:
    """The wait after the ``attempt``-th 409 (1, 2, ...): 1 s doubling, at most 15 s."""
    return min(CONFLICT_MAX_WAIT, CONFLICT_FIRST_WAIT * float(2 ** (attempt - 1)))


async def create_session(
    service: ActionsService, scale_set: ScaleSet, owner: str, clock: Clock
) -> SessionInfo:
    """Create the scale set's session as ``owner``, waiting out another's (409)."""
    started = clock.now()
    attempt = 0
    while True:
        try:
            answer = await service.call(
                "create-session",
                "POST",
                f"{SCALE_SETS}/{scale_set.id}/sessions",
                body={"ownerName": owner},
            )
        except SessionConflictError:
            attempt += 1
            wait = conflict_wait(attempt)
            log.info(
                "scale set %s: another listener holds its session (409, it clears when that "
                "listener stops or expires); waited %.0fs so far, trying again in %.0fs",
                scale_set.name,
                clock.now() - started,
                wait,
            )
            await clock.sleep(wait)
            continue
        info = parse_session(answer)
        service.learn_secret(info.queue_token)
        return info


class Session:
    """:class:`~runnerscale.scaleset_api.ScaleSetSession` over the Actions service."""

    def __init__(
        self,
        service: ActionsService,
        scale_set: ScaleSet,
        owner: str,
        info: SessionInfo,
        clock: Clock,
    ) -> None:
        self._service = service
        self._scale_set = scale_set
        self._owner = owner
        self._info = info
        self._clock = clock
        #: One renewal at a time: requests refused together renew the session once.
        self._renewing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Session(scale_set={self._scale_set.name!r}, session_id={self._info.session_id!r})"

    @property
    def statistics(self) -> ScaleSetStatistics:
        return self._info.statistics

    @property
    def session_id(self) -> str:
        return self._info.session_id

    async def next_message(self, last_message_id: int, max_capacity: int) -> ScaleSetMessage | None:
        response = await self._queue(
            "get-message",
            "GET",
            lambda info: poll_url(info.queue_url, last_message_id),
            headers={MAX_CAPACITY_HEADER: str(max(0, max_capacity))},
            answer_within=POLL_TIMEOUT,
        )
        if response.status_code == 202:
            return None
        if response.status_code != 200:
            raise error_from_response("get-message", response)
        return parse_message(decode(response.content))

    async def acknowledge(self, message_id: int) -> None:
        response = await self._queue(
            "acknowledge-message",
            "DELETE",
            lambda info: message_url(info.queue_url, message_id),
        )
        if response.status_code not in (200, 204):
            raise error_from_response("acknowledge-message", response)

    async def acquire_jobs(self, runner_request_ids: Sequence[int]) -> list[int]:
        if not runner_request_ids:
            return []
        url = await self._service.url(f"{SCALE_SETS}/{self._scale_set.id}/acquirejobs")
        response = await self._queue(
            "acquire-jobs",
            "POST",
            lambda info: url,
            body=list(runner_request_ids),
            idempotent=True,  # a request id is acquired once; asking again changes nothing
        )
        if response.status_code != 200:
            raise error_from_response("acquire-jobs", response)
        return parse_acquired(decode(response.content))

    async def close(self) -> None:
        await self._delete(logging.WARNING)

    async def _delete(self, failure_level: int) -> None:
        """Delete the session; a failure is logged at ``failure_level``, never raised (the
        service expires a session on its own)."""
        try:
            await self._service.call(
                "delete-session",
                "DELETE",
                f"{SCALE_SETS}/{self._scale_set.id}/sessions/{self._info.session_id}",
                expect=(200, 204),
            )
        except (SessionExpiredError, SessionNotFoundError, ScaleSetNotFoundError):
            # (A deleted scale set takes its session with it: nothing to warn about.)
            log.debug("scale set %s: the session was gone already", self._scale_set.name)
        except Exception as error:  # closing must never fail the shutdown
            log.log(
                failure_level,
                "scale set %s: could not delete the message session (%s); the service "
                "expires it on its own",
                self._scale_set.name,
                error,
            )

    # ------------------------------------------------------------------ the queue token

    async def _queue(
        self,
        operation: str,
        method: str,
        url_of: Callable[[SessionInfo], str],
        *,
        headers: dict[str, str] | None = None,
        body: object = None,
        idempotent: bool = False,
        answer_within: float = TIMEOUT,
    ) -> httpx.Response:
        """A request with the queue token. A 401 refreshes the session, a 404 of the session
        re-creates it; either way the request is repeated once."""
        renewed = False
        while True:
            info = self._info
            response = await self._service.transport.send(
                operation,
                method,
                url_of(info),
                authorization=f"Bearer {info.queue_token}",
                headers={"Accept": _QUEUE_ACCEPT, **(headers or {})},
                body=body,
                idempotent=idempotent,
                answer_within=answer_within,
            )
            if renewed or response.status_code not in (401, 404):
                return response
            renewed = True
            if response.status_code == 404:
                error = error_from_response(operation, response)
                if isinstance(error, ScaleSetNotFoundError):
                    raise error
            async with self._renewing:
                if self._info is not info:
                    continue  # renewed by a concurrent request meanwhile
                if response.status_code == 401:
                    await self._refresh()
                else:
                    await self._recreate(f"{operation} answered 404")

    async def _refresh(self) -> None:
        """A new queue token for the session (a 401 said the old one expired)."""
        try:
            answer = await self._service.call(
                "refresh-session",
                "PATCH",
                f"{SCALE_SETS}/{self._scale_set.id}/sessions/{self._info.session_id}",
            )
        except ScaleSetNotFoundError:
            raise
        except (SessionNotFoundError, SessionExpiredError) as error:
            await self._recreate(f"refreshing it failed: {error.type_name or error.status}")
            return
        self._info = parse_session(answer)
        self._service.learn_secret(self._info.queue_token)
        log.debug("scale set %s: message session refreshed", self._scale_set.name)

    async def _recreate(self, why: str) -> None:
        log.info(
            "scale set %s: the service dropped the message session (%s); creating a new one",
            self._scale_set.name,
            why,
        )
        # Should the service still hold it after all, a new one would wait for it (409).
        await self._delete(logging.DEBUG)
        self._info = await create_session(self._service, self._scale_set, self._owner, self._clock)
