"""The Grafana dashboard is well formed: every panel queries the dashboard's data source
variable, panels do not overlap, and every variable a query uses is defined. (What the queries
read is checked against the documentation in ``test_documents.py`` and against a live daemon in
``tests/e2e/test_metrics.py``.)"""

from __future__ import annotations

import re
import subprocess
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.documents import dashboard, panels, promtool, queries

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana's own variables (``$__rate_interval``, ``$__range``, ...).
BUILT_IN = re.compile(r"__\w+")
#: What Grafana puts in place of the variables, for Prometheus to parse the queries.
STAND_INS = {
    "$__rate_interval": "2m",
    "$__range": "6h",
    "$pool": ".*",
    "$price_per_runner_hour": "0.1",
}


def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    grid = panel["gridPos"]
    return {
        (x, y)
        for x in range(grid["x"], grid["x"] + grid["w"])
        for y in range(grid["y"], grid["y"] + grid["h"])
    }


def test_ids_are_unique_and_every_panel_queries_the_data_source_variable() -> None:
    board = dashboard()
    every = list(panels(board))
    assert len({panel["id"] for panel in every}) == len(every)
    for panel in every:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({target["refId"] for target in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panels_fit_the_grid_and_do_not_overlap() -> None:
    every = list(panels(dashboard()))
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for one, other in combinations(every, 2):
        assert not cells(one) & cells(other), (one["title"], other["title"])


def test_every_variable_a_query_uses_is_defined() -> None:
    board = dashboard()
    defined = {variable["name"] for variable in board["templating"]["list"]}
    assert {"datasource", "pool", "price_per_runner_hour"} <= defined
    for panel in panels(board):
        for target in panel.get("targets", []):
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            unknown = {name for name in used - defined if not BUILT_IN.fullmatch(name)}
            assert not unknown, (panel["title"], unknown)


def test_every_query_is_promql_prometheus_parses(tmp_path: Path) -> None:
    """Each query, its variables replaced as Grafana does, as a recording rule that
    ``promtool check rules`` parses."""
    rules = []
    panel_queries = [expr for where, expr in queries().items() if where.startswith("panel ")]
    for index, query in enumerate(panel_queries):
        expr = query
        for variable, value in STAND_INS.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"query_{index}", "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
