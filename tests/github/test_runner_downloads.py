"""The runner application downloads GitHub offers a target, read over HTTP from the simulator
(``GET /repos/{owner}/{repo}/actions/runners/downloads`` and the org's), and a target's web
URL from the API's."""

from __future__ import annotations

import pytest

from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.github.client import GitHubClient
from runnerscale.github.weburl import target_web_url, web_url
from runnerscale.model import Target
from tests.github.test_client import TOKEN, simulator

__all__ = ["simulator"]  # a fixture, imported


@pytest.mark.parametrize("target", [Target("repo", "acme/app"), Target("org", "acme")])
async def test_the_downloads_are_githubs_objects(
    simulator: SimulatorServer, target: Target
) -> None:
    client = GitHubClient(simulator.url, TOKEN)
    downloads = await client.runner_downloads(target)
    linux = next(d for d in downloads if (d["os"], d["architecture"]) == ("linux", "x64"))
    assert set(linux) >= {"os", "architecture", "download_url", "filename"}
    assert linux["filename"].startswith("actions-runner-linux-x64-")
    assert linux["download_url"].endswith(linux["filename"])
    assert {d["os"] for d in downloads} >= {"linux", "win", "osx"}
    assert client.budget.of("token").resources["core"].used >= 1


async def test_an_enterprise_has_no_downloads_list(simulator: SimulatorServer) -> None:
    client = GitHubClient(simulator.url, TOKEN)
    with pytest.raises(ValueError, match="repositories and orgs only"):
        await client.runner_downloads(Target("enterprise", "big"))


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("https://api.acme.ghe.com", "https://acme.ghe.com"),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ],
)
def test_the_web_url_of_an_api(api: str, web: str) -> None:
    assert web_url(api) == web


def test_a_targets_web_url() -> None:
    api = "https://api.github.com"
    assert target_web_url(api, Target("repo", "acme/app")) == "https://github.com/acme/app"
    assert target_web_url(api, Target("org", "acme")) == "https://github.com/acme"
    assert (
        target_web_url("https://ghe.example.com/api/v3", Target("enterprise", "big"))
        == "https://ghe.example.com/enterprises/big"
    )
