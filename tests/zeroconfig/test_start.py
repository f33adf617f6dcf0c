"""The zero-config start's configuration: its text loads through the normal checks with the
environment it comes with, and holds no token."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runnerscale.config import check_text
from runnerscale.zeroconfig.decide import DEFAULT_RUNNER_DIR, Request
from runnerscale.zeroconfig.start import SOURCE, build
from tests.zeroconfig.hosts import TellingHost

TOKEN = "gho_token_from_gh_0123456789"


def gh(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str, str]:
    assert list(argv) == ["gh", "auth", "token", "--hostname", "ghes.example.com"]
    return 0, TOKEN + "\n", ""


def test_gh_s_token_is_loaded_as_gh_token_and_never_written() -> None:
    environ = {"GH_HOST": "ghes.example.com", "PATH": "/usr/bin:/bin"}
    made = build(Request(owner="acme", max_runners=2), environ, TellingHost(docker=None), gh)
    assert TOKEN not in made.text
    assert TOKEN not in repr(made)
    assert "token: ${GH_TOKEN}  # gh auth token --hostname ghes.example.com's" in made.text
    assert made.env == {**environ, "GH_TOKEN": TOKEN}
    assert made.secret == TOKEN
    config, warnings = check_text(made.text, source=SOURCE, env=made.env)
    assert config.github.api_url == "https://ghes.example.com/api/v3"
    assert config.github.token is not None
    assert config.github.token.get_secret_value() == TOKEN
    assert config.pools[0].provider == "docker"
    assert warnings == []


def test_the_environment_s_token_stays_where_it_is() -> None:
    environ = {"GITHUB_TOKEN": TOKEN}
    host = TellingHost(runners=frozenset({DEFAULT_RUNNER_DIR}))
    made = build(Request(repo="acme/app", max_runners=1), environ, host)
    assert made.env == environ
    assert "token: ${GITHUB_TOKEN}  # read from GITHUB_TOKEN" in made.text
    assert "provider: local  # no Docker engine answered" in made.text


def test_the_header_says_how_to_save_it_and_run_it() -> None:
    made = build(Request(owner="acme", max_runners=1), {"GH_TOKEN": TOKEN}, TellingHost(None))
    running, printing = made.header(printing=False), made.header(printing=True)
    assert "\n" not in running
    assert "the same command with --print-config > runnerscale.yaml" in running
    assert running.endswith("run runnerscale run -c runnerscale.yaml")
    assert "--print-config" not in printing
    assert printing.endswith("run runnerscale run -c FILE")


def test_the_documented_output_is_what_it_prints() -> None:
    """docs/configuration.md's zero-config example, where a Docker engine answers."""
    docs = Path(__file__).parents[2] / "docs" / "configuration.md"
    [shown] = re.findall(
        r"```yaml\n(# runnerscale's zero-config start.*?)```", docs.read_text(), re.S
    )
    made = build(Request(owner="acme", max_runners=4), {"GH_TOKEN": TOKEN}, TellingHost(None))
    assert shown == made.header(printing=False) + "\n" + made.text
