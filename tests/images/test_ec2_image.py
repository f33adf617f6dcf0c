"""The ec2 runner AMI's files that cannot run here (images/ec2): the Packer template, the
provisioning script, the boot unit and the IAM policies.

Packer and AWS are not at hand, so: the template parses as HCL2 (python-hcl2) and says what the
AMI needs; the unit passes ``systemd-analyze verify``; the policies keep IAM's grammar, every
AWS call the provider makes (found in ``src/runnerscale/providers/ec2`` by the operation names
of botocore's service models) is allowed by the daemon's policy, every call the boot script
makes by the instance's, and neither allows more than that and what IAM needs besides.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import hcl2
import pytest
from botocore import xform_name

from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.settings import Ec2Config
from tests.providers.settings_checks import file_validator
from tests.systemd import verify

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "images" / "ec2"
PROVIDER = ROOT / "src" / "runnerscale" / "providers" / "ec2"
IAM = IMAGE / "iam"
BOOT = IMAGE / "boot.sh"
PROVISION = IMAGE / "provision.sh"
UNIT = IMAGE / "runnerscale-boot.service"
TEMPLATE = IMAGE / "runner.pkr.hcl"

#: What IAM asks for beyond the API calls themselves, and why.
DAEMON_EXTRAS = {
    "iam:PassRole": "RunInstances with the template's instance profile",
    "iam:CreateServiceLinkedRole": "the first spot launch of an account",
    "ssm:AddTagsToResource": "PutParameter with Tags",
}
#: None: the parameters are encrypted with the account's key aws/ssm, whose key policy lets
#: every principal of the account use it through SSM (no kms: statement needed).
INSTANCE_EXTRAS: dict[str, str] = {}
#: Actions that are permissions only (no API operation of that name).
PERMISSION_ONLY = {"iam:PassRole"}
#: The EC2 and SSM actions that have no resource-level permissions: "Resource": "*" is a must.
RESOURCELESS = {
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplates",
    "ssm:DescribeParameters",
}
CONDITION_OPERATORS = {
    "StringEquals",
    "StringLike",
    "ArnEquals",
    "ArnLike",
    "Null",
    "ForAllValues:StringEquals",
    "ForAnyValue:StringEquals",
}
#: The policy variables the policies may use: documented ones only (IAM's "Request information
#: that you can use for policy variables"; ``${ec2:InstanceID}`` is not one).
POLICY_VARIABLES = {"${ec2:SourceInstanceARN}"}
CANONICAL = "099720109477"


def policy(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((IAM / name).read_text())
    return loaded


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def actions_of(document: dict[str, Any]) -> set[str]:
    return {action for s in document["Statement"] for action in as_list(s["Action"])}


def allows(document: dict[str, Any], action: str) -> bool:
    """Some Allow statement names ``action`` (conditions are not evaluated)."""
    return any(
        statement["Effect"] == "Allow"
        and any(
            fnmatch.fnmatchcase(action.lower(), pattern.lower())
            for pattern in as_list(statement["Action"])
        )
        for statement in document["Statement"]
    )


@cache
def operations(service: str) -> dict[str, str]:
    """botocore's operations of ``service``, by their Python name: run_instances: RunInstances."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def provider_calls() -> set[str]:
    """The IAM actions of the AWS calls in the provider's package: method calls and paginators
    named like an EC2 or SSM operation."""
    text = "\n".join(path.read_text() for path in sorted(PROVIDER.glob("*.py")))
    names = set(re.findall(r"\.([a-z][a-z0-9_]*)\(", text))
    names |= set(re.findall(r"get_paginator\(\s*\"([a-z_]+)\"", text))
    return {
        f"{service}:{operations(service)[name]}"
        for service in ("ec2", "ssm")
        for name in names
        if name in operations(service)
    }


def boot_calls() -> set[str]:
    """The IAM actions of the boot script's aws CLI calls (``aws_cli SERVICE OPERATION``)."""
    found = re.findall(r"aws_cli (ec2|ssm) ([a-z-]+)", BOOT.read_text())
    return {f"{service}:{operations(service)[op.replace('-', '_')]}" for service, op in found}


