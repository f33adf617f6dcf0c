"""The alert rules pass Prometheus's own checks, and its unit tests of them pass: every alert
fires on series that call for it and stays quiet on series that do not.

``promtool`` is Debian's (``scripts/install-system-deps``), the same code Prometheus runs the
rules with. That each rule reads only metrics the daemon exports is
``tests/e2e/test_metrics.py``'s to check, against a live ``/metrics``.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

import yaml

from tests.deploy.documents import ALERTS, alert_rules, promtool

ALERT_TESTS = ALERTS.with_name("alerts.test.yml")


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_pass_promtool_check_rules() -> None:
    done = run("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = run("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = defaultdict(set)
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test", []):
            cases[check["alertname"]].add(bool(check.get("exp_alerts")))
    alerts = {rule["alert"] for rule in alert_rules()}
    assert set(cases) == alerts
    assert {name: both for name, both in cases.items() if both != {True, False}} == {}


def test_every_alert_says_what_and_how_bad() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
