"""The ``runnerscale`` command as a person uses it: clear errors, clean start and stop."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from runnerscale.cli import app
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
