"""``deploy/kubernetes``: the manifests parse, refer to each other by the right names, and
the ConfigMap's config passes ``runnerscale config validate`` with the Secret's variables.

No cluster here: what can be checked without one is checked — every reference between the
objects (ConfigMap, Secrets, ports, labels), that the config's ``${VAR}`` references are all
provided, that the pod runs as the image's user and mounts the config where the image's
``CMD`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from runnerscale.cli import app
from runnerscale.config.source import referenced_variables
from tests.daemon_image import DAEMON_UID, DOCKERFILE, runtime_settings

MANIFESTS = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the manifests, by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        path.name for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml"
    )
    for name in listed:
        for document in yaml.safe_load_all((MANIFESTS / name).read_text()):
            assert {"apiVersion", "kind", "metadata"} <= document.keys(), name
            key = (document["kind"], document["metadata"]["name"])
            assert key not in found, key
            found[key] = document
    return found


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return documents()


def pod(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", "runnerscale")]["spec"]["template"]["spec"]
    return spec


def test_the_deployment_refers_to_objects_that_exist(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = objects[("Deployment", "runnerscale")]
    spec = pod(objects)
    (container,) = spec["containers"]
    for source in container["envFrom"]:
        assert ("Secret", source["secretRef"]["name"]) in objects
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in objects
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in objects
            assert volume["secret"]["defaultMode"] == 0o400
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects[("Service", "runnerscale")]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_pod_runs_the_image_as_its_user_with_the_config_where_the_image_reads_it(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    spec = pod(objects)
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsUser"] == DAEMON_UID
    assert f"--uid {DAEMON_UID}" in DOCKERFILE.read_text()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    image_cmd = next(line for line in runtime_settings() if line.startswith("CMD "))
    config_path = yaml.safe_load(image_cmd.removeprefix("CMD "))[-1]
    assert container["args"][-1] == config_path
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts[config_path]["subPath"] == "config.yaml"
    state_dir = next(
        line.split("=", 1)[1] for line in runtime_settings() if "RUNNERSCALE_STATE_DIR=" in line
    )
    assert state_dir in mounts  # writable with a read-only root filesystem


def test_the_configmaps_config_is_valid_with_the_secrets_variables(
    objects: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    text = objects[("ConfigMap", "runnerscale-config")]["data"]["config.yaml"]
    environment = objects[("Secret", "runnerscale-env")]["stringData"]
    assert set(referenced_variables(text)) <= set(environment)
    assert environment["RUNNERSCALE_STATE_URL"].startswith("postgresql://")  # two replicas
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["config", "validate", "-c", str(config)], env=environment)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    # The Docker engine's TLS files are where the Secret's volume puts them.
    mounts = {
        mount["name"]: mount["mountPath"] for mount in pod(objects)["containers"][0]["volumeMounts"]
    }
    files = objects[("Secret", "runnerscale-docker-tls")]["stringData"]
    for name in files:
        assert f"{mounts['docker-tls']}/{name}" in text
