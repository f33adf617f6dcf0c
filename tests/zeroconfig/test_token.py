"""The zero-config start's token: GH_TOKEN, GITHUB_TOKEN, or what the real ``gh auth token``
gives for GH_HOST's host (a gh config folder of the test's own); never shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from runnerscale.zeroconfig.decide import ZeroConfigError
from runnerscale.zeroconfig.token import Token, find_token

TOKEN = "gho_token_of_the_gh_login_0123"
HOST = "ghes.example.test"


def no_gh(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str, str]:
    raise AssertionError("gh asked although the environment has a token")


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"GH_TOKEN": "one", "GITHUB_TOKEN": "two"}, "GH_TOKEN"),
        ({"GITHUB_TOKEN": "two"}, "GITHUB_TOKEN"),
        ({"GH_TOKEN": "  ", "GITHUB_TOKEN": "two"}, "GITHUB_TOKEN"),
    ],
)
def test_the_environment_s_token_comes_first_as_gh_takes_it(
    environ: dict[str, str], variable: str
) -> None:
    token = find_token(environ, no_gh)
    assert (token.variable, token.value) == (variable, environ[variable])
    assert token.hint == f"read from {variable} (set it to run this)"


@pytest.fixture
def gh_environ(tmp_path: Path) -> dict[str, str]:
    """gh logged in to GH_HOST's host (a GitHub Enterprise Server), in a config folder of the
    test's own."""
    (tmp_path / "hosts.yml").write_text(
        f"{HOST}:\n    oauth_token: {TOKEN}\n    user: someone\n    git_protocol: https\n"
    )
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GH_CONFIG_DIR": str(tmp_path),
        "GH_HOST": HOST,
    }


def test_gh_gives_the_token_of_gh_host_s_login(gh_environ: dict[str, str]) -> None:
    token = find_token(gh_environ)
    assert (token.variable, token.value) == ("GH_TOKEN", TOKEN)
    assert token.hint == (
        f"gh auth token --hostname {HOST}'s: run this with "
        f"GH_TOKEN=$(gh auth token --hostname {HOST})"
    )
    assert TOKEN not in repr(token)


def test_no_token_anywhere_names_the_three_ways(gh_environ: dict[str, str]) -> None:
    message = refusal({**gh_environ, "GH_HOST": "other.example.test"})
    assert message.startswith(
        "no GitHub token: set GH_TOKEN or GITHUB_TOKEN to one, or log in with gh auth login "
        "--hostname other.example.test so that gh auth token gives one (gh auth token "
        "--hostname other.example.test gave none: no oauth token"
    )
    assert "docs/github.md" in message


def test_without_gh_the_message_says_so(gh_environ: dict[str, str]) -> None:
    message = refusal({**gh_environ, "PATH": "/nonexistent"})
    assert "or log in with gh auth login --hostname ghes.example.test" in message
    assert "(gh is not installed)" in message
    assert TOKEN not in message


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(ZeroConfigError) as caught:
        find_token(environ)
    return str(caught.value)


def test_a_token_never_shows_in_its_repr() -> None:
    assert "secret-value" not in repr(Token("GH_TOKEN", "secret-value", "hint"))
