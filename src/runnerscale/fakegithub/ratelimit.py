"""GitHub's REST rate limits, per credential and resource.

GitHub gives each credential an hourly budget per resource (``core`` for most endpoints an
autoscaler uses; 5,000 for a PAT or an App installation, 60 without credentials), reports it
on every response in ``x-ratelimit-*`` headers (``x-ratelimit-resource`` naming the resource
the request counted against), answers 403 or 429 once it is spent, and does not charge
conditional requests answered 304. Secondary limits are separate: a burst answer with
``retry-after``. Both are modelled here on the world's clock.

Registering runners has a resource of its own, ``actions_runner_registration``. GitHub does
not say which operations are charged to it; the simulator charges the registration-token,
remove-token and JIT-config operations (:data:`RUNNER_REGISTRATION_OPERATIONS`), a named
assumption documented in ``docs/simulator.md``.

Every window is an hour unless told otherwise (:meth:`RateLimits.set_windows`): GitHub's
Actions limits page also documents runner registrations as "1500 runners / 5 minutes", a
shorter window, and a benchmark needs a registration budget that binds within a minute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WINDOW_SECONDS = 3600.0
AUTHENTICATED_LIMIT = 5000
ANONYMOUS_LIMIT = 60

CORE = "core"
RUNNER_REGISTRATION = "actions_runner_registration"

#: Every resource of the published ``rate-limit-overview`` schema, with an authenticated
#: credential's limit: the figures of the schema's published example (GitHub documents no
#: number for ``actions_runner_registration``; the example shows 10,000). The example has no
#: figure for ``dependency_sbom`` and ``copilot_usage_records``: they get ``core``'s. Every
#: window here is an hour (GitHub's ``search`` window is a minute).
RESOURCE_LIMITS: dict[str, int] = {
    CORE: AUTHENTICATED_LIMIT,
    "graphql": 5000,
    "search": 30,
    "code_search": 10,
    "source_import": 100,
    "integration_manifest": 5000,
    RUNNER_REGISTRATION: 10000,
    "scim": 15000,
    "dependency_snapshots": 100,
    "dependency_sbom": AUTHENTICATED_LIMIT,
    "code_scanning_autofix": 10,
    "copilot_usage_records": AUTHENTICATED_LIMIT,
}

#: The operations charged to ``actions_runner_registration`` instead of ``core`` (the named
#: assumption): creating a registration token, a remove token or a JIT runner configuration,
#: at repository, organisation and enterprise level.
RUNNER_REGISTRATION_OPERATIONS: frozenset[str] = frozenset(
    {
        *(
            f"actions/{operation}-for-{level}"
            for operation in (
                "create-registration-token",
                "create-remove-token",
                "generate-runner-jitconfig",
            )
            for level in ("repo", "org")
        ),
        "enterprise-admin/create-registration-token-for-enterprise",
        "enterprise-admin/create-remove-token-for-enterprise",
        "actions/generate-runner-jitconfig-for-enterprise",
    }
)


def resource_for(operation_id: str) -> str:
    """The resource a REST operation (by ``operationId``) is charged to."""
    return RUNNER_REGISTRATION if operation_id in RUNNER_REGISTRATION_OPERATIONS else CORE


def _check_resources(resources: Iterable[str]) -> None:
    for resource in resources:
        if resource not in RESOURCE_LIMITS:
            raise ValueError(
                f"unknown rate-limit resource {resource!r}: GitHub's are "
                f"{', '.join(sorted(RESOURCE_LIMITS))}"
            )


def check_limits(limits: Mapping[str, int]) -> None:
    """Refuse a limit for a resource GitHub does not have, or one below 1."""
    _check_resources(limits)
    for resource, limit in limits.items():
        if limit < 1:
            raise ValueError(f"the {resource} limit must be at least 1, got {limit}")


def check_windows(windows: Mapping[str, float]) -> None:
    """Refuse a window for a resource GitHub does not have, or one not above 0 (or longer
    than an hour: GitHub's longest)."""
    _check_resources(windows)
    for resource, seconds in windows.items():
        if not 0 < seconds <= WINDOW_SECONDS:
            raise ValueError(
                f"the {resource} window must be above 0 and at most {WINDOW_SECONDS:.0f} "
                f"seconds, got {seconds}"
            )


@dataclass
class Bucket:
    limit: int
    used: int
    reset: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self, resource: str) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(int(self.reset)),
            "x-ratelimit-resource": resource,
        }


class RateLimits:
    """Buckets keyed by (identity, resource); a bucket's window starts at its first request."""

    def __init__(self) -> None:
        #: An authenticated credential's limit per window, by resource.
        self.limits = dict(RESOURCE_LIMITS)
        #: Seconds of a resource's window when not an hour (:data:`WINDOW_SECONDS`).
        self.windows: dict[str, float] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self.secondary_until = 0.0
        self.secondary_retry_after = 60
        self._exhausted_until = 0.0

    def _limit(self, identity: str, resource: str) -> int:
        if resource == CORE and identity.startswith("anonymous"):
            return ANONYMOUS_LIMIT
        return self.limits.get(resource, self.limits[CORE])

    def bucket(self, identity: str, resource: str, now: float) -> Bucket:
        key = (identity, resource)
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset:
            limit = self._limit(identity, resource)
            spent = limit if now < self._exhausted_until else 0
            window = self.windows.get(resource, WINDOW_SECONDS)
            bucket = Bucket(limit=limit, used=spent, reset=now + window)
            self._buckets[key] = bucket
        return bucket

    def exhaust_all(self, now: float) -> None:
        """Spend every budget, of every resource, for the rest of its window (fault injection).

        Budgets first used during the next hour start spent as well, so a credential (or a
        resource) that appears after the fault was set is limited too.
        """
        for bucket in self._buckets.values():
            if now < bucket.reset:
                bucket.used = max(bucket.used, bucket.limit)
        self._exhausted_until = now + WINDOW_SECONDS

    def restore(self) -> None:
        """Lift an injected exhaustion: budgets it spent start a fresh window."""
        if self._exhausted_until:
            self._exhausted_until = 0.0
            self._buckets = {
                key: bucket for key, bucket in self._buckets.items() if bucket.remaining > 0
            }

    def take(self, identity: str, resource: str, now: float) -> tuple[bool, Bucket]:
        """Charge one request; False (and nothing charged) when the budget is spent."""
        bucket = self.bucket(identity, resource, now)
        if bucket.remaining == 0:
            return False, bucket
        bucket.used += 1
        return True, bucket

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Put these limits in force for authenticated credentials; a resource not named gets
        GitHub's (:data:`RESOURCE_LIMITS`). Buckets in use take the new limit at once."""
        check_limits(limits)
        self.limits = {**RESOURCE_LIMITS, **limits}
        for (identity, resource), bucket in self._buckets.items():
            bucket.limit = self._limit(identity, resource)

    def set_windows(self, windows: Mapping[str, float]) -> None:
        """Put these windows in force (seconds, by resource); a resource not named gets an
        hour. A window in use keeps its reset; the next one is the new length."""
        check_windows(windows)
        self.windows = dict(windows)

    def secondary_active(self, now: float) -> int | None:
        """Seconds to wait when a secondary limit is in force, else None."""
        if now < self.secondary_until:
            return max(1, min(self.secondary_retry_after, int(self.secondary_until - now) + 1))
        return None
