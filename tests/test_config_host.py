"""What a file cannot do on this host, which ``config validate`` and ``runnerscale run`` refuse
before any runner starts (issue 13): a runner command that is not here, a local pool naming an
architecture this host does not have. And a label set no job asks for: a warning.

Before, ``config validate`` said ``valid`` and ``run`` failed at its first runner (the command)
or at start (the architecture)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runnerscale.cli import app
from runnerscale.config import ConfigError, Problem, check_config, check_text, load_config
from runnerscale.hostlabels import normalize_arch
from tests.documented import documented_example
from tests.test_config import ENV, edit
from tests.test_config_docker import DOCKER

COMMAND = "      command: [runnerscale, sim-runner]"
HERE = normalize_arch(platform.machine()) or "x64"
OTHER = "arm64" if HERE != "arm64" else "x64"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rs.yaml"
    path.write_text(text)
    return path


@pytest.mark.skipif(HERE != "x64", reason="the documented example is an x64 pool")
def test_the_documented_example_passes_the_host_checks(tmp_path: Path) -> None:
    config, _ = check_config(write(tmp_path, documented_example()), env=ENV)
    assert config.pools[0].local is not None


def refused(path: Path) -> Problem:
    with pytest.raises(ConfigError) as caught:
        check_config(path, env=ENV)
    [problem] = caught.value.problems
    return problem


def test_runnerscale_as_the_runner_program_is_this_runnerscale(tmp_path: Path) -> None:
    """Found without the venv on PATH, and the daemon's own version."""
    local = load_config(write(tmp_path, edit("x64]", f"{HERE}]")), env=ENV).pools[0].local
    assert local is not None
    assert local.argv == (sys.executable, "-m", "runnerscale", "sim-runner")
    assert local.host_problems() == []


@pytest.mark.parametrize(
    ("command", "message", "hint"),
    [
        ("[no-such-runner-program]", "'no-such-runner-program' is not on PATH (", "absolute path"),
        ("[./run.sh]", "is relative to the runner's working directory", "docs/backends/local.md"),
        ("[/opt/no-such/run.sh]", "/opt/no-such/run.sh does not exist", "path of the runner"),
        ("[{tmp}/run.sh]", "{tmp}/run.sh is not executable", "chmod +x {tmp}/run.sh"),
    ],
    ids=["not-on-path", "relative", "missing", "not-executable"],
)
def test_a_runner_command_that_cannot_start_here_is_an_error(
    tmp_path: Path, command: str, message: str, hint: str
) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")  # not executable
    command, message, hint = (
        text.replace("{tmp}", str(tmp_path)) for text in (command, message, hint)
    )
    text = edit("x64]", f"{HERE}]", edit(COMMAND, f"      command: {command}"))
    problem = refused(write(tmp_path, text))
    assert (problem.line, problem.path) == (19, "pools[0].local.command[0]")
    assert message in problem.message
    assert hint in problem.hint


def test_a_program_on_the_runner_s_own_path_is_found(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "my-runner"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = edit(COMMAND, f"      command: [my-runner]\n      env: {{PATH: '{program.parent}'}}")
    assert check_config(write(tmp_path, edit("x64]", f"{HERE}]", text)), env=ENV)


def test_a_local_pool_naming_another_architecture_is_an_error(tmp_path: Path) -> None:
    problem = refused(write(tmp_path, edit("x64]", f"{OTHER}]")))
    assert (problem.line, problem.path) == (13, "pools[0].labels[2]")
    assert f"names architecture '{OTHER}', but this host's runners are {HERE}" in problem.message
    assert f"write {HERE} (or auto" in problem.hint


def test_a_docker_pool_s_architecture_is_its_engine_s_to_say(tmp_path: Path) -> None:
    """Its runners run where its engine is: not checked against this host."""
    assert check_config(write(tmp_path, edit("x64]", f"{OTHER}]", DOCKER)), env=ENV)


def test_labels_without_self_hosted_are_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, edit("[self-hosted, linux, x64]", f"[linux, {HERE}]"))
    [warning] = check_config(path, env=ENV)[1]
    assert (warning.line, warning.path) == (13, "pools[0].labels")
    assert "has no 'self-hosted'" in warning.message
    assert "add self-hosted to labels" in warning.hint


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_refuse_it_alike(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, edit("x64]", f"{OTHER}]"))
    arguments = ["config", "validate"] if command == "validate" else ["run"]
    result = CliRunner().invoke(app, [*arguments, "-c", str(path)], env=ENV)
    assert result.exit_code == 2, result.output
    assert "the configuration is not valid" in result.output
    assert "pools[0].labels[2]" in result.output


def test_a_text_is_checked_as_the_same_file_would_be(tmp_path: Path) -> None:
    """``check_text``: a config made in memory (the zero-config start's) meets the host checks
    and the warnings of the file it would be saved as, named by its ``source``."""
    missing = edit(COMMAND, "      command: [/nonexistent/run.sh]")
    with pytest.raises(ConfigError) as caught:
        check_text(missing, source="(zero-config)", env=ENV)
    [problem] = caught.value.problems
    on_file = refused(write(tmp_path, missing))
    assert problem.file == "(zero-config)"
    assert (problem.line, problem.path, problem.message) == (
        on_file.line,
        on_file.path,
        on_file.message,
    )
    warned = edit(COMMAND, '      command: [runnerscale, sim-runner, --jitconfig, "{jitconfig}"]')
    _, warnings = check_text(warned, source="(zero-config)", env=ENV)
    assert [(w.file, w.path) for w in warnings] == [("(zero-config)", "pools[0].local.command[3]")]
