"""Fixtures that start a live simulator on a loopback port and clients that talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import GitHub, TokenAuthStrategy

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.tls import ServerTls, ensure_certificates
from runnerscale.fakegithub.world import WorldSettings
from tests.contract.openapi import ValidatingTransport, default_contract

TOKEN = "ghp_simulator_test_token"
APP_ID = 4242


@pytest.fixture(scope="session")
def app_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def sim_options(app_private_key: str) -> SimulatorOptions:
    return SimulatorOptions(
        tokens=(TOKEN,),
        app_id=APP_ID,
        app_key=app_private_key,
        world=WorldSettings(),
    )


@pytest.fixture
async def simulator(sim_options: SimulatorOptions) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(sim_options) as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    """A CA and a server certificate for 127.0.0.1, made once per module."""
    return ensure_certificates(tmp_path_factory.mktemp("tls"), "127.0.0.1")


@pytest.fixture
async def tls_simulator(
    sim_options: SimulatorOptions, tls_files: ServerTls
) -> AsyncIterator[SimulatorServer]:
    """The simulator serving https with ``tls_files``."""
    async with SimulatorServer(replace(sim_options, tls=tls_files)) as server:
        yield server


@pytest.fixture
def transport() -> ValidatingTransport:
    return ValidatingTransport(contract=default_contract())


def github_client(
    server: SimulatorServer, transport: ValidatingTransport, auth: object = TOKEN
) -> GitHub[TokenAuthStrategy]:
    """The production client (githubkit) pointed at the simulator, every answer validated."""
    return GitHub(
        auth,  # type: ignore[arg-type]
        base_url=server.url,
        async_transport=transport,
        http_cache=False,
        auto_retry=False,
    )


@pytest.fixture
async def github(
    simulator: SimulatorServer, transport: ValidatingTransport
) -> AsyncIterator[GitHub[TokenAuthStrategy]]:
    client = github_client(simulator, transport)
    yield client
    transport.assert_clean()


@pytest.fixture
async def control(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for the control API (``/_sim``)."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        yield client


def with_world(options: SimulatorOptions, **changes: Any) -> SimulatorOptions:
    return replace(options, world=replace(options.world, **changes))
