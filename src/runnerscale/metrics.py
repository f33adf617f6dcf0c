"""Prometheus metrics, on a registry of the daemon's own (so tests can run several daemons).

Gauges are read from the controller's status when Prometheus scrapes (a custom collector), so
they are never stale and never need updating from the loops; counters and the queue-wait
histogram are fed by the controller's event hooks. Label values are pool names, operation names
and error kinds: never a token, a URL with credentials or a JIT configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerscale.controller.actions import Events
from runnerscale.controller.loops import Status
from runnerscale.github.budget import Budgets

#: Queue wait buckets: seconds from a job being queued to a runner starting it.
QUEUE_WAIT_BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], Status], budget: Callable[[], Budgets | None]) -> None:
        self._status = status
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        families = {
            "desired": "Runners the scaler wants in the pool",
            "booting": "Runners being created or booting",
            "idle": "Runners online without a job",
            "busy": "Runners running a job",
            "queued": "Queued jobs the pool serves",
        }
        for field, doc in families.items():
            name = (
                "runnerscale_pool_queued_jobs"
                if field == "queued"
                else f"runnerscale_pool_{field}_runners"
            )
            family = GaugeMetricFamily(name, doc, labels=["pool"])
            for pool in status.pools:
                family.add_metric([pool.name], getattr(pool, field))
            yield family
        healthy = GaugeMetricFamily(
            "runnerscale_pool_healthy", "1 when the pool's backend works", labels=["pool"]
        )
        for pool in status.pools:
            healthy.add_metric([pool.name], 1.0 if pool.healthy else 0.0)
        yield healthy
        yield GaugeMetricFamily(
            "runnerscale_unmatched_jobs",
            "Queued jobs no pool can serve",
            value=status.unmatched_jobs,
        )
        budget = self._budget()
        if budget is not None:
            remaining = GaugeMetricFamily(
                "runnerscale_github_rate_limit_remaining",
                "Requests left in GitHub's current rate-limit window, per credential",
                labels=["credential", "resource"],
            )
            used = GaugeMetricFamily(
                "runnerscale_github_rate_limit_used",
                "Requests used in GitHub's current rate-limit window, per credential",
                labels=["credential", "resource"],
            )
            for credential, one in sorted(budget.by_credential.items()):
                for resource, bucket in sorted(one.resources.items()):
                    remaining.add_metric([credential, resource], bucket.remaining)
                    used.add_metric([credential, resource], bucket.used)
            yield remaining
            yield used
            calls = GaugeMetricFamily(
                "runnerscale_github_api_calls",
                "GitHub API calls made, by operation",
                labels=["operation"],
            )
            for operation, count in sorted(budget.calls.items()):
                calls.add_metric([operation], count)
            yield calls
            charged = GaugeMetricFamily(
                "runnerscale_github_charged_calls",
                "GitHub API calls charged to each rate-limit resource (304s are free)",
                labels=["credential", "resource"],
            )
            for credential, one in sorted(budget.by_credential.items()):
                for resource, count in one.charged_by_resource().items():
                    charged.add_metric([credential, resource], count)
            yield charged
            yield GaugeMetricFamily(
                "runnerscale_github_not_modified",
                "Conditional GitHub requests answered 304 (not counted by GitHub)",
                value=budget.not_modified,
            )
            yield GaugeMetricFamily(
                "runnerscale_github_poll_interval_seconds",
                "The current poll interval (stretched when the rate-limit budget runs low)",
                value=budget.interval,
            )
            paused = GaugeMetricFamily(
                "runnerscale_github_paused_seconds",
                "Seconds left of a pause GitHub asked for (retry-after, secondary limit)",
                labels=["credential", "resource"],
            )
            for credential, one in sorted(budget.by_credential.items()):
                for resource in sorted(one.pauses):
                    paused.add_metric([credential, resource], one.pause_remaining(resource))
            yield paused


class Metrics:
    def __init__(self, status: Callable[[], Status], budget: Callable[[], Budgets | None]) -> None:
        self.registry = CollectorRegistry()
        self.scale_operations = Counter(
            "runnerscale_scale_operations",
            "Runners created or removed",
            ["pool", "operation"],
            registry=self.registry,
        )
        self.errors = Counter(
            "runnerscale_errors",
            "Failed operations by kind",
            ["pool", "kind"],
            registry=self.registry,
        )
        self.cleanups = Counter(
            "runnerscale_cleanups",
            "Things the janitor cleaned up, by kind",
            ["pool", "kind"],
            registry=self.registry,
        )
        self.reruns = Counter(
            "runnerscale_jobs_rerun",
            "Jobs re-run because their runner died mid-job",
            ["pool"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "runnerscale_job_queue_wait_seconds",
            "Seconds from a job being queued to a runner starting it",
            ["pool"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StatusCollector(status, budget))

    def events(self) -> Events:
        return Events(
            scaled=lambda pool, operation: self.scale_operations.labels(pool, operation).inc(),
            error=lambda pool, kind: self.errors.labels(pool, kind).inc(),
            cleaned=lambda pool, kind: self.cleanups.labels(pool, kind).inc(),
            rerun=lambda pool: self.reruns.labels(pool).inc(),
        )

    def job_started(self, pool: str, wait_seconds: float) -> None:
        self.queue_wait.labels(pool or "unmatched").observe(wait_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
