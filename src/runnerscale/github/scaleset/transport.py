"""Sending one request to the Actions service reliably: retries, backoff, counting.

Why a module of its own: every scale-set request (the admin-token exchange, the scale-set
calls, the long poll) needs the same care, and the rules decide what is safe to repeat.

* **What is retried.** A request that never reached the service (connection refused, DNS,
  connect timeout), and a 429, are retried whatever the method: nothing was done. A network
  failure after sending, or a 5xx, is retried only for requests that do the same thing twice
  without harm: GET, DELETE, PATCH, and the POSTs marked ``idempotent`` (exchanging a
  registration token, acquiring jobs: the service acquires a request id once). Creating a
  scale set, a session or a JIT configuration is not repeated after it may have been done:
  the caller sees the failure and its loop decides.
* **Backoff.** 1 s doubling up to 30 s, at most :data:`RETRIES` retries (as the Go client's
  ``go-retryablehttp`` defaults: 4 retries, 30 s at most), waiting on the injected clock; a
  429's ``Retry-After`` is honoured up to the same cap.
* **Counting.** Every request sent is counted by operation in ``calls``: the Actions
  service's calls, kept apart from GitHub's REST calls (the metric
  ``runnerscale_github_actions_service_calls_total``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

import httpx

from runnerscale import __version__
from runnerscale.clock import Clock
from runnerscale.github.budget import retry_after_seconds
from runnerscale.github.scaleset.errors import unreachable

log = logging.getLogger("runnerscale.github.scaleset")

#: Retries after the first attempt (the Go client's default).
RETRIES = 4
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: Seconds to wait for an ordinary answer.
TIMEOUT = 60.0
#: The User-Agent, in the shape the Go client sends (a JSON object naming the system).
USER_AGENT = json.dumps(
    {"system": "runnerscale", "version": __version__, "subsystem": "scaleset", "kind": "scaleset"},
    separators=(",", ":"),
)
_IDEMPOTENT_METHODS = frozenset({"GET", "DELETE", "PATCH", "PUT"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def backoff(attempt: int) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): 1 s doubling, at most 30 s."""
    return min(MAX_BACKOFF, FIRST_BACKOFF * float(2 ** (attempt - 1)))


class Transport:
    """Sends requests with the retry rules above; answers with whatever status came last."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, calls: Counter[str]) -> None:
        self._http = http
        self._clock = clock
        self.calls = calls

    async def send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        authorization: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
        retry_statuses: Collection[int] = (),
        answer_within: float = TIMEOUT,
    ) -> httpx.Response:
        """One request, retried as the rules say. ``retry_statuses``: more statuses worth a
        retry for this call (the token exchange retries 401 and 403 as the Go client does).
        ``answer_within``: seconds to wait for the answer (a long poll waits longer)."""
        repeatable = idempotent or method in _IDEMPOTENT_METHODS
        request_headers = {
            "Authorization": authorization,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            **(headers or {}),
        }
        content = None if body is None else json.dumps(body).encode()
        attempt = 0
        while True:
            self.calls[operation] += 1
            try:
                response = await self._http.request(
                    method, url, headers=request_headers, content=content, timeout=answer_within
                )
            except httpx.TransportError as error:
                if attempt >= RETRIES or not (repeatable or isinstance(error, _NOT_SENT)):
                    raise unreachable(operation, error) from None
                wait = backoff(attempt + 1)
                log.info(
                    "%s: cannot reach the Actions service (%s), retrying in %.0fs",
                    operation,
                    type(error).__name__,
                    wait,
                )
            else:
                status = response.status_code
                worth = status == 429 or (repeatable and status >= 500) or status in retry_statuses
                if attempt >= RETRIES or not worth:
                    return response
                wait = self._wait(attempt + 1, response)
                log.info(
                    "%s: the Actions service answered %d, retrying in %.0fs",
                    operation,
                    status,
                    wait,
                )
            attempt += 1
            await self._clock.sleep(wait)

    def _wait(self, attempt: int, response: httpx.Response) -> float:
        said = retry_after_seconds(response.headers.get("retry-after"), self._clock.now())
        if said is None:
            return backoff(attempt)
        return min(MAX_BACKOFF, max(0.0, said))
