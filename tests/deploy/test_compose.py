"""``deploy/compose.yml`` holds together: it parses, every file it mounts exists, each service
finds its files where it looks for them, and the daemon's config and Prometheus's config pass
their own checks. (No registry is reachable where the tests run, so the stack is not started.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from runnerscale.config import load_config
from tests.deploy.documents import DEPLOY, promtool

COMPOSE = DEPLOY / "compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def mounts(name: str) -> dict[str, str]:
    """A service's mounts: target in the container -> source (``./...`` or a volume's name)."""
    found = {}
    for volume in service(name).get("volumes", []):
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def mounted(name: str, path: str) -> Path:
    """The file of ``deploy/`` that a service sees at ``path`` (a bind mount of it or of a
    folder holding it)."""
    wanted = PurePosixPath(path)
    for target, source in mounts(name).items():
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            assert source.startswith("./"), f"{name}: {path} is in volume {source}"
            return DEPLOY / source / wanted.relative_to(target)
    raise AssertionError(f"{name} has nothing mounted at {path}")


def test_every_service_is_there_with_its_image() -> None:
    services = compose()["services"]
    assert set(services) == {"runnerscale", "fake-github", "prometheus", "alertmanager", "grafana"}
    assert services["runnerscale"]["image"] == "runnerscale:local"
    for name, one in services.items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", one["image"]), (name, "pin a tag")


def test_every_file_mounted_exists_and_every_volume_is_declared() -> None:
    declared = set(compose()["volumes"])
    for name in compose()["services"]:
        for source in mounts(name).values():
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)


def test_prometheus_finds_its_rules_and_scrapes_the_daemon_where_it_listens() -> None:
    config = yaml.safe_load(mounted("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert mounted("prometheus", f"/etc/prometheus/{rule_file}").is_file()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (target,) = jobs["runnerscale"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose()["services"]
    daemon = yaml.safe_load(mounted("runnerscale", "/etc/runnerscale/config.yaml").read_text())
    assert daemon["server"]["listen"] == f"0.0.0.0:{port}"
    (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager.split(":")[0] in compose()["services"]
    assert mounted("alertmanager", "/etc/alertmanager/alertmanager.yml").is_file()


def test_grafana_provisions_the_data_source_and_the_dashboard() -> None:
    provisioning = "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        mounted("grafana", f"{provisioning}/datasources/prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].split("//")[1].split(":")[0] in compose()["services"]
    providers = yaml.safe_load(
        mounted("grafana", f"{provisioning}/dashboards/runnerscale.yml").read_text()
    )
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    assert mounted("grafana", f"{folder}/runnerscale.json") == DEPLOY / "grafana/runnerscale.json"


def test_the_daemons_config_is_valid_with_the_secrets_compose_gives_it() -> None:
    environment = service("runnerscale")["environment"]
    path = mounted("runnerscale", "/etc/runnerscale/config.yaml")
    needed = set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert needed <= set(environment)
    env = {name: f"value-of-{name.lower()}-for-the-check" for name in needed}
    config = load_config(path, env={**env, "RUNNERSCALE_STATE_DIR": "/var/lib/runnerscale"})
    assert [pool.name for pool in config.pools] == ["linux"]


def test_prometheus_yml_passes_promtool_check_config() -> None:
    done = subprocess.run(
        [promtool(), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
