"""GitHub's REST rate limits, per credential and resource.

GitHub gives each credential an hourly budget per resource (``core`` for the endpoints an
autoscaler uses; 5,000 for a PAT or an App installation, 60 without credentials), reports it
on every response in ``x-ratelimit-*`` headers, answers 403 or 429 once it is spent, and does
not charge conditional requests answered 304. Secondary limits are separate: a burst answer
with ``retry-after``. Both are modelled here on the world's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_SECONDS = 3600.0
AUTHENTICATED_LIMIT = 5000
ANONYMOUS_LIMIT = 60


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

    def __init__(self, authenticated_limit: int = AUTHENTICATED_LIMIT) -> None:
        self.authenticated_limit = authenticated_limit
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self.secondary_until = 0.0
        self.secondary_retry_after = 60
        self._exhausted_until = 0.0

    def bucket(self, identity: str, resource: str, now: float) -> Bucket:
        key = (identity, resource)
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset:
            limit = (
                ANONYMOUS_LIMIT if identity.startswith("anonymous") else self.authenticated_limit
            )
            spent = limit if now < self._exhausted_until else 0
            bucket = Bucket(limit=limit, used=spent, reset=now + WINDOW_SECONDS)
            self._buckets[key] = bucket
        return bucket

    def exhaust_all(self, now: float) -> None:
        """Spend every budget for the rest of its window (fault injection).

        Budgets first used during the next hour start spent as well, so a credential that
        appears after the fault was set is limited too.
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

    def set_limit(self, limit: int) -> None:
        self.authenticated_limit = limit
        for (identity, _), bucket in self._buckets.items():
            if not identity.startswith("anonymous"):
                bucket.limit = limit

    def secondary_active(self, now: float) -> int | None:
        """Seconds to wait when a secondary limit is in force, else None."""
        if now < self.secondary_until:
            return max(1, min(self.secondary_retry_after, int(self.secondary_until - now) + 1))
        return None
