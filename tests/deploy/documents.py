"""Reading what ``deploy/`` and ``docs/metrics.md`` say about metrics, for the tests that hold
them to the daemon: the metric names a PromQL expression reads, every query of the alert rules
and of the Grafana dashboard, and the metrics table of ``docs/metrics.md``.

Why a small PromQL reader of our own rather than a parser: the tests need the metric names an
expression reads, nothing else, and Prometheus's own parser is Go. What it reads is tested in
``test_documents.py`` on the shapes the rules and the dashboard use.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "runnerscale.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

#: Words of PromQL that are not metric names (functions and aggregations are told apart by
#: the parenthesis after them).
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
     "group_right", "offset", "inf", "nan"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's ``$variables`` allowed)."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _OFFSET.sub("", text)
    text = _NUMBER.sub("", text)
    names = set()
    for match in _NAME.finditer(text):
        word = match.group()
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function or aggregation
        names.add(word)
    return names


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of ``deploy/prometheus/alerts.yml``."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class LabelQuery:
    """A template variable's ``label_values(METRIC, LABEL)``."""

    variable: str
    metric: str
    label: str


def label_queries(board: dict[str, Any]) -> list[LabelQuery]:
    found = []
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", text.strip())
        if variable.get("type") == "query":
            assert match, f"variable {variable['name']}: not a label_values() query: {text!r}"
            found.append(LabelQuery(variable["name"], match.group(1), match.group(2)))
    return found


@dataclass(frozen=True)
class Documented:
    """One row of the metrics table of ``docs/metrics.md``."""

    name: str
    kind: str
    labels: frozenset[str]
    #: What the table says it means.
    meaning: str = ""


def documented_metrics() -> dict[str, Documented]:
    """The metrics table: rows whose first cell is a backticked ``runnerscale_`` name."""
    rows: dict[str, Documented] = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`runnerscale_\w+`", cells[0]):
            continue
        if cells[1] not in ("gauge", "counter", "histogram"):
            continue  # another table naming metrics (the ARC mapping)
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        labels = frozenset(re.findall(r"`(\w+)`", cells[2]))
        rows[name] = Documented(name, cells[1], labels, cells[3])
    return rows


def with_some_pools(row: Documented) -> bool:
    """Whether a documented metric has series only with some pools: those about the hosts of
    a pool over several (labelled by ``node``), and those whose meaning says which pools
    alone have them ("Pools with a ``budget`` only: ...")."""
    return "node" in row.labels or " only:" in row.meaning


#: Series names a histogram exposes besides its own.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
#: Metrics the rules and the dashboard may read that Prometheus itself makes.
PROMETHEUS_OWN = frozenset({"up"})


def series_names(name: str, kind: str) -> set[str]:
    """The names a metric's samples carry (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    if kind == "histogram":
        return {name + suffix for suffix in HISTOGRAM_SUFFIXES}
    return {name}


def queries() -> dict[str, str]:
    """Every PromQL query of the alert rules and the dashboard, by where it is."""
    found = {f"alert {rule['alert']}": str(rule["expr"]) for rule in alert_rules()}
    board = dashboard()
    for panel in panels(board):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def unknown_metrics(known: set[str]) -> dict[str, list[str]]:
    """The queries of the rules and the dashboard that read a metric not in ``known`` (series
    names), with those metrics; Prometheus's own (``up``) are known."""
    found = {}
    for where, expr in queries().items():
        unknown = metric_names(expr) - known - PROMETHEUS_OWN
        if unknown:
            found[where] = sorted(unknown)
    return found


def promtool() -> str:
    """The path of ``promtool`` (Debian's ``prometheus`` package). The test is skipped, saying
    why, only where it truly is missing: CI installs it (``scripts/install-system-deps``)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: bash scripts/install-system-deps installs it")
    return found
