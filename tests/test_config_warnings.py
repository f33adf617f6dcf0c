"""Warnings of a valid configuration: settings that work but should change, each with its line
and its fix. ``config validate`` prints them and still exits 0; ``runnerscale run`` logs them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runnerscale.cli import app
from runnerscale.config import check_config
from tests.test_config import APP_PATH, ENV, EXAMPLE, EXAMPLE_PATH, edit
from tests.test_config_docker import DOCKER

ON_THE_COMMAND_LINE = "puts the JIT config on the runner's command line"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rs.yaml"
    path.write_text(text)
    return path


def test_a_jitconfig_on_a_local_command_line_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, edit("sim-runner]", 'sim-runner, --jitconfig, "{jitconfig}"]'))
    config, warnings = check_config(path, env=ENV)
    local = config.pools[0].local
    assert local is not None
    assert local.command[-1] == "{jitconfig}"  # valid: it still works
    [warning] = warnings
    assert (warning.file, warning.line, warning.path) == (
        str(path),
        19,
        "pools[0].local.command[3]",
    )
    assert ON_THE_COMMAND_LINE in warning.message
    assert "every local user can read it" in warning.message
    assert 'remove "{jitconfig}" (and the --jitconfig before it)' in warning.hint
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG" in warning.hint


def test_a_jitconfig_in_a_docker_command_is_a_warning_for_each_argument(tmp_path: Path) -> None:
    command = (
        "      command:\n"
        "        - /home/runner/run.sh\n"
        '        - "--jitconfig={jitconfig}"\n'
        '        - "--name={runner_name}"\n'
        '        - "{jitconfig}"\n'
    )
    text = edit("      pull: never\n", "      pull: never\n" + command, DOCKER)
    line = text.splitlines().index('        - "--jitconfig={jitconfig}"') + 1
    _, warnings = check_config(write(tmp_path, text), env=ENV)
    assert [(w.line, w.path) for w in warnings] == [
        (line, "pools[0].docker.command[1]"),
        (line + 2, "pools[0].docker.command[3]"),
    ]
    assert all(ON_THE_COMMAND_LINE in warning.message for warning in warnings)


@pytest.mark.parametrize("path", [EXAMPLE_PATH, APP_PATH], ids=["example", "app"])
def test_the_examples_have_no_warning(path: Path) -> None:
    assert check_config(path, env=ENV)[1] == []


def test_config_validate_prints_the_warning_and_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, edit("sim-runner]", 'sim-runner, --jitconfig, "{jitconfig}"]'))
    result = CliRunner().invoke(app, ["config", "validate", "-c", str(path)], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: valid. pools: linux-x64 (local, max 4)\n"
    assert result.stderr.startswith(
        f"warning: {path}:19: pools[0].local.command[3]: {ON_THE_COMMAND_LINE}"
    )
    assert '— remove "{jitconfig}"' in result.stderr
    clean = CliRunner().invoke(
        app, ["config", "validate", "-c", str(write(tmp_path, EXAMPLE))], env=ENV
    )
    assert clean.exit_code == 0
    assert clean.stderr == ""


def test_a_max_runners_above_the_local_capacity_is_a_warning(tmp_path: Path) -> None:
    """The local backend runs at most its capacity (by default the CPU count): a larger
    max_runners was capped without a word (issue 13, 5)."""
    path = write(tmp_path, edit("      capacity: 4 ", "      capacity: 2 "))
    [warning] = check_config(path, env=ENV)[1]
    assert (warning.line, warning.path) == (15, "pools[0].max_runners")
    assert warning.message == (
        "is 4, but the pool runs at most 2 runners: its local backend's capacity here is 2 "
        "(local.capacity)"
    )
    assert "lower max_runners to 2, or set local.capacity to 4" in warning.hint


def test_an_unset_local_capacity_is_the_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    text = "\n".join(line for line in EXAMPLE.splitlines() if "capacity" not in line)
    [warning] = check_config(write(tmp_path, text), env=ENV)[1]
    assert warning.message.endswith("(local.capacity, unset: the CPU count)")
