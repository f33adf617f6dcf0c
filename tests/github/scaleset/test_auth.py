"""The admin connection: the chain, its renewal before expiry, and no token ever shown."""

from __future__ import annotations

import logging

import httpx
import jwt
import pytest

from runnerscale.clock import VirtualClock
from runnerscale.github.client import GitHubClient
from runnerscale.github.scaleset import ScaleSetClient
from runnerscale.github.scaleset.auth import token_expiry
from runnerscale.protocols import GitHubError
from runnerscale.scaleset_api import ScaleSetSpec

from .fake_actions import (
    API,
    PAT,
    QUEUE_TOKEN_PREFIX,
    REGISTRATION_TOKEN,
    SECRETS,
    TARGET,
    FakeActions,
    connected,
    drive,
    fault,
)


async def test_the_chain_registration_token_then_remote_auth() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, github):
        await client.ensure_scale_set(ScaleSetSpec("rs"))
    [token_call] = fake.seen("POST", "/orgs/acme/actions/runners/registration-token")
    assert PAT in token_call.headers["authorization"]
    [exchange] = fake.seen("POST", "/actions/runner-registration")
    assert str(exchange.url) == f"{API}/actions/runner-registration"
    assert exchange.headers["authorization"] == f"RemoteAuth {REGISTRATION_TOKEN}"
    assert exchange.body == {"url": "https://github.com/acme", "runner_event": "register"}
    # The REST call is GitHub's budget's; the exchange and the rest are the Actions service's.
    assert github.budget.calls["create-registration-token"] == 1
    service = github.budget.actions_service_calls
    assert service["runner-registration"] == 1
    assert service["get-runner-group"] == 1
    assert service["create-scale-set"] == 1
    assert "runner-registration" not in github.budget.calls


async def test_the_admin_token_is_renewed_when_less_than_a_minute_is_left() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock, admin_ttl=600)
    async with connected(fake) as (client, _):
        await client.ensure_scale_set(ScaleSetSpec("rs"))
        clock.advance(600 - 61)
        await client.ensure_scale_set(ScaleSetSpec("rs"))
        assert fake.registrations == 1  # 61 s left: still good
        clock.advance(2)
        await client.ensure_scale_set(ScaleSetSpec("rs"))
        assert fake.registrations == 2  # 59 s left: the chain ran again
    bearer = {r.headers["authorization"] for r in fake.seen("GET", "/runnergroups/")}
    assert len(bearer) == 2


async def test_a_refused_admin_token_reruns_the_chain_once() -> None:
    fake = FakeActions(VirtualClock())
    async with connected(fake) as (client, _):
        fake.script("GET", "/runnergroups/", fault(401))
        await client.ensure_scale_set(ScaleSetSpec("rs"))
        assert fake.registrations == 2
        fake.script("GET", "/runnergroups/", fault(401), fault(401))
        with pytest.raises(GitHubError) as raised:
            await client.ensure_scale_set(ScaleSetSpec("rs"))
        assert raised.value.status == 401


async def test_a_refused_exchange_says_what_to_check() -> None:
    fake = FakeActions(VirtualClock())
    fake.script("POST", "/actions/runner-registration", fault(404, "", "Not Found"))
    async with connected(fake) as (client, _):
        with pytest.raises(GitHubError, match=r"runner-registration.*404.*3\.10") as raised:
            await client.ensure_scale_set(ScaleSetSpec("rs"))
    assert raised.value.status == 404


async def test_the_exchange_is_retried_on_403_like_the_go_client() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    fake.script("POST", "/actions/runner-registration", fault(403), fault(502))
    async with connected(fake) as (client, _):
        await drive(clock, client.ensure_scale_set(ScaleSetSpec("rs")))
    assert len(fake.seen("POST", "/actions/runner-registration")) == 3


def test_token_expiry_reads_exp_without_verifying() -> None:
    token = jwt.encode({"exp": 1234}, "some-other-key-that-is-32-bytes-long", algorithm="HS256")
    assert token_expiry(token, fallback=9.0) == 1234.0
    assert token_expiry("not-a-jwt", fallback=9.0) == 9.0
    assert token_expiry(jwt.encode({}, "k" * 32, algorithm="HS256"), fallback=9.0) == 9.0


async def test_no_token_in_logs_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with connected(fake) as (client, _):
            scale_set = await client.ensure_scale_set(ScaleSetSpec("rs", labels=("linux",)))
            session = await client.open_session(scale_set, "ctl-1")
            jit = await client.generate_jitconfig(scale_set, "rs-runner-1")
            fake.script("GET", "/messages", fault(401), fault(401, "Expired", "queue token"))
            try:
                await session.next_message(0, 3)
            except GitHubError as error:
                errors.append(str(error))
            fake.script("GET", "/runnergroups/", fault(401), fault(401))
            try:
                await client.ensure_scale_set(ScaleSetSpec("rs"))
            except GitHubError as error:
                errors.append(str(error))
            fake.script("GET", "/runnergroups/", *[httpx.ConnectError("refused " + PAT)] * 5)
            try:
                await drive(clock, client.ensure_scale_set(ScaleSetSpec("rs")))
            except GitHubError as error:
                errors.append(str(error))
            shown = [repr(client), repr(session), repr(jit), repr(client._auth), *errors]
            shown += [repr(await client._auth.connection())]
            await session.close()
    assert len(errors) == 3
    texts = [caplog.text, *shown]
    for secret in (*SECRETS, "ENCODED_JIT_SECRET"):
        for text in texts:
            assert secret not in text, (secret, text)


async def test_the_log_redactor_learns_every_token_handed_out() -> None:
    clock = VirtualClock()
    fake = FakeActions(clock)
    learned: list[str] = []
    transport = httpx.MockTransport(fake.handler)
    github = GitHubClient(API, PAT, transport=transport, clock=clock.now, on_secret=learned.append)
    async with httpx.AsyncClient(transport=transport) as http:
        client = ScaleSetClient(github, TARGET, clock=clock, http=http)
        scale_set = await client.ensure_scale_set(ScaleSetSpec("rs"))
        session = await client.open_session(scale_set, "ctl")
        fake.script("GET", "/messages", fault(401))
        await session.next_message(0, 1)
    admin = (await client._auth.connection()).token
    assert learned == [
        REGISTRATION_TOKEN,
        admin,
        QUEUE_TOKEN_PREFIX + "1",
        QUEUE_TOKEN_PREFIX + "2",
    ]