@pytest.mark.parametrize(
    "name", ["daemon-policy.json", "instance-policy.json", "instance-trust-policy.json"]
)
def test_each_policy_keeps_the_iam_grammar(name: str) -> None:
    document = policy(name)
    assert set(document) == {"Version", "Statement"}
    assert document["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids)), "each Sid once"
    for statement in document["Statement"]:
        assert all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        for action in as_list(statement["Action"]):
            service, _, operation = action.partition(":")
            assert "*" not in action, f"{action}: name every action"
            if action not in PERMISSION_ONLY:
                assert operation in operations(service).values(), f"{action}: no such action"
        for operator, keys in statement.get("Condition", {}).items():
            assert operator in CONDITION_OPERATORS, operator
            for key, value in keys.items():
                assert re.fullmatch(r"(aws|ec2|iam|ssm):[A-Za-z0-9/:_-]+", key), key
                assert isinstance(value, (str, list))
        text = json.dumps(statement)
        assert set(re.findall(r"\$\{[^}]*\}", text)) <= POLICY_VARIABLES


@pytest.mark.parametrize("name", ["daemon-policy.json", "instance-policy.json"])
def test_resources_are_arns_and_a_wildcard_only_where_iam_has_no_resources(name: str) -> None:
    for statement in policy(name)["Statement"]:
        resources = as_list(statement["Resource"])
        if resources == ["*"]:
            assert set(as_list(statement["Action"])) <= RESOURCELESS, statement["Sid"]
            continue
        for resource in resources:
            service = statement["Action"] if isinstance(statement["Action"], str) else ""
            assert re.fullmatch(r"arn:aws:(ec2|ssm|iam):[a-z0-9*-]*:[0-9*]*:\S+", resource)
            if service.startswith(("ec2:", "ssm:")):
                assert resource.startswith(f"arn:aws:{service.partition(':')[0]}:")


def test_every_call_the_provider_makes_is_allowed_to_the_daemon_and_nothing_more() -> None:
    calls = provider_calls()
    # The provider as it stands (a new call shows here, and needs the policy to allow it).
    assert calls == {
        "ec2:CreateTags",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplates",
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "ssm:DeleteParameter",
        "ssm:DescribeParameters",
        "ssm:ListTagsForResource",
        "ssm:PutParameter",
    }
    daemon = policy("daemon-policy.json")
    assert sorted(call for call in calls if not allows(daemon, call)) == []
    assert actions_of(daemon) == calls | set(DAEMON_EXTRAS)


def test_every_call_the_boot_script_makes_is_allowed_to_the_instance_and_nothing_more() -> None:
    calls = boot_calls()
    assert calls == {"ssm:GetParameter", "ssm:DeleteParameter", "ec2:CreateTags"}
    instance = policy("instance-policy.json")
    assert sorted(call for call in calls if not allows(instance, call)) == []
    assert actions_of(instance) == calls | set(INSTANCE_EXTRAS)


def test_the_policies_name_the_default_prefix_and_the_backends_tags() -> None:
    prefix = Ec2Config.model_fields["ssm_parameter_prefix"].default
    daemon = json.dumps(policy("daemon-policy.json"))
    instance = json.dumps(policy("instance-policy.json"))
    assert f"parameter{prefix}/*" in daemon
    assert f"parameter{prefix}/*" in instance
    (own,) = [
        s
        for s in policy("instance-policy.json")["Statement"]
        if "Condition" in s and "ssm:GetParameter" in as_list(s["Action"])
    ]
    # Its own parameter only: the one the daemon tagged with its ARN.
    assert own["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{tags.INSTANCE_ARN}": "${ec2:SourceInstanceARN}"}
    }
    assert f"aws:RequestTag/{tags.CONTROLLER}" in daemon  # launches carry the controller id
    assert f"aws:ResourceTag/{tags.CONTROLLER}" in daemon  # and only those are touched
    assert f'"{tags.HANDOFF}"' in daemon
    statement = next(
        s for s in policy("instance-policy.json")["Statement"] if s["Action"] == "ec2:CreateTags"
    )
    condition = statement["Condition"]
    assert condition["ForAllValues:StringEquals"]["aws:TagKeys"] == [tags.INTERRUPTION]
    allowed = condition["StringEquals"][f"aws:RequestTag/{tags.INTERRUPTION}"]
    assert tuple(allowed) == tags.INTERRUPTION_KINDS
    assert condition["StringEquals"]["aws:ARN"] == "${ec2:SourceInstanceARN}"  # itself only


