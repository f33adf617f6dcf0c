"""The Prometheus scrape configuration ``hosts bootstrap --monitoring`` prints: one target per
node at its host and the exporter's port, labelled with its pool, its name and its labels; and
Prometheus's own checker accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runnerscale.hosts.fleet import FleetNode
from runnerscale.hosts.scrape import scrape_config
from tests.hosts.nodes import fleet_node


def fleet() -> list[FleetNode]:
    return [
        fleet_node(host={"address": "node1.example.net", "slots": 4}),
        fleet_node(host={"address": "10.0.0.12:2222", "slots": 2, "labels": ["deploy"]}),
        fleet_node(host={"address": "[2001:db8::7]:22"}),
        fleet_node(pool="gpu", host={"address": "10.0.0.12:2222", "labels": ["gpu"]}),
    ]


def test_one_target_per_node_with_its_labels() -> None:
    document = yaml.safe_load(scrape_config(fleet()))
    (job,) = document["scrape_configs"]
    assert job["job_name"] == "runnerscale-nodes"
    assert job["static_configs"] == [
        {
            "targets": ["node1.example.net:9100"],
            "labels": {"pool": "vps", "node": "node1.example.net"},
        },
        {
            "targets": ["10.0.0.12:9100"],
            "labels": {"pool": "vps,gpu", "node": "10.0.0.12:2222", "node_labels": "deploy,gpu"},
        },
        {"targets": ["[2001:db8::7]:9100"], "labels": {"pool": "vps", "node": "[2001:db8::7]:22"}},
    ]


def test_promtool_accepts_it(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: bash scripts/install-system-deps installs it")
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(fleet()))
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
