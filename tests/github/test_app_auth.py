"""GitHub App authentication against the simulator, over real HTTP, with a real RSA key.

The App signs RS256 JWTs to find its installations; every other call uses the installation
token of the owner concerned, fetched, cached and renewed before it expires. A token GitHub
refuses is fetched anew once. Several installations serve one client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerscale.clock import Clock
from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from runnerscale.github.client import AppCredentials, GitHubClient
from runnerscale.model import Target
from runnerscale.protocols import GitHubError
from tests.virtual_time import virtual_clock

APP_ID = 4242
LABELS = ("self-hosted", "linux")
ACME = Target("org", "acme")
BETA = Target("org", "beta")


def new_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


KEY = new_key()


async def start(ttl: float = 3600.0, clock: Clock | None = None) -> SimulatorServer:
    options = SimulatorOptions(
        app_id=APP_ID, app_key=KEY, world=WorldSettings(installation_token_ttl=ttl)
    )
    server = SimulatorServer(options, clock)
    await server.start()
    for repo in ("acme/app", "beta/site"):
        server.simulator.world.ensure_repo(repo)
    return server


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    server = await start()
    try:
        yield server
    finally:
        await server.stop()


def operations(simulator: SimulatorServer) -> dict[str, dict[str, int]]:
    stats = simulator.simulator.stats
    return {
        op: {str(status): count for status, count in stats.statuses[op].items()}
        for op in stats.requests
    }


def token_requests(simulator: SimulatorServer) -> int:
    return simulator.simulator.stats.requests["apps/create-installation-access-token"]


@pytest.mark.slow
async def test_one_client_serves_several_installations(simulator: SimulatorServer) -> None:
    secrets: list[str] = []
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY), on_secret=secrets.append)
    for target in (ACME, BETA):
        jit = await client.generate_jitconfig(target, f"runner-{target.name}", LABELS)
        assert jit.runner_id > 0
        [listed] = await client.list_runners(target)
        assert listed.name == f"runner-{target.name}"
    # One installation per organisation, found through GitHub, one token each.
    assert token_requests(simulator) == 2
    assert len(secrets) == 2
    assert all(secret.startswith("ghs_") for secret in secrets)
    world = simulator.simulator.world
    assert {t.scope for t in world.tokens.values() if t.kind == "installation"} == {
        "acme",
        "beta",
    }
    # Jobs of an organisation's repositories come through its installation's repository list.
    world.create_jobs([JobSpec("beta/site", LABELS, 5.0, None, "build")])
    jobs = (await client.active_jobs(BETA)).jobs
    assert [job.repo for job in jobs] == ["beta/site"]
    assert await client.get_job("beta/site", jobs[0].id) is not None
    # The next poll takes news of pushes from the organisation's list (most recently pushed
    # first), which the installation token may read too.
    world.create_jobs([JobSpec("beta/site", LABELS, 5.0, None, "test")])
    jobs = (await client.active_jobs(BETA)).jobs
    assert {job.name for job in jobs} == {"build", "test"}
    assert operations(simulator)["repos/list-for-org"] == {"200": 1}
    assert token_requests(simulator) == 2  # the cached tokens were reused


async def test_a_configured_installation_id_is_used_without_looking_it_up(
    simulator: SimulatorServer,
) -> None:
    world = simulator.simulator.world
    acme = world.installation_for(world.owners["acme"])
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY, acme.id))
    await client.list_runners(ACME)
    assert not [
        op
        for op in simulator.simulator.stats.requests
        if "installation" in op.split("/")[-1] and "get" in op
    ]


async def test_tokens_are_renewed_before_they_expire() -> None:
    # Tokens that live 62 s are kept for 2 s (renewed a minute before they expire): GitHub
    # and the client on one virtual clock, moved on by 2.5 s.
    clock = virtual_clock()
    simulator = await start(ttl=62.0, clock=clock)
    try:
        client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY), clock=clock.now)
        await client.list_runners(ACME)
        assert token_requests(simulator) == 1
        clock.advance(2.5)
        await client.list_runners(ACME)
        assert token_requests(simulator) == 2
        statuses = operations(simulator)
        assert not any("401" in counts for counts in statuses.values()), statuses
    finally:
        await simulator.stop()


async def test_a_refused_token_is_fetched_anew_once(simulator: SimulatorServer) -> None:
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY))
    await client.list_runners(ACME)
    world = simulator.simulator.world
    for token in [t for t in world.tokens.values() if t.kind == "installation"]:
        del world.tokens[token.token]  # revoked behind the client's back
    assert await client.list_runners(ACME) == []
    assert token_requests(simulator) == 2


async def test_a_wrong_key_is_reported_without_the_key() -> None:
    simulator = await start()
    try:
        other = new_key()
        client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, other))
        with pytest.raises(GitHubError) as caught:
            await client.list_runners(ACME)
        message = str(caught.value)
        assert "401" in message
        assert "github.app.id and its private key" in message
        for line in other.splitlines()[1:-1]:
            assert line not in message
        not_pem = GitHubClient(simulator.url, app=AppCredentials(APP_ID, "not a key"))
        with pytest.raises(GitHubError, match="cannot sign the GitHub App's JWT"):
            await not_pem.list_runners(ACME)
    finally:
        await simulator.stop()


async def test_an_owner_without_the_app_is_a_clear_error(simulator: SimulatorServer) -> None:
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY))
    with pytest.raises(GitHubError) as caught:
        await client.list_runners(Target("org", "nobody"))
    assert f"the GitHub App (id {APP_ID}) is not installed on nobody" in str(caught.value)


def test_credentials_do_not_show_the_key() -> None:
    credentials = AppCredentials(APP_ID, KEY, 7)
    assert "PRIVATE" not in repr(credentials)
    with pytest.raises(ValueError, match="exactly one"):
        GitHubClient("http://127.0.0.1:1", "token", app=credentials)


async def test_missing_permissions_are_named_in_words(
    simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY))
    assert await client.check_access([ACME, Target("repo", "beta/site")]) == []
    monkeypatch.delitem(shapes.ORG_INSTALLATION_PERMISSIONS, "organization_self_hosted_runners")
    monkeypatch.delitem(shapes.ORG_INSTALLATION_PERMISSIONS, "actions")
    problems = await GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY)).check_access(
        [ACME]
    )
    assert problems == [
        "the App's installation on acme lacks the Organization self-hosted runners permission "
        "(organization_self_hosted_runners: write): add it in the App's settings (Permissions), "
        "then approve the new permissions on the installation",
        "the App's installation on acme lacks the Actions (workflow runs and jobs) permission "
        "(actions: read): add it in the App's settings (Permissions), then approve the new "
        "permissions on the installation",
    ]


async def test_a_fine_grained_token_cannot_be_inspected_and_passes() -> None:
    async with SimulatorServer(SimulatorOptions(tokens=("ghp_t",))) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        assert await GitHubClient(simulator.url, "ghp_t").check_access([ACME]) == []


async def test_each_installation_has_a_budget_of_its_own(simulator: SimulatorServer) -> None:
    client = GitHubClient(simulator.url, app=AppCredentials(APP_ID, KEY))
    for _ in range(3):
        await client.generate_jitconfig(ACME, f"runner-{_}", LABELS)
    await client.generate_jitconfig(BETA, "runner-b", LABELS)
    world = simulator.simulator.world
    name = {i.owner.login: f"installation {i.id}" for i in world.installations.values()}
    by_credential = client.budget.by_credential
    assert set(by_credential) == {"app", name["acme"], name["beta"]}
    # JIT configurations are charged to the runner-registration resource, per installation.
    registration = "actions_runner_registration"
    assert by_credential[name["acme"]].resources[registration].used == 3
    assert by_credential[name["beta"]].resources[registration].used == 1
    assert by_credential[name["acme"]].charged_by_resource() == {registration: 3}
    # The App itself paid for finding the installations and fetching their tokens.
    assert by_credential["app"].calls["get-org-installation"] == 2
    report = client.budget.report()
    assert set(report["credentials"]) == set(by_credential)
    # The summary per resource shows the credential that runs out first: here the App's
    # (two installation look-ups and two tokens, against the same limit).
    assert by_credential["app"].resources["core"].used == 4
    assert report["rate_limit"]["core"]["used"] == 4
