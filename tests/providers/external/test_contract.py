"""garm's contract, pure: the environment per command and version (GARM.md §1.2), the
bootstrap document's keys (§3), the output's rules (§2.1, §4) and the ids."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from runnerscale.instance_access import InstanceGrant, InstanceReport
from runnerscale.model import Instance
from runnerscale.providers.external import contract
from runnerscale.providers.external.contract import InvalidOutputError
from tests.providers.external.support import USER_DATA_OPTIONS

IDENTITY = contract.Identity(controller_id="c-uuid", pool_id="p-uuid")
BASE = {
    "GARM_CONTROLLER_ID": "c-uuid",
    "GARM_PROVIDER_CONFIG_FILE": "/etc/p.toml",
}
INHERITED = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "GITHUB_TOKEN": "ghp_secret",
    "RUNNERSCALE_ADMIN_TOKEN": "admin",
    "http_proxy": "http://proxy:3128",
    "NO_PROXY": "localhost",
    "LXD_SOCKET": "/var/lib/lxd/unix.socket",
    "GARM_COMMAND": "Injected",
    "GARM_EXTRA": "x",
}


def env(command: contract.Command, version: str, **kwargs: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "identity": IDENTITY,
        "version": version,
        "config_file": "/etc/p.toml",
        "extra_specs": {},
        "instance_id": "i-1",
        "inherited": {},
        "prefixes": [],
        **kwargs,
    }
    return contract.environment(command, **arguments)  # type: ignore[arg-type]


# (command, v0.1.0's extra variables, v0.1.1's extra variables): GARM.md §1.2's table.
TABLE: list[tuple[contract.Command, set[str], set[str]]] = [
    ("CreateInstance", {"GARM_POOL_ID"}, {"GARM_POOL_ID", "GARM_POOL_EXTRASPECS"}),
    (
        "DeleteInstance",
        {"GARM_INSTANCE_ID"},
        {"GARM_INSTANCE_ID", "GARM_POOL_ID", "GARM_POOL_EXTRASPECS"},
    ),
    (
        "GetInstance",
        {"GARM_INSTANCE_ID"},
        {"GARM_INSTANCE_ID", "GARM_POOL_ID", "GARM_POOL_EXTRASPECS"},
    ),
    ("ListInstances", {"GARM_POOL_ID"}, {"GARM_POOL_ID", "GARM_POOL_EXTRASPECS"}),
    ("RemoveAllInstances", set(), {"GARM_POOL_ID", "GARM_POOL_EXTRASPECS"}),
    (
        "StartInstance",
        {"GARM_INSTANCE_ID"},
        {"GARM_INSTANCE_ID", "GARM_POOL_ID", "GARM_POOL_EXTRASPECS"},
    ),
    (
        "StopInstance",
        {"GARM_INSTANCE_ID"},
        {"GARM_INSTANCE_ID", "GARM_POOL_ID", "GARM_POOL_EXTRASPECS"},
    ),
]


@pytest.mark.parametrize(("command", "v010", "v011"), TABLE)
def test_the_environment_per_command_and_version(
    command: contract.Command, v010: set[str], v011: set[str]
) -> None:
    values = {
        "GARM_POOL_ID": "p-uuid",
        "GARM_INSTANCE_ID": "i-1",
        "GARM_POOL_EXTRASPECS": "bnVsbA==",  # null: no extra specs, as garm sends it
    }
    for version, extra in (("v0.1.0", v010), ("v0.1.1", v011)):
        expected = {
            **BASE,
            "GARM_COMMAND": command,
            "GARM_INTERFACE_VERSION": version,
            **{name: values[name] for name in extra},
        }
        assert env(command, version) == expected, version


def test_extra_specs_are_base64_json_with_v011() -> None:
    found = env("ListInstances", "v0.1.1", extra_specs={"disk": 20, "tags": ["a"]})
    assert json.loads(base64.b64decode(found["GARM_POOL_EXTRASPECS"])) == {
        "disk": 20,
        "tags": ["a"],
    }


def test_no_config_file_is_an_empty_string() -> None:
    assert env("ListInstances", "v0.1.0", config_file=None)["GARM_PROVIDER_CONFIG_FILE"] == ""


def test_the_environment_is_clean_but_for_proxies_and_the_configured_prefixes() -> None:
    found = env("ListInstances", "v0.1.0", inherited=INHERITED)
    assert found["GARM_COMMAND"] == "ListInstances"
    assert "GARM_EXTRA" not in found
    passed = {name for name in found if not name.startswith("GARM_")}
    assert passed == {"http_proxy", "NO_PROXY"}
    found = env("ListInstances", "v0.1.0", inherited=INHERITED, prefixes=["LXD_", "PATH", "GA"])
    passed = {name for name in found if not name.startswith("GARM_")}
    assert passed == {"http_proxy", "NO_PROXY", "LXD_SOCKET", "PATH"}
    assert "GITHUB_TOKEN" not in found
    assert "RUNNERSCALE_ADMIN_TOKEN" not in found


def test_a_per_instance_command_needs_an_instance_id() -> None:
    with pytest.raises(ValueError, match="DeleteInstance needs an instance id"):
        env("DeleteInstance", "v0.1.0", instance_id=None)


def test_ids_are_uuids_and_stable() -> None:
    given = "5b3e1c9a-6f1e-4c55-8d3a-0e0a6e3b8f10"
    assert contract.controller_uuid(given) == given
    derived = contract.controller_uuid("ci-east")
    assert derived == contract.controller_uuid("ci-east") != contract.controller_uuid("ci-west")
    assert uuid.UUID(derived).version == 5
    pool = contract.pool_uuid(derived, "lxd")
    assert pool == contract.pool_uuid(derived, "lxd") != contract.pool_uuid(derived, "lxd2")
    assert pool != contract.pool_uuid(contract.controller_uuid("ci-west"), "lxd")


@pytest.mark.parametrize(
    ("labels", "arch"),
    [
        (["self-hosted", "linux", "x64"], "amd64"),
        (["self-hosted", "ARM64"], "arm64"),
        (["arm"], "arm"),
        (["self-hosted", "gpu"], "amd64"),
    ],
)
def test_arch_from_labels(labels: list[str], arch: str) -> None:
    assert contract.arch_from_labels(labels) == arch


def grant() -> InstanceGrant:
    return InstanceGrant(
        runner_name="r-1",
        token="itok-secret",
        metadata_url="http://d/api/v1/metadata",
        callback_url="http://d/api/v1/callbacks",
        expires_at=1.0,
    )


def bootstrap(**changes: object) -> contract.Bootstrap:
    values: dict[str, object] = {
        "name": "r-1",
        "tools": [{"os": "linux", "architecture": "x64", "download_url": "u", "filename": "f"}],
        "repo_url": "https://github.com/acme/app",
        "runner_group": "ci",
        "extra_specs": {},
        "arch": "amd64",
        "os_type": "linux",
        "flavor": "default",
        "image": "ubuntu:24.04",
        "pool_id": "p-uuid",
        "proxy": {"http_proxy": "http://proxy:3128", "https_proxy": "", "no_proxy": ""},
        **changes,
    }
    return contract.Bootstrap(**values)  # type: ignore[arg-type]


def test_the_bootstrap_document_has_garms_keys_in_order() -> None:
    raw = contract.bootstrap_document(bootstrap(), grant())
    assert b" " not in raw.replace(b"ubuntu:24.04", b"")  # compact, like Go's encoder
    document = json.loads(raw)
    assert list(document) == [
        "name",
        "tools",
        "repo_url",
        "callback-url",
        "metadata-url",
        "instance-token",
        "ssh-keys",
        "github-runner-group",
        "ca-cert-bundle",
        "arch",
        "os_type",
        "flavor",
        "image",
        "labels",
        "pool_id",
        "user_data_options",
        "jit_config_enabled",
        "proxy_config",
    ]
    assert document == {
        "name": "r-1",
        "tools": [{"os": "linux", "architecture": "x64", "download_url": "u", "filename": "f"}],
        "repo_url": "https://github.com/acme/app",
        "callback-url": "http://d/api/v1/callbacks",
        "metadata-url": "http://d/api/v1/metadata",
        "instance-token": "itok-secret",
        "ssh-keys": None,
        "github-runner-group": "ci",
        "ca-cert-bundle": None,
        "arch": "amd64",
        "os_type": "linux",
        "flavor": "default",
        "image": "ubuntu:24.04",
        "labels": None,
        "pool_id": "p-uuid",
        "user_data_options": USER_DATA_OPTIONS,
        "jit_config_enabled": True,
        "proxy_config": {"http_proxy": "http://proxy:3128", "https_proxy": "", "no_proxy": ""},
    }


def test_extra_specs_go_in_the_bootstrap_when_given() -> None:
    document = json.loads(contract.bootstrap_document(bootstrap(extra_specs={"a": 1}), grant()))
    assert document["extra_specs"] == {"a": 1}
    assert list(document).index("extra_specs") == list(document).index("ssh-keys") + 1


def test_tools_keep_garms_keys_only() -> None:
    downloads = [
        {
            "os": "linux",
            "architecture": "arm64",
            "download_url": "https://x/r.tgz",
            "filename": "r.tgz",
            "sha256_checksum": "abc",
            "temp_download_token": "",
            "other": "dropped",
        }
    ]
    assert contract.tools_from_downloads(downloads) == [
        {
            "os": "linux",
            "architecture": "arm64",
            "download_url": "https://x/r.tgz",
            "filename": "r.tgz",
            "sha256_checksum": "abc",
        }
    ]


def test_proxy_config_from_the_environment() -> None:
    assert contract.proxy_config({"HTTPS_PROXY": "http://p", "no_proxy": "localhost"}) == {
        "http_proxy": "",
        "https_proxy": "http://p",
        "no_proxy": "localhost",
    }
    assert contract.proxy_config({}) == {"http_proxy": "", "https_proxy": "", "no_proxy": ""}


GOOD = {
    "provider_id": "lxd-1",
    "name": "r-1",
    "os_type": "linux",
    "os_name": "ubuntu",
    "os_version": "24.04",
    "os_arch": "amd64",
    "addresses": [{"address": "10.0.0.5", "type": "private"}],
    "status": "running",
    "unknown_key": "ignored",
}


def test_an_instance_is_parsed() -> None:
    found = contract.parse_instance(json.dumps(GOOD).encode())
    assert found == contract.ProviderInstance(
        provider_id="lxd-1",
        name="r-1",
        status="running",
        os_name="ubuntu",
        os_version="24.04",
        addresses=("10.0.0.5 (private)",),
    )
    assert contract.to_instance(found, "lxd", None) == Instance(
        id="lxd-1",
        runner_name="r-1",
        pool="lxd",
        running=True,
        detail="ubuntu 24.04; 10.0.0.5 (private)",
    )


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"", "output is empty, expected JSON"),
        (b"Creating...\n", "output is not JSON"),
        (b"[]", "expected a JSON object, got list"),
        (b'{"name": "r", "status": "running"}', "missing provider_id"),
        (b'{"provider_id": "", "name": "r", "status": "running"}', "missing provider_id"),
        (b'{"provider_id": "p", "status": "running"}', "missing name"),
        (b'{"provider_id": "p", "name": "r"}', "invalid status ''"),
        (b'{"provider_id": "p", "name": "r", "status": "creating"}', "invalid status 'creating'"),
        (b'{"provider_id": 5, "name": "r", "status": "running"}', "provider_id is int"),
        (b'{"provider_id": "p", "name": "r", "status": "running", "addresses": 1}', "addresses"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_output_says_what_is_wrong(output: bytes, message: str) -> None:
    with pytest.raises(InvalidOutputError, match=message.replace("(", r"\(")):
        contract.parse_instance(output)


def test_a_list_is_an_array_and_null_is_empty() -> None:
    assert contract.parse_instances(b"[]") == []
    assert contract.parse_instances(b"null") == []
    assert [i.name for i in contract.parse_instances(json.dumps([GOOD, GOOD]).encode())] == [
        "r-1",
        "r-1",
    ]
    with pytest.raises(InvalidOutputError, match="expected a JSON array, got dict"):
        contract.parse_instances(b"{}")
    with pytest.raises(InvalidOutputError, match="element 1: missing name"):
        contract.parse_instances(json.dumps([GOOD, {"provider_id": "x"}]).encode())


def test_faults_are_base64_and_plain_text_is_tolerated() -> None:
    encoded = base64.b64encode(b"quota exceeded").decode()
    assert contract.decode_fault(encoded) == "quota exceeded"
    assert contract.decode_fault("boom: no room") == "boom: no room"
    assert contract.decode_fault("") == ""
    found = contract.parse_instance(
        json.dumps({**GOOD, "status": "error", "provider_fault": encoded}).encode()
    )
    instance = contract.to_instance(found, "lxd", None)
    assert not instance.running
    assert "status error" in instance.detail
    assert "fault: quota exceeded" in instance.detail


def test_a_failed_boot_report_means_not_running() -> None:
    found = contract.parse_instance(json.dumps(GOOD).encode())
    report = InstanceReport(status="failed", message="no disk\x1b[31m", at=0.0, failed=True)
    instance = contract.to_instance(found, "lxd", report)
    assert not instance.running
    assert "the instance reported failure: no disk\\x1b[31m" in instance.detail
    installing = InstanceReport(status="installing", message="downloading", at=0.0)
    assert contract.to_instance(found, "lxd", installing).running
