"""``runnerscale run`` without a config file, as a person types it (issue 13): what it
refuses and why, and the config it prints with ``--print-config`` (the real ``gh`` gives the
token where asked). tests/e2e/test_zero_config.py runs one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from runnerscale.cli import app
from runnerscale.config import parse_config
from runnerscale.zeroconfig.decide import DEFAULT_IMAGE, DEFAULT_RUNNER_DIR
from tests.docker_engine import Engine, docker_engine

__all__ = ["docker_engine"]  # a fixture, imported

TOKEN = "ghp_zero_config_token_0123456789"
GH_LOGIN_TOKEN = "gho_gh_login_token_0123456789"
GHES = "ghes.example.test"
NO_ENGINE = "unix:///nonexistent/docker.sock"

runner = CliRunner()


def run(*arguments: str, env: dict[str, str | None] | None = None) -> Result:
    """``runnerscale run ARGUMENTS``, in this process."""
    return runner.invoke(app, ["run", *arguments], env=env)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str | None]:
    """No token, no GH_HOST, no Docker engine; gh with a config folder of its own, logged
    in to GHES."""
    gh = tmp_path / "gh"
    gh.mkdir()
    (gh / "hosts.yml").write_text(f"{GHES}:\n    oauth_token: {GH_LOGIN_TOKEN}\n    user: me\n")
    return {
        "GH_TOKEN": None,
        "GITHUB_TOKEN": None,
        "GH_HOST": None,
        "GH_ENTERPRISE_TOKEN": None,
        "GH_CONFIG_DIR": str(gh),
        "DOCKER_HOST": NO_ENGINE,
        "PATH": "/usr/bin:/bin",
    }


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    """A folder holding a run.sh, as the official runner's does."""
    folder = tmp_path / "actions-runner"
    folder.mkdir()
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o755)
    return folder


def test_c_with_zero_config_flags_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rs.yaml"
    result = run("-c", str(path), "--owner", "acme", "--max-runners", "2")
    assert result.exit_code == 2
    assert (
        "-c runs the config file given, and --owner, --max-runners belong to the zero-config "
        "start, which makes one: give -c alone, or leave it out"
    ) in " ".join(result.output.split())


def test_neither_a_file_nor_a_target_says_both_ways() -> None:
    result = run("--max-runners", "2")
    assert result.exit_code == 2
    assert (
        "give -c FILE (a runnerscale config: docs/configuration.md), or start without one: "
        "--owner ORG or --repo OWNER/NAME, and --max-runners N"
    ) in " ".join(result.output.split())


def test_print_config_prints_a_config_that_loads_and_no_token(
    environ: dict[str, str | None], runner_dir: Path
) -> None:
    result = run(
        *("--repo", "acme/app", "--max-runners", "2", "--runner-dir", str(runner_dir)),
        "--print-config",
        env={**environ, "GH_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("# runnerscale's zero-config start, as a config file")
    config = parse_config(result.stdout, env={"GH_TOKEN": TOKEN})
    assert [(t.kind, t.name) for t in config.targets] == [("repo", "acme/app")]
    assert config.pools[0].provider == "local"
    assert config.pools[0].max_runners == 2
    assert "token: ${GH_TOKEN}" in result.stdout
    assert TOKEN not in result.output


def test_gh_s_login_to_gh_host_gives_the_token_and_the_api(
    environ: dict[str, str | None], runner_dir: Path
) -> None:
    result = run(
        *("--owner", "acme", "--max-runners", "1", "--runner-dir", str(runner_dir)),
        "--print-config",
        env={**environ, "GH_HOST": GHES},
    )
    assert result.exit_code == 0, result.output
    assert f"  api_url: https://{GHES}/api/v3\n" in result.stdout
    assert f"GH_TOKEN=$(gh auth token --hostname {GHES})" in result.stdout
    assert GH_LOGIN_TOKEN not in result.output
    config = parse_config(result.stdout, env={"GH_TOKEN": GH_LOGIN_TOKEN})
    assert [(t.kind, t.name) for t in config.targets] == [("org", "acme")]


def test_docker_where_an_engine_answers(
    environ: dict[str, str | None], docker_engine: Engine
) -> None:
    result = run(
        *("--owner", "acme", "--max-runners", "2", "--print-config"),
        env={**environ, "GH_TOKEN": TOKEN, "DOCKER_HOST": docker_engine.url},
    )
    assert result.exit_code == 0, result.output
    docker = parse_config(result.stdout, env={"GH_TOKEN": TOKEN}).pools[0].docker
    assert docker is not None
    assert docker.image == DEFAULT_IMAGE
    assert "provider: docker  # a Docker engine answered" in result.stdout


def test_no_token_names_the_three_ways(environ: dict[str, str | None]) -> None:
    result = run("--owner", "acme", "--max-runners", "1", env=environ)
    assert result.exit_code == 2
    assert (
        "no GitHub token: set GH_TOKEN or GITHUB_TOKEN to one, or log in with gh auth login so "
        "that gh auth token gives one"
    ) in " ".join(result.output.split())


@pytest.mark.skipif(DEFAULT_RUNNER_DIR.exists(), reason="this host has the runner there")
def test_no_engine_and_no_runner_says_how_to_get_either(environ: dict[str, str | None]) -> None:
    result = run("--owner", "acme", "--max-runners", "1", env={**environ, "GH_TOKEN": TOKEN})
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "nowhere to run the runners: no Docker engine answered (pool 'linux': cannot " in said
    assert f"there is no socket at {NO_ENGINE.removeprefix('unix://')})" in said
    assert f"and {DEFAULT_RUNNER_DIR} holds no runner (no such folder)" in said
    assert "give --runner-dir FOLDER" in said


def test_a_bad_flag_value_is_reported_at_its_line_of_the_printed_config(
    environ: dict[str, str | None], runner_dir: Path
) -> None:
    result = run(
        *("--owner", "acme", "--max-runners", "1", "--runner-dir", str(runner_dir)),
        *("--listen", "localhost"),
        env={**environ, "GH_TOKEN": TOKEN},
    )
    assert result.exit_code == 2
    printed = result.stderr.splitlines()[1:]  # after the header
    line = printed.index("  listen: localhost") + 1
    assert f"zero-config:{line}: server.listen: is not HOST:PORT" in result.stderr
    assert TOKEN not in result.output
