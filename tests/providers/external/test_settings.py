"""The ``external:`` block: the issue's configuration as written, the defaults, each error
naming what is wrong and how to fix it, and what is checked only when the pool is built (the
host's files, the daemon's metadata endpoints)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runnerscale.config.source import read_yaml
from runnerscale.protocols import ProviderError
from runnerscale.providers.external import BACKEND, ExternalProvider, build, pool_advice
from runnerscale.providers.external.settings import ExternalConfig
from runnerscale.providers.registry import BackendContext
from tests.providers.external.support import BIN, MemoryAccess
from tests.providers.settings_checks import FILE_HEAD, file_validator, validation_problems

#: The pool of issue 17, verbatim.
ISSUE_POOL = (Path(__file__).parent / "issue17.yaml").read_text()


def issue_block() -> dict[str, Any]:
    data, _ = read_yaml(ISSUE_POOL, "issue.yaml", {})
    block: dict[str, Any] = data["pools"][0]["external"]
    return block


def problems(block: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str]]:
    return validation_problems(ExternalConfig.model_validate, block)


def test_the_issue_configuration_validates_as_written() -> None:
    external = ExternalConfig.model_validate(issue_block())
    assert external.executable == "/usr/local/bin/garm-provider-lxd"
    assert external.config_file == "/etc/runnerscale/lxd-provider.toml"
    assert (external.image, external.flavor, external.timeout) == ("ubuntu:24.04", "default", 300)
    assert external.interface_version == "v0.1.0"  # what garm-provider-lxd speaks
    assert (external.os_type, external.arch, external.extra_specs) == ("linux", None, {})
    assert external.environment_variables == []


def test_defaults() -> None:
    external = ExternalConfig.model_validate({"executable": "/opt/p"})
    assert (external.config_file, external.image, external.flavor) == (None, "", "")
    assert external.timeout == 300.0
    ((message, at),) = [(item.message, item.at) for item in external.advice()]
    assert message.startswith("no config_file: providers built on garm-provider-common")
    assert at == ("config_file",)
    assert ExternalConfig.model_validate(issue_block()).advice() == []


@pytest.mark.parametrize(
    ("block", "where", "message", "hint"),
    [
        (
            {"executable": "garm-provider-lxd"},
            ("executable",),
            "the executable 'garm-provider-lxd' is not an absolute path",
            "e.g. /usr/local/bin/garm-provider-lxd",
        ),
        (
            {"executable": "/p", "config_file": "lxd.toml"},
            ("config_file",),
            "the config file 'lxd.toml' is not an absolute path",
            "give its absolute path",
        ),
        (
            {"executable": "/p", "environment_variables": ["PATH", ""]},
            ("environment_variables", 1),
            "an empty prefix would pass every variable of the daemon",
            "name the variables' prefix",
        ),
        (
            {"executable": "/p", "environment_variables": ["garm_"]},
            ("environment_variables", 0),
            "'garm_' would pass GARM_ variables",
            "remove it",
        ),
    ],
)
def test_errors_name_the_fix(
    block: dict[str, Any], where: tuple[Any, ...], message: str, hint: str
) -> None:
    ((found_where, found_message, found_hint),) = problems(block)
    assert found_where == where
    assert message in found_message
    assert hint in found_hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("interface_version", "v0.2.0"),
        ("os_type", "macos"),
        ("arch", "x64"),
        ("timeout", "0s"),
        ("flavour", "big"),
    ],
)
def test_values_outside_the_contract_are_refused(key: str, value: str) -> None:
    ((where, _, _),) = problems({"executable": "/p", key: value})
    assert where[0] == key


def context(tmp_path: Path, **changes: Any) -> BackendContext:
    values: dict[str, Any] = {
        "pool": "lxd",
        "controller_id": "ctl",
        "state_dir": tmp_path,
        "labels": frozenset({"self-hosted", "arm64"}),
        "instance_access": MemoryAccess(),
        **changes,
    }
    return BackendContext(**values)


def test_build_checks_the_hosts_files_and_the_daemon(tmp_path: Path) -> None:
    config_file = tmp_path / "p.toml"

    def attempt(**settings: Any) -> ProviderError:
        block = {"executable": str(BIN / "working"), "config_file": str(config_file), **settings}
        with pytest.raises(ProviderError) as raised:
            build(ExternalConfig.model_validate(block), context(tmp_path))
        return raised.value

    assert str(attempt(executable="/nonexistent/provider")) == (
        "pool 'lxd': the external executable /nonexistent/provider does not exist"
    )
    assert str(attempt()) == f"pool 'lxd': the external config_file {config_file} does not exist"
    config_file.write_text("STATE=/tmp\n")
    not_executable = tmp_path / "provider"
    not_executable.write_text("#!/bin/sh\n")
    assert str(attempt(executable=str(not_executable))) == (
        f"pool 'lxd': the external executable {not_executable} is not executable: chmod +x "
        f"{not_executable}"
    )
    os.chmod(not_executable, 0o755)
    settings = ExternalConfig.model_validate(
        {"executable": str(not_executable), "config_file": str(config_file)}
    )
    with pytest.raises(ProviderError, match="'lxd': the external backend needs the daemon"):
        build(settings, context(tmp_path, instance_access=None))
    provider = build(settings, context(tmp_path))
    assert isinstance(provider, ExternalProvider)
    assert provider.arch == "arm64"  # from the pool's labels


def test_an_arch_the_labels_contradict_is_advised_against() -> None:
    def advice(arch: str | None, labels: list[str]) -> list[tuple[str, tuple[Any, ...]]]:
        settings = ExternalConfig.model_validate({"executable": "/p", "arch": arch})
        return [(item.message, item.at) for item in pool_advice(settings, labels)]

    assert advice("arm64", ["self-hosted", "x64"]) == [
        (
            "is arm64, but the pool's labels name amd64: its jobs ask for amd64 and would run "
            "on arm64",
            ("arch",),
        )
    ]
    assert advice("arm64", ["self-hosted", "ARM64"]) == []
    assert advice("i386", ["self-hosted"]) == []
    assert advice(None, ["x64"]) == []


def test_the_backend_declares_its_events() -> None:
    assert BACKEND.events == {"command": ("ok", "failed", "timeout", "invalid_output")}
    assert BACKEND.settings is ExternalConfig


@pytest.mark.slow
def test_the_issue_file_passes_config_validate(tmp_path: Path) -> None:
    validate_file = file_validator(tmp_path, "external", "runnerscale.providers.external:BACKEND")
    good = validate_file(FILE_HEAD + ISSUE_POOL)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "lxd (external, max 8)" in good.stdout
    bad = validate_file(FILE_HEAD + ISSUE_POOL.replace("/usr/local/bin/", ""))
    assert bad.returncode == 2
    assert "pools[0].external.executable" in bad.stdout + bad.stderr
    assert "is not an absolute path" in bad.stdout + bad.stderr
