"""The reader of ``documents.py`` finds the metric names of the expressions the rules and the
dashboard are made of, and no function, keyword, label or Grafana variable; and what the rules
and the dashboard read is documented in ``docs/metrics.md`` (the e2e test holds the same to a
live daemon)."""

from __future__ import annotations

import pytest

from tests.deploy.documents import (
    dashboard,
    documented_metrics,
    label_queries,
    metric_names,
    queries,
    series_names,
    unknown_metrics,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="runnerscale"} == 0 or absent(up{job="runnerscale"})', {"up"}),
        (
            "histogram_quantile(0.95, sum by (pool, le) "
            '(rate(runnerscale_job_queue_wait_seconds_bucket{pool!="unmatched"}[15m]))) > 120',
            {"runnerscale_job_queue_wait_seconds_bucket"},
        ),
        (
            "max by (pool) (min_over_time(runnerscale_pool_booting_runners[10m])) > 0 unless on "
            "(pool) sum by (pool) (increase(runnerscale_runner_startup_seconds_count[10m])) > 0",
            {"runnerscale_pool_booting_runners", "runnerscale_runner_startup_seconds_count"},
        ),
        (
            "max by (pool) (min_over_time((sum by (pool) (runnerscale_pool_booting_runners) - "
            "sum by (pool) (runnerscale_pool_waiting_runners) or sum by (pool) "
            "(runnerscale_pool_booting_runners))[10m:])) > 0",
            {"runnerscale_pool_booting_runners", "runnerscale_pool_waiting_runners"},
        ),
        (
            'sum by (pool) (increase(runnerscale_runner_seconds_total{pool=~"$pool"}'
            "[$__range])) / 3600 * ${price_per_runner_hour}",
            {"runnerscale_runner_seconds_total"},
        ),
        ("rate(runnerscale_errors_total[5m] offset 1h) * 1e3", {"runnerscale_errors_total"}),
        (
            "runnerscale_github_rate_limit_remaining / ignoring(x) group_left "
            "runnerscale_github_rate_limit_limit",
            {"runnerscale_github_rate_limit_remaining", "runnerscale_github_rate_limit_limit"},
        ),
        ('label_replace(vector(1), "a", "b", "c", "d")', set()),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_metrics_table_is_read_with_types_and_labels() -> None:
    documented = documented_metrics()
    errors = documented["runnerscale_errors_total"]
    assert (errors.kind, errors.labels) == ("counter", frozenset({"pool", "kind"}))
    assert documented["runnerscale_unmatched_jobs"].labels == frozenset()
    assert documented["runnerscale_job_queue_wait_seconds"].kind == "histogram"


def test_every_query_of_the_rules_and_the_dashboard_reads_documented_metrics() -> None:
    """(``tests/e2e/test_metrics.py`` checks the same against a live ``/metrics``.)"""
    documented: set[str] = set()
    for row in documented_metrics().values():
        documented |= series_names(row.name, row.kind)
    assert unknown_metrics(documented) == {}
    assert all(metric_names(expr) for expr in queries().values())


def test_the_dashboard_variables_read_documented_labels() -> None:
    documented = documented_metrics()
    variables = label_queries(dashboard())
    assert variables
    for variable in variables:
        assert variable.label in documented[variable.metric].labels, variable
