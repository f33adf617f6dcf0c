"""The start-time permission check of a classic token, against the simulator for real.

The simulator's classic tokens (``--token-scopes``) report their scopes in ``x-oauth-scopes``
and are refused operations needing a scope they lack, as GitHub does; so the daemon's check
(:meth:`GitHubClient.check_access`, read from ``x-oauth-scopes``) is tested here against
answers the simulator makes, and each refusal it predicts is one the simulator then makes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runnerscale.config import Config
from runnerscale.daemon import Daemon, StartupError
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.github.client import GitHubClient
from runnerscale.model import Target
from runnerscale.protocols import GitHubError
from tests.contract.openapi import ValidatingTransport, default_contract, enterprise_as_org
from tests.test_config import ENV, edit, parse

REPO = Target("repo", "acme/app")
ORG = Target("org", "acme")
ENTERPRISE = Target("enterprise", "big-corp")
LABELS = ("self-hosted", "linux")
#: Classic tokens by the scopes they were given.
TOKENS = {
    "repo": frozenset({"repo"}),
    "admin:org": frozenset({"admin:org"}),
    "repo,admin:org": frozenset({"repo", "admin:org"}),
    "all": frozenset({"repo", "admin:org", "manage_runners:enterprise"}),
    "none": frozenset(),
}
FINE_GRAINED = "github_pat_fine_grained"
ELSEWHERE = ", or use a fine-grained token or a GitHub App"


def token(scopes: str) -> str:
    return f"ghp_classic_{scopes.replace(',', '_').replace(':', '_')}"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    options = SimulatorOptions(
        tokens=(FINE_GRAINED, *(token(name) for name in TOKENS)),
        token_scopes={token(name): scopes for name, scopes in TOKENS.items()},
    )
    async with SimulatorServer(options) as server:
        world = server.simulator.world
        world.ensure_repo("acme/app")
        world.ensure_enterprise("big-corp", ["acme"])
        yield server


@pytest.fixture
def transports() -> Iterator[list[ValidatingTransport]]:
    """Every answer the clients get is checked against GitHub's contract."""
    made: list[ValidatingTransport] = []
    yield made
    for transport in made:
        transport.assert_clean()


def client_for(
    simulator: SimulatorServer, scopes: str, transports: list[ValidatingTransport]
) -> GitHubClient:
    # Enterprise answers are held to the organisation operations' shapes.
    transport = ValidatingTransport(contract=default_contract(), path_map=enterprise_as_org)
    transports.append(transport)
    return GitHubClient(simulator.url, token(scopes), transport=transport)


@pytest.mark.parametrize(
    ("scopes", "targets", "problems"),
    [
        pytest.param(
            "repo",
            [REPO, ORG],
            [
                f"the token lacks the admin:org scope that org acme needs: add it to the token "
                f"(its settings page){ELSEWHERE}"
            ],
            id="org-without-admin:org",
        ),
        pytest.param(
            "admin:org",
            [ORG],
            [
                f"the token lacks the repo scope that org acme needs: add it to the token "
                f"(its settings page){ELSEWHERE}"
            ],
            id="org-without-repo",
        ),
        pytest.param(
            "none",
            [REPO],
            [
                f"the token lacks the repo scope that repo acme/app needs: add it to the token "
                f"(its settings page){ELSEWHERE}"
            ],
            id="repo-without-any-scope",
        ),
        pytest.param(
            "repo,admin:org",
            [ENTERPRISE],
            [
                "the token lacks the admin:enterprise or manage_runners:enterprise scope that "
                "enterprise big-corp needs: add it to the token (its settings page)"
            ],
            id="enterprise-without-manage_runners",
        ),
        pytest.param("repo", [REPO], [], id="repo-with-repo"),
        pytest.param("repo,admin:org", [REPO, ORG], [], id="org-with-both"),
        pytest.param("all", [REPO, ORG, ENTERPRISE], [], id="every-level"),
    ],
)
async def test_the_check_reads_the_scopes_the_simulator_reports(
    simulator: SimulatorServer,
    transports: list[ValidatingTransport],
    scopes: str,
    targets: list[Target],
    problems: list[str],
) -> None:
    client = client_for(simulator, scopes, transports)
    try:
        assert await client.check_access(targets) == problems
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("scopes", "target", "status"),
    [("repo", ORG, 403), ("none", REPO, 404), ("repo,admin:org", ENTERPRISE, 403)],
)
async def test_what_the_check_refuses_the_simulator_refuses_too(
    simulator: SimulatorServer,
    transports: list[ValidatingTransport],
    scopes: str,
    target: Target,
    status: int,
) -> None:
    refused = client_for(simulator, scopes, transports)
    allowed = client_for(simulator, "all", transports)
    try:
        with pytest.raises(GitHubError) as caught:
            await refused.generate_jitconfig(target, "refused", LABELS)
        assert caught.value.status == status
        jit = await allowed.generate_jitconfig(target, "allowed", LABELS)
        assert jit.runner_id > 0
    finally:
        await refused.close()
        await allowed.close()


async def test_a_fine_grained_token_cannot_be_inspected_and_passes(
    simulator: SimulatorServer,
) -> None:
    client = GitHubClient(simulator.url, FINE_GRAINED)
    try:
        assert await client.check_access([REPO, ORG, ENTERPRISE]) == []
    finally:
        await client.close()


def daemon_config(tmp_path: Path, url: str, scopes: str) -> Config:
    text = edit("http://127.0.0.1:9000", url)
    text = edit("  - repo: acme/app", "  - repo: acme/app\n  - org: acme", text)
    text = edit("sqlite:///var/tmp/runnerscale/state.db", f"sqlite:///{tmp_path}/s.db", text)
    text = edit("listen: 127.0.0.1:8787", "listen: 127.0.0.1:0", text)
    text += f"      work_root: {tmp_path}/runners\n"
    return parse(text, env={**ENV, "GITHUB_TOKEN": token(scopes)})


async def test_the_daemon_refuses_to_start_with_a_token_lacking_a_scope(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    daemon = Daemon.build(daemon_config(tmp_path, simulator.url, "repo"), port=0)
    try:
        with pytest.raises(StartupError) as caught:
            await daemon.check_access()
        assert str(caught.value) == (
            f"the token lacks the admin:org scope that org acme needs: add it to the token "
            f"(its settings page){ELSEWHERE}"
        )
        assert token("repo") not in str(caught.value)
    finally:
        await daemon.stop()


async def test_the_daemon_starts_its_check_with_the_right_scopes(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    daemon = Daemon.build(daemon_config(tmp_path, simulator.url, "repo,admin:org"), port=0)
    try:
        await daemon.check_access()  # no StartupError
    finally:
        await daemon.stop()
