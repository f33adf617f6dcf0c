"""The ``runnerscale`` command as a person uses it: clear errors, clean start and stop."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from runnerscale import __version__
from runnerscale.cli import app
from runnerscale.fakegithub.tls import CA_FILE, ensure_certificates
from runnerscale.httpserve import LoopbackServer

runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["fake-github", "--port", "0"], "needs credentials"),
        (["fake-github", "--token", "t", "--app-id", "1"], "--app-id and --app-key go together"),
        (
            ["fake-github", "--token", "t", "--app-id", "1", "--app-key", "/nonexistent.pem"],
            "no such file",
        ),
        (["fake-github", "--token", "t", "--queue-timeout", "0"], "--queue-timeout must be"),
        (
            ["fake-github", "--token", "t", "--token-scopes", "repo,admin:orgs"],
            "not a classic token scope: admin:orgs",
        ),
        (
            ["fake-github", "--app-id", "1", "--app-key", "/k.pem", "--token-scopes", "repo"],
            "pass --token T as well",
        ),
    ],
)
def test_fake_github_refuses_bad_options(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments, env={"RUNNERSCALE_SIM_TOKEN": ""})
    assert result.exit_code == 2
    assert message in result.output


def test_fake_github_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["fake-github", "--token", "t", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_an_unreadable_app_key_is_reported(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    result = runner.invoke(
        app, ["fake-github", "--port", "0", "--app-id", "1", "--app-key", str(key)]
    )
    assert result.exit_code == 2
    assert "cannot read the App key" in result.output


@pytest.fixture
def tls_paths(tmp_path: Path) -> dict[str, str]:
    """A made certificate and key, junk, a broken CA folder: what the TLS options meet."""
    made = ensure_certificates(tmp_path / "made", "127.0.0.1")
    other = ensure_certificates(tmp_path / "other", "127.0.0.1")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CA_FILE).write_text("not PEM")
    return {
        "cert": str(made.certfile),
        "key": str(made.keyfile),
        "other_key": str(other.keyfile),
        "missing": str(tmp_path / "missing.pem"),
        "garbage": str(garbage),
        "dir": str(tmp_path / "tls"),
        "broken": str(broken),
        "under_a_file": str(garbage / "tls"),
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls", "--tls-key", "{key}"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "no such file"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-dir", "{dir}"], "--tls-dir is"),
        (["--tls-cert", "{garbage}", "--tls-key", "{key}"], "is not a PEM certificate"),
        (["--tls-cert", "{cert}", "--tls-key", "{garbage}"], "is not a PEM private key"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "does not belong"),
        (["--tls-dir", "{broken}"], "delete"),
        (["--tls", "--tls-dir", "{under_a_file}"], "pass a writable --tls-dir"),
    ],
)
def test_fake_github_refuses_bad_tls_options(
    tls_paths: dict[str, str], arguments: list[str], message: str
) -> None:
    filled = [argument.format(**tls_paths) for argument in arguments]
    result = runner.invoke(app, ["fake-github", "--token", "t", "--port", "0", *filled])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # rich wraps long lines
    assert "PRIVATE KEY" not in result.output


@pytest.mark.slow
async def test_fake_github_serves_https_and_names_the_ca(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runnerscale",
        "fake-github",
        "--port",
        str(port),
        "--token",
        "cli-token",
        "--tls-dir",
        str(tmp_path / "tls"),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        lines = [(await process.stderr.readline()).decode() for _ in range(4)]
    ca = tmp_path / "tls" / "ca.pem"
    assert f"listening on https://127.0.0.1:{port}" in lines[0]
    assert f"GH_HOST=127.0.0.1:{port}" in lines[2]
    assert f"made a new CA in {ca}" in lines[3]
    assert f"export SSL_CERT_FILE={ca}" in lines[3]
    trust = ssl.create_default_context(cafile=ca)
    async with httpx.AsyncClient(base_url=f"https://localhost:{port}", verify=trust) as client:
        response = await client.get(
            "/api/v3/rate_limit", headers={"Authorization": "token cli-token"}
        )
        assert response.status_code == 200
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        rest = await process.stderr.read()
        await process.wait()
    assert process.returncode == 0
    assert b"PRIVATE KEY" not in rest


@pytest.mark.slow
async def test_fake_github_serves_until_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runnerscale",
        "fake-github",
        "--port",
        str(port),
        "--token",
        "cli-token",
        "--token-scopes",
        "repo,admin:org",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        banner = await process.stderr.readline()
    assert b"fake GitHub listening on" in banner
    assert b"cli-token" not in banner
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.get("/rate_limit", headers={"Authorization": "token cli-token"})
        assert response.status_code == 200
        # --token-scopes made it a classic token, which hears its scopes.
        assert response.headers["x-oauth-scopes"] == "admin:org, repo"
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        await process.wait()
    assert process.returncode == 0


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip()


async def test_loopback_server_binds_ipv6() -> None:
    async with LoopbackServer(Starlette(), "::1", 0) as server:
        assert server.url.startswith("http://[::1]:")
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url + "/nothing")).status_code == 404


def test_version_option_prints_the_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"{__version__}\n")
