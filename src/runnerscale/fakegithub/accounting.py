"""How the simulated GitHub accounts for one REST request, whatever carries it.

Why apart from the HTTP pipeline: the fake GitHub serves requests over HTTP
(:func:`runnerscale.fakegithub.api.serve`) and ``runnerscale simulate`` answers the same calls
in process (:class:`runnerscale.simulation.github.SimulatedGitHub`). Both must charge, refuse
and fail a request alike, or the simulation's API figures would not be the daemon's. So the
rules live here once, in GitHub's order, free of any transport:

1. :meth:`Ledger.asked` counts the request.
2. :meth:`Ledger.admit`, before the operation runs: the secondary rate limit
   (:class:`SecondaryLimitError`, with ``retry-after``), then a write's charge (a write is charged
   whatever it answers; :class:`PrimaryLimitError` when the budget is spent), then the fault
   plan's injected server error (:class:`InjectedFaultError`).
3. The operation itself (the transport's business; a read that fails is not charged).
4. :meth:`Ledger.answered`, after a read answered 200: free when the answer is the one the
   client already holds (a 304), else charged (:class:`PrimaryLimitError` when spent).

``rate-limit/get`` is free and never limited, as on GitHub. Operations are named by their
OpenAPI ``operationId``: that is what the fault plan's ``operations`` and
:func:`~runnerscale.fakegithub.ratelimit.resource_for` key on, and what ``GET /_sim/stats``
counts.

Two APIs pass through a ledger (:func:`api_of`): GitHub's REST API, and the Actions service
that runner scale sets talk to (operations named ``actions-service/...``). An Actions-service
request is counted and can be failed by the fault plan, but never charged to a REST budget:
its limits are not published (``../shared/scale-sets.md`` section 1.3), and a comparison of
demand sources must count the two apart (:meth:`Stats.requests_of`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runnerscale.fakegithub.faults import FaultPlan, Faults
from runnerscale.fakegithub.ratelimit import Bucket, RateLimits, resource_for

#: The operation GitHub never charges or limits (asking how much budget is left).
FREE_OPERATION = "rate-limit/get"
#: How the Actions service's operations (scale sets, sessions, the message queue) are named.
ACTIONS_SERVICE_PREFIX = "actions-service/"


class Api(StrEnum):
    """Which of GitHub's APIs an operation belongs to."""

    REST = "rest"
    ACTIONS_SERVICE = "actions_service"


def api_of(operation: str) -> Api:
    """The API of an operation, by its name (:data:`ACTIONS_SERVICE_PREFIX`)."""
    return Api.ACTIONS_SERVICE if operation.startswith(ACTIONS_SERVICE_PREFIX) else Api.REST


def _rate_limited(operation: str) -> bool:
    """Whether a REST budget limits and charges the operation."""
    return operation != FREE_OPERATION and api_of(operation) is Api.REST


class RefusedError(Exception):
    """GitHub answered the request with an error before (or instead of) the operation."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class SecondaryLimitError(RefusedError):
    """A secondary rate limit is in force: wait ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: int) -> None:
        super().__init__(status)
        self.retry_after = retry_after


class PrimaryLimitError(RefusedError):
    """The caller's budget for the operation's resource is spent until ``bucket.reset``."""

    def __init__(self, status: int, resource: str, bucket: Bucket) -> None:
        super().__init__(status)
        self.resource = resource
        self.bucket = bucket


class InjectedFaultError(RefusedError):
    """The fault plan made GitHub fail this request."""


@dataclass
class Stats:
    """What was asked, what was charged, and how it was answered, by operation."""

    requests: Counter[str] = field(default_factory=Counter)
    charged: Counter[str] = field(default_factory=Counter)
    charged_by_resource: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def requests_of(self, api: Api) -> Counter[str]:
        """The requests of one API, by operation (all of them: Actions-service requests are
        never charged)."""
        return Counter({op: n for op, n in self.requests.items() if api_of(op) is api})

    def public(self) -> dict[str, Any]:
        """The body of ``GET /_sim/stats``."""
        return {
            "total": sum(self.requests.values()),
            "charged": sum(self.charged.values()),
            "not_modified": sum(self.not_modified.values()),
            "operations": {
                op: {
                    "requests": count,
                    "charged": self.charged[op],
                    "not_modified": self.not_modified[op],
                    "statuses": {str(k): v for k, v in sorted(self.statuses[op].items())},
                }
                for op, count in sorted(self.requests.items())
            },
        }


class Ledger:
    """One simulated GitHub's accounting: its rate limits, its fault plan, its counts."""

    def __init__(self, rate_limits: RateLimits, faults: Faults, now: Callable[[], float]) -> None:
        self.rate_limits = rate_limits
        self.faults = faults
        self.now = now
        self.stats = Stats()

    def put_in_force(self, plan: FaultPlan) -> None:
        """Put a fault plan in force; it replaces the previous one entirely (its rate-limit
        part included: limits, windows, an exhausted primary budget, a secondary limit from
        now)."""
        self.faults.replace(plan)
        limits = plan.rate_limit
        now = self.now()
        self.rate_limits.set_limits(limits.resource_limits())
        self.rate_limits.set_windows(limits.windows)
        if limits.exhaust_primary:
            self.rate_limits.exhaust_all(now)
        else:
            self.rate_limits.restore()
        self.rate_limits.secondary_until = now + limits.secondary_for
        self.rate_limits.secondary_retry_after = limits.retry_after

    def asked(self, operation: str) -> None:
        """Count a request as it arrives, before anything is known about it."""
        self.stats.requests[operation] += 1

    def admit(
        self, operation: str, identity: str, *, read: bool, repo: str | None = None
    ) -> Bucket | None:
        """Steps before the operation runs (the module docstring's 2.). Returns the bucket a
        write was charged to (None for a read: it is charged once answered). ``repo``: the
        repository the request is about (``owner/name``), if any (its faults apply)."""
        charged: Bucket | None = None
        if _rate_limited(operation):
            retry_after = self.rate_limits.secondary_active(self.now())
            if retry_after is not None:
                raise SecondaryLimitError(self._limited_status, retry_after)
            if not read:
                charged = self._charge(operation, identity)
        plan = self.faults.plan.for_operation(operation, repo)
        if self.faults.chance(plan.error_rate):
            raise InjectedFaultError(plan.error_status)
        return charged

    def answered(self, operation: str, identity: str, *, not_modified: bool) -> Bucket | None:
        """A read answered 200: free when ``not_modified`` (a 304), else charged. Returns the
        bucket charged, if any."""
        if not_modified:
            self.stats.not_modified[operation] += 1
            return None
        if not _rate_limited(operation):
            return None
        return self._charge(operation, identity)

    def bucket(self, operation: str, identity: str) -> tuple[str, Bucket]:
        """The resource the operation is charged to, and the caller's bucket of it (as the
        answer's ``x-ratelimit-*`` headers show it), without charging."""
        resource = resource_for(operation)
        return resource, self.rate_limits.bucket(identity, resource, self.now())

    @property
    def _limited_status(self) -> int:
        return self.faults.plan.rate_limit.status

    def _charge(self, operation: str, identity: str) -> Bucket:
        resource = resource_for(operation)
        ok, bucket = self.rate_limits.take(identity, resource, self.now())
        if not ok:
            raise PrimaryLimitError(self._limited_status, resource, bucket)
        self.stats.charged[operation] += 1
        self.stats.charged_by_resource[resource] += 1
        return bucket