def test_the_daemon_passes_only_the_runner_role_and_only_to_ec2() -> None:
    (statement,) = [
        s for s in policy("daemon-policy.json")["Statement"] if s["Action"] == "iam:PassRole"
    ]
    assert statement["Resource"] == "arn:aws:iam::*:role/runnerscale-runner"
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    trust = policy("instance-trust-policy.json")["Statement"]
    assert trust[0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def plain(value: Any) -> Any:
    """python-hcl2's output without its quotes around strings and keys and its block marks."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed: dict[str, Any] = plain(hcl2.loads(TEMPLATE.read_text()))
    return parsed


def test_the_template_builds_from_canonicals_newest_ubuntu_24_04(template: dict[str, Any]) -> None:
    (sources,) = template["source"]
    source = sources["amazon-ebs"]["runner"]
    (ami_filter,) = source["source_ami_filter"]
    assert ami_filter["owners"] == [CANONICAL]
    assert ami_filter["most_recent"] is True
    assert "ubuntu-noble-24.04-" in ami_filter["filters"]["name"]
    assert ami_filter["filters"]["name"].startswith("ubuntu/images/hvm-ssd-gp3/")
    assert source["imds_support"] == "v2.0"
    (metadata,) = source["metadata_options"]
    assert metadata["http_tokens"] == "required"


def test_the_runner_is_given_by_version_and_checksum(template: dict[str, Any]) -> None:
    variables = {name: body for entry in template["variable"] for name, body in entry.items()}
    assert {"runner_version", "runner_sha256", "architecture", "region"} <= set(variables)
    # The same release as the Docker backend's image, until both are moved on together.
    dockerfile = (ROOT / "images" / "runner" / "Dockerfile").read_text()
    (image_version,) = re.findall(r"^ARG RUNNER_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert variables["runner_version"]["default"] == image_version
    assert "default" not in variables["runner_sha256"]  # no build without the checksum
    assert "[0-9a-f]{64}" in variables["runner_sha256"]["validation"][0]["condition"]


def test_the_build_installs_the_boot_script_and_unit_that_are_here(
    template: dict[str, Any],
) -> None:
    (build,) = template["build"]
    provisioners = [(kind, body) for entry in build["provisioner"] for kind, body in entry.items()]
    copied = {
        body["source"].replace("${path.root}/", ""): body["destination"]
        for kind, body in provisioners
        if kind == "file"
    }
    assert copied == {
        "boot.sh": "/tmp/runnerscale-boot",
        "runnerscale-boot.service": "/tmp/runnerscale-boot.service",
    }
    (shell,) = [body for kind, body in provisioners if kind == "shell"]
    assert shell["script"] == "${path.root}/provision.sh"
    given = {entry.partition("=")[0] for entry in shell["environment_vars"]}
    provision = PROVISION.read_text()
    assert given == set(re.findall(r"\$\{(RUNNER_[A-Z0-9_]+)[:}]", provision))
    for name in copied:
        assert (IMAGE / name).is_file()
    for destination in copied.values():
        assert f"{destination} " in provision  # installed from there
    # Installed where the unit runs it from, the runner where the boot script looks for it.
    (boot_path,) = re.findall(r"^readonly BOOT=(\S+)$", provision, re.MULTILINE)
    assert f"ExecStart={boot_path}\n" in UNIT.read_text()
    (runner_home,) = re.findall(r"^readonly RUNNER_HOME=(\S+)$", provision, re.MULTILINE)
    assert f'RUNNER_HOME="${{RUNNER_HOME:-{runner_home}}}"' in BOOT.read_text()
    assert "systemctl enable runnerscale-boot.service" in provision
    assert 'RUNNER_USER="${RUNNERSCALE_RUNNER_USER:-runner}"' in BOOT.read_text()
    assert "useradd --uid 1001 --create-home --shell /bin/bash --groups docker runner" in provision


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as installed, but running the boot script from here (verify wants the command
    to exist)."""
    unit = UNIT.read_text()
    assert "SuccessAction=poweroff" in unit.splitlines()
    assert "FailureAction=poweroff" in unit.splitlines()
    copy = tmp_path / UNIT.name
    copy.write_text(unit.replace("ExecStart=/usr/local/sbin/runnerscale-boot", f"ExecStart={BOOT}"))
    verify(copy)


@pytest.mark.parametrize("script", [BOOT, PROVISION], ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "")


def test_the_pool_of_the_backends_page_validates_as_written(tmp_path: Path) -> None:
    """docs/backends/ec2.md's configuration (step 6), with the issue's block in it, through
    ``runnerscale config validate``."""
    page = (ROOT / "docs" / "backends" / "ec2.md").read_text()
    found = re.search(r"```yaml\n(.*?)```", page.split("### 6. The pool", 1)[1], re.DOTALL)
    assert found is not None
    documented = found.group(1)
    issue = (ROOT / "tests" / "providers" / "ec2" / "issue15.yaml").read_text()
    for line in issue.splitlines()[6:-1]:  # the issue's ec2: block, as written
        assert line.split("#")[0].rstrip() in documented
    validate_file = file_validator(
        tmp_path, "ec2", "runnerscale.providers.ec2:BACKEND", env={"GITHUB_TOKEN": "ghp_doc"}
    )
    done = validate_file(documented)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ec2-x64 (ec2, max 50)" in done.stdout
