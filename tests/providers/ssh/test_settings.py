"""The ``ssh:`` block of a pool: the issue's configuration as written, defaults, and every
error naming what is wrong and how to fix it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runnerscale.config.base import Advice
from runnerscale.config.source import read_yaml
from runnerscale.providers.containers import ContainerOptions
from runnerscale.providers.docker.settings import DockerConfig
from runnerscale.providers.ssh.address import NodeAddress
from runnerscale.providers.ssh.settings import DEFAULT_PROCESS_COMMAND, SshConfig
from tests.providers.settings_checks import FILE_HEAD, file_validator, validation_problems

#: The pool of issue 14, verbatim.
ISSUE_POOL = (Path(__file__).parent / "issue14.yaml").read_text()
ENV = {"RUNNER_SSH_KEY_FILE": "/etc/runnerscale/id_ed25519"}
BASE = {
    "user": "runner",
    "known_hosts": "/etc/runnerscale/known_hosts",
    "image": "runnerscale-runner:latest",
    "hosts": [{"address": "node1"}],
}


def issue_block() -> dict[str, Any]:
    data, _ = read_yaml(ISSUE_POOL, "issue.yaml", ENV)
    block: dict[str, Any] = data["pools"][0]["ssh"]
    return block


def validate(block: dict[str, Any]) -> SshConfig:
    return SshConfig.model_validate(block, context={"env": ENV, "base_dir": Path("/cfg")})


def problems(block: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str]]:
    return validation_problems(validate, block)


def test_the_issue_configuration_validates_as_written() -> None:
    ssh = validate(issue_block())
    assert ssh.user == "runner"
    assert ssh.key_file == Path("/etc/runnerscale/id_ed25519")
    assert ssh.known_hosts == Path("/etc/runnerscale/known_hosts")
    assert (ssh.mode, ssh.image, ssh.placement) == ("docker", "runnerscale-runner:latest", "spread")
    assert ssh.nodes == (NodeAddress("node1.example.net"), NodeAddress("10.0.0.12", 2222))
    assert [str(node) for node in ssh.nodes] == ["node1.example.net", "10.0.0.12:2222"]
    assert [(host.slots, host.labels) for host in ssh.hosts] == [(4, []), (2, ["deploy"])]
    assert ssh.runner_command is None  # the image's entrypoint
    assert ssh.advice() == []


def test_a_host_label_the_pool_has_already_is_advised_against() -> None:
    block = issue_block()
    block["hosts"][1]["labels"] = ["deploy", "Docker", "X64"]
    ssh = validate(block)
    assert ssh.labels_advice(["self-hosted", "linux", "x64", "docker"]) == [
        Advice(
            "docker, x64 are among the pool's labels already: every runner of the pool has "
            "them, so they set this node apart from none (placement ignores them)",
            "remove docker, x64 from this host's labels; a host's labels are those only its "
            "jobs ask for (deploy)",
            at=("hosts", 1, "labels"),
        )
    ]
    assert ssh.labels_advice(["self-hosted", "linux"]) == []


def test_defaults() -> None:
    ssh = validate({**BASE})
    assert ssh.key_file is None  # the agent
    assert ssh.accept_new_host_keys is False
    assert (ssh.connect_timeout, ssh.keepalive_interval, ssh.command_timeout) == (10, 15, 60)
    assert (ssh.work_dir, ssh.docker_socket) == ("~/runnerscale", "/var/run/docker.sock")
    assert ssh.container == ContainerOptions()
    assert ssh.hosts[0].slots is None  # the node's CPU count
    assert ssh.stop_grace == 10.0


def test_process_mode_needs_no_image_and_runs_the_official_runner_by_default() -> None:
    block = {key: value for key, value in BASE.items() if key != "image"}
    ssh = validate({**block, "mode": "process"})
    assert ssh.runner_command == DEFAULT_PROCESS_COMMAND == ("/opt/actions-runner/run.sh",)
    custom = validate({**block, "mode": "process", "command": ["/srv/runner/run.sh", "--once"]})
    assert custom.runner_command == ("/srv/runner/run.sh", "--once")


def test_process_mode_warns_about_docker_settings_it_does_not_use() -> None:
    ssh = validate({**BASE, "mode": "process", "container": {"cpus": 2}})
    assert [(advice.at, advice.hint) for advice in ssh.advice()] == [
        (("image",), "remove image, or set mode: docker"),
        (("container",), "remove container, or set mode: docker"),
    ]
    docker = validate({**BASE, "work_dir": "/srv/runners"})
    assert [advice.at for advice in docker.advice()] == [("work_dir",)]


def test_the_container_block_takes_the_docker_backends_options() -> None:
    options = {
        "cpus": 1.5,
        "memory": "4g",
        "pids_limit": 2048,
        "work_tmpfs": "/home/runner/_work",
        "tmpfs_size": "2g",
        "volumes": {"go-cache": "/home/runner/go/pkg/mod"},
        "labels": {"team": "platform"},
        "network": "ci-net",
    }
    ssh = validate({**BASE, "container": options})
    assert ssh.container.memory == 4 * 1024**3
    docker = DockerConfig.model_validate({"image": "x:1", **options})
    assert ssh.container == ContainerOptions.model_validate(
        docker.model_dump(include=set(ContainerOptions.model_fields))
    )
    # The same checks, from the same definitions.
    assert set(ContainerOptions.model_fields) <= set(DockerConfig.model_fields)
    assert problems({**BASE, "container": {"volumes": {"/srv": "/data"}}})[0][1] == (
        "'/srv' is not a volume name"
    )
    assert problems({**BASE, "container": {"tmpfs_size": "1g"}})[0][2] == (
        "add work_tmpfs: /home/runner/_work, or remove tmpfs_size"
    )


@pytest.mark.parametrize(
    ("change", "where", "message", "hint"),
    [
        (
            {"image": None},
            ("image",),
            "is required in docker mode",
            "add image: runnerscale-runner:latest",
        ),
        ({"hosts": []}, ("hosts",), "List should have at least 1 item", ""),
        (
            {"hosts": [{"address": "node1"}, {"address": "NODE1:22"}]},
            ("hosts", 1, "address"),
            "'NODE1:22' is the same node as hosts[0] ('node1')",
            "list every node once; give it more slots instead",
        ),
        (
            {"hosts": [{"address": "node1", "slots": 0}]},
            ("hosts", 0, "slots"),
            "Input should be greater than or equal to 1",
            "",
        ),
        (
            {"hosts": [{"address": "runner@node1"}]},
            ("hosts", 0, "address"),
            "names a user; write the host only (the pool's ssh.user is the user)",
            "write the node's address",
        ),
        (
            {"hosts": [{"address": "node1:99999"}]},
            ("hosts", 0, "address"),
            "has port '99999'; a port is a number from 1 to 65535",
            "write the node's address",
        ),
        (
            {"hosts": [{"address": "node1", "labels": ["two words"]}]},
            ("hosts", 0, "labels", 0),
            "'two words' is not a label",
            "write one word per label",
        ),
        ({"mode": "vm"}, ("mode",), "Input should be 'docker' or 'process'", ""),
        ({"placement": "random"}, ("placement",), "Input should be 'spread' or 'pack'", ""),
        ({"user": "run ner"}, ("user",), "is not a user name", "write the nodes' runner user"),
        ({"work_dir": "runners"}, ("work_dir",), "is not an absolute path or a path under ~", ""),
        ({"docker_socket": "docker.sock"}, ("docker_socket",), "is not an absolute path", ""),
        ({"connect_timeout": "0s"}, ("connect_timeout",), "must be longer than 0s", ""),
        ({"command": []}, ("command",), "is empty", "write the runner's command"),
        ({"known_hosts": None}, ("known_hosts",), "Field required", ""),
        ({"env": {"RUNNERSCALE_POOL": "x"}}, ("env", "RUNNERSCALE_POOL"), "is reserved", ""),
        ({"hostz": []}, ("hostz",), "Extra inputs are not permitted", ""),
    ],
)
def test_errors_name_the_setting_and_the_fix(
    change: dict[str, Any], where: tuple[Any, ...], message: str, hint: str
) -> None:
    block = {key: value for key, value in {**BASE, **change}.items() if value is not None}
    found = problems(block)
    assert len(found) == 1, found
    (got_where, got_message, got_hint) = found[0]
    assert got_where == where
    assert message in got_message
    assert got_hint.startswith(hint)


@pytest.mark.slow
def test_the_whole_issue_file_validates_through_the_command_line(tmp_path: Path) -> None:
    """``runnerscale config validate`` on the issue's pool in a complete file: the block is a
    pool's ``ssh:`` block, and its errors name the file's line."""
    config = FILE_HEAD + ISSUE_POOL
    validate_file = file_validator(
        tmp_path, "ssh", "tests.providers.ssh.settings_backend:BACKEND", ENV
    )
    good = validate_file(config)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = validate_file(config.replace("address: 10.0.0.12:2222", "address: node1.example.net"))
    output = bad.stdout + bad.stderr
    assert bad.returncode == 2, output
    line = config.splitlines().index("        - address: 10.0.0.12:2222") + 1
    assert re.search(rf"runnerscale\.yaml:{line}: pools\[0\]\.ssh\.hosts\[1\]\.address: ", output)
    assert "is the same node as hosts[0]" in output
    # A host label the pool has already: a warning at the host's labels (the pool's advice).
    repeated = validate_file(config.replace("labels: [deploy]", "labels: [deploy, Docker]"))
    output = repeated.stdout + repeated.stderr
    assert repeated.returncode == 0, output
    line = next(n for n, text in enumerate(config.splitlines(), 1) if "labels: [deploy" in text)
    assert re.search(rf"runnerscale\.yaml:{line}: pools\[0\]\.ssh\.hosts\[1\]\.labels: ", output)
    assert "docker is among the pool's labels already" in output
