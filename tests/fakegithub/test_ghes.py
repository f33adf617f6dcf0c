"""GitHub Enterprise Server's layout and TLS: the REST API under ``/api/v3``, served over https
with a local CA, as ``gh`` (``GH_HOST``), githubkit and the stand-in runner use it."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from githubkit import GitHub

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.runner import JITCONFIG_ENV
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.fakegithub.tls import (
    CA_FILE,
    CA_KEY_FILE,
    ServerTls,
    TlsError,
    ensure_certificates,
    load_own_certificate,
    server_names,
)
from tests.contract.openapi import ValidatingTransport, default_contract
from tests.fakegithub.conftest import TOKEN

GHES = "/api/v3"
RUNNERS = "/repos/acme/app/actions/runners"
AUTH = {"Authorization": f"token {TOKEN}"}
LINUX = ["self-hosted", "linux"]


@pytest.fixture
def trust(tls_files: ServerTls) -> ssl.SSLContext:
    """A client context that trusts the simulator's CA and nothing else."""
    return ssl.create_default_context(cafile=tls_files.ca_file)


@pytest.fixture
async def api(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """Plain http is enough for the layout itself."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as client:
        await client.post("/_sim/repos", json={"repo": "acme/app"})
        yield client


async def jit(client: httpx.AsyncClient, name: str, prefix: str = "") -> dict[str, Any]:
    response = await client.post(
        f"{prefix}{RUNNERS}/generate-jitconfig",
        json={"name": name, "runner_group_id": 1, "labels": LINUX},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------------- the /api/v3 layout


async def test_every_operation_answers_under_both_prefixes(api: httpx.AsyncClient) -> None:
    await jit(api, "one")
    root = await api.get(RUNNERS, headers=AUTH)
    ghes = await api.get(f"{GHES}{RUNNERS}", headers=AUTH)
    assert root.status_code == ghes.status_code == 200
    assert root.json() == ghes.json()
    created = await jit(api, "two", prefix=GHES)
    runner = await api.get(f"{GHES}{RUNNERS}/{created['runner']['id']}", headers=AUTH)
    assert runner.json()["name"] == "two"
    contract = default_contract()
    contract.validate_response("GET", RUNNERS, 200, ghes.json())


async def test_stats_count_an_operation_the_same_under_both(api: httpx.AsyncClient) -> None:
    await api.get(RUNNERS, headers=AUTH)
    await api.get(f"{GHES}{RUNNERS}", headers=AUTH)
    await api.get(f"{GHES}{RUNNERS}")
    stats = (await api.get("/_sim/stats")).json()
    listing = stats["operations"]["actions/list-self-hosted-runners-for-repo"]
    assert listing["requests"] == 3
    assert listing["statuses"] == {"200": 2, "401": 1}


async def test_the_api_root_answers_with_and_without_the_slash(api: httpx.AsyncClient) -> None:
    bare = await api.get(GHES, headers=AUTH)
    slashed = await api.get(f"{GHES}/", headers=AUTH)
    root = await api.get("/", headers=AUTH)
    assert bare.status_code == slashed.status_code == root.status_code
    assert bare.json() == slashed.json()
    assert bare.status_code != 307
    operations = (await api.get("/_sim/stats")).json()["operations"]
    assert sum(op["requests"] for op in operations.values()) == 3


async def test_body_urls_follow_the_prefix_the_request_came_in_on(
    api: httpx.AsyncClient, simulator: SimulatorServer
) -> None:
    root = (await api.get("/orgs/acme/repos", headers=AUTH)).json()[0]
    ghes = (await api.get(f"{GHES}/orgs/acme/repos", headers=AUTH)).json()[0]
    assert root["url"] == f"{simulator.url}/repos/acme/app"
    assert ghes["url"] == f"{simulator.url}{GHES}/repos/acme/app"
    assert ghes["owner"]["url"] == f"{simulator.url}{GHES}/users/acme"
    # Web pages are not under the API prefix on GHES either.
    assert root["html_url"] == ghes["html_url"] == f"{simulator.url}/acme/app"
    # The next root request is back to root URLs (the prefix is per request).
    again = (await api.get("/orgs/acme/repos", headers=AUTH)).json()[0]
    assert again["url"] == root["url"]


async def test_link_headers_keep_the_prefix(api: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await jit(api, name)
    page = await api.get(f"{GHES}{RUNNERS}", params={"per_page": 2}, headers=AUTH)
    assert f'{GHES}{RUNNERS}?per_page=2&page=2>; rel="next"' in page.headers["link"]


async def test_unknown_paths_and_methods_under_the_prefix_get_githubs_404(
    api: httpx.AsyncClient,
) -> None:
    for method, path in (("GET", f"{GHES}/nothing/here"), ("PATCH", f"{GHES}{RUNNERS}")):
        response = await api.request(method, path, headers=AUTH)
        assert response.status_code == 404
        default_contract().validate_schema("basic-error", response.json())
        assert response.json()["message"] == "Not Found"
    # The control API stays at the root only.
    assert (await api.get(f"{GHES}/_sim/stats")).status_code == 404


@pytest.mark.parametrize("path", ["/api/graphql", "/graphql"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_graphql_is_a_clear_404(api: httpx.AsyncClient, method: str, path: str) -> None:
    response = await api.request(method, path, json={"query": "{ viewer { login } }"}, headers=AUTH)
    assert response.status_code == 404
    body = response.json()
    default_contract().validate_schema("basic-error", body)
    assert "serves only GitHub's REST API" in body["message"]
    assert "/api/v3/" in body["message"]
    assert response.headers["x-github-request-id"]


# ---------------------------------------------------------------------- over TLS


async def test_githubkit_uses_the_ghes_layout_over_tls(
    tls_simulator: SimulatorServer, trust: ssl.SSLContext
) -> None:
    assert tls_simulator.url.startswith("https://127.0.0.1:")
    transport = ValidatingTransport(
        httpx.AsyncHTTPTransport(verify=trust), default_contract(), base_path=GHES
    )
    async with httpx.AsyncClient(verify=trust, base_url=tls_simulator.url) as control:
        await control.post("/_sim/repos", json={"repo": "acme/app"})
        queued = {"repo": "acme/app", "labels": LINUX, "duration": 60}
        assert (await control.post("/_sim/jobs", json=queued)).status_code == 201
    github = GitHub(
        TOKEN,
        base_url=f"{tls_simulator.url}{GHES}",
        async_transport=transport,
        http_cache=False,
        auto_retry=False,
    )
    created = await github.rest.actions.async_generate_runner_jitconfig_for_repo(
        "acme", "app", data={"name": "ghes-1", "runner_group_id": 1, "labels": LINUX}
    )
    runner_id = created.parsed_data.runner.id
    listed = await github.rest.actions.async_list_self_hosted_runners_for_repo("acme", "app")
    assert [r.name for r in listed.parsed_data.runners] == ["ghes-1"]
    repos = await github.rest.repos.async_list_for_org("acme")
    assert repos.parsed_data[0].url == f"{tls_simulator.url}{GHES}/repos/acme/app"
    runs = await github.rest.actions.async_list_workflow_runs_for_repo("acme", "app")
    run = runs.parsed_data.workflow_runs[0]
    assert run.jobs_url.startswith(f"{tls_simulator.url}{GHES}/repos/acme/app/actions/runs/")
    jobs = await github.rest.actions.async_list_jobs_for_workflow_run("acme", "app", run.id)
    assert jobs.parsed_data.total_count == 1
    await github.rest.actions.async_delete_self_hosted_runner_from_repo("acme", "app", runner_id)
    transport.assert_clean()
    assert {operation for operation, _ in transport.seen} >= {
        "actions/generate-runner-jitconfig-for-repo",
        "actions/list-self-hosted-runners-for-repo",
        "repos/list-for-org",
        "actions/list-workflow-runs-for-repo",
        "actions/list-jobs-for-workflow-run",
        "actions/delete-self-hosted-runner-from-repo",
    }


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_simulator: SimulatorServer,
) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context()) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"{tls_simulator.url}{GHES}{RUNNERS}")


@pytest.mark.slow
async def test_the_stand_in_runner_trusts_the_ca_from_its_jit_config(
    tls_simulator: SimulatorServer, trust: ssl.SSLContext, tls_files: ServerTls
) -> None:
    """No SSL_CERT_FILE: the CA travels in the JIT configuration (a container has no file)."""
    async with httpx.AsyncClient(verify=trust, base_url=tls_simulator.url) as client:
        await client.post("/_sim/repos", json={"repo": "acme/app"})
        issued = await jit(client, "tls-runner", prefix=GHES)
        config = decode(issued["encoded_jit_config"])
        assert config.server_url == tls_simulator.url
        assert tls_files.ca_file is not None
        assert config.server_ca == tls_files.ca_file.read_text()
        job = (
            await client.post(
                "/_sim/jobs", json={"repo": "acme/app", "labels": LINUX, "duration": 0.2}
            )
        ).json()
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        env[JITCONFIG_ENV] = issued["encoded_jit_config"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerscale",
            "sim-runner",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 0, out.decode() + err.decode()
        assert "completed with result: Success" in out.decode()
        done = (await client.get("/_sim/jobs")).json()
        assert [j["conclusion"] for j in done if j["id"] == job["id"]] == ["success"]


async def test_plain_http_jit_configs_carry_no_ca(api: httpx.AsyncClient) -> None:
    issued = await jit(api, "plain")
    assert decode(issued["encoded_jit_config"]).server_ca is None


# ---------------------------------------------------------------------- gh (GH_HOST)

GH = shutil.which("gh")
needs_gh = pytest.mark.skipif(
    GH is None,
    reason="the gh command is not installed (apt-get install gh; scripts/install-system-deps)",
)


async def gh(
    host: str, tls_files: ServerTls, home: Path, *arguments: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """``gh`` as a GHES user runs it: GH_HOST, GH_ENTERPRISE_TOKEN, SSL_CERT_FILE; its own
    config folder so nothing of the machine's gh setup leaks in."""
    assert GH is not None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GH_CONFIG_DIR": str(home / "gh"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "GH_HOST": host,
        "GH_ENTERPRISE_TOKEN": TOKEN,
        "GH_NO_UPDATE_NOTIFIER": "1",
        "GH_PROMPT_DISABLED": "1",
        "NO_COLOR": "1",
    }
    if tls_files.ca_file is not None:
        env["SSL_CERT_FILE"] = str(tls_files.ca_file)
    process = await asyncio.create_subprocess_exec(
        GH,
        *arguments,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@needs_gh
@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_gh_api_through_gh_host(
    tls_simulator: SimulatorServer,
    trust: ssl.SSLContext,
    tls_files: ServerTls,
    tmp_path: Path,
    name: str,
) -> None:
    host = f"{name}:{tls_simulator.port}"
    async with httpx.AsyncClient(verify=trust, base_url=tls_simulator.url) as control:
        await control.post("/_sim/repos", json={"repo": "acme/app"})
        body = json.dumps({"name": "gh-1", "runner_group_id": 1, "labels": LINUX})
        code, out, err = await gh(
            host,
            tls_files,
            tmp_path,
            "api",
            "--method",
            "POST",
            f"{RUNNERS}/generate-jitconfig",
            "--input",
            "-",
            stdin=body.encode(),
        )
        assert code == 0, err
        assert json.loads(out)["runner"]["name"] == "gh-1"
        for index in range(2, 6):
            await jit(control, f"gh-{index}")
        code, out, err = await gh(host, tls_files, tmp_path, "api", RUNNERS)
        assert code == 0, err
        assert json.loads(out)["total_count"] == 5
        code, out, err = await gh(
            host,
            tls_files,
            tmp_path,
            "api",
            "--paginate",
            f"{RUNNERS}?per_page=2",
            "--jq",
            ".runners[].name",
        )
        assert code == 0, err
        assert out.split() == [f"gh-{index}" for index in range(1, 6)]
        stats = (await control.get("/_sim/stats")).json()["operations"]
    # One plain GET, then three pages; the POST went through gh, the other four through httpx.
    assert stats["actions/list-self-hosted-runners-for-repo"]["requests"] == 4
    assert stats["actions/generate-runner-jitconfig-for-repo"]["statuses"] == {"201": 5}


@needs_gh
async def test_gh_refuses_the_simulator_without_the_ca(
    tls_simulator: SimulatorServer, tmp_path: Path
) -> None:
    untrusted = ServerTls(Path("unused"), Path("unused"))
    code, _, err = await gh(f"127.0.0.1:{tls_simulator.port}", untrusted, tmp_path, "api", RUNNERS)
    assert code != 0
    assert "certificate" in err


# ---------------------------------------------------------------------- certificates


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_is_reused_and_the_keys_stay_private(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, "127.0.0.1")
    assert first.ca_created
    assert first.ca_file == tmp_path / CA_FILE
    (tmp_path / CA_KEY_FILE).chmod(0o644)
    second = ensure_certificates(tmp_path, "127.0.0.1")
    assert not second.ca_created
    assert second.ca_file is not None
    assert second.ca_file.read_bytes() == first.ca_file.read_bytes()
    assert second.certfile.read_bytes() == first.certfile.read_bytes()
    for key in (tmp_path / CA_KEY_FILE, second.keyfile):
        assert key.stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700


def test_the_server_certificate_covers_loopback_and_the_host(tmp_path: Path) -> None:
    made = ensure_certificates(tmp_path, "sim.example.test")
    names = _certificate(made.certfile).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert sorted(map(str, names.value.get_values_for_type(x509.IPAddress))) == [
        "127.0.0.1",
        "::1",
    ]
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost", "sim.example.test"]
    other = ensure_certificates(tmp_path, "127.0.0.1")
    assert other.certfile != made.certfile
    assert made.certfile.exists()


def test_every_address_adds_the_machine_name() -> None:
    assert server_names("0.0.0.0")[3:] == ["0.0.0.0", socket.gethostname()]
    assert server_names("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]


def test_an_expiring_ca_is_replaced(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, "127.0.0.1")
    assert first.ca_file is not None
    original = first.ca_file.read_bytes()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3640)
    renewed = ensure_certificates(tmp_path, "127.0.0.1", now=later)
    assert renewed.ca_created
    assert renewed.ca_file == first.ca_file
    assert renewed.ca_file.read_bytes() != original
    assert _certificate(renewed.certfile).issuer == _certificate(renewed.ca_file).subject


def test_a_broken_ca_is_an_error_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / CA_FILE).write_text("not a certificate")
    with pytest.raises(TlsError, match=r"is not a PEM certificate.*delete"):
        ensure_certificates(tmp_path, "127.0.0.1")
    assert (tmp_path / CA_FILE).read_text() == "not a certificate"


def _key_file(path: Path, encrypted: bool = False) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(b"secret")
        if encrypted
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return key


def test_own_certificates_are_checked(tmp_path: Path, tls_files: ServerTls) -> None:
    assert load_own_certificate(tls_files.certfile, tls_files.keyfile).ca_file is None
    other = tmp_path / "other.pem"
    _key_file(other)
    with pytest.raises(TlsError, match="does not belong to the certificate"):
        load_own_certificate(tls_files.certfile, other)
    locked = tmp_path / "locked.pem"
    _key_file(locked, encrypted=True)
    with pytest.raises(TlsError, match="encrypted"):
        load_own_certificate(tls_files.certfile, locked)
    with pytest.raises(TlsError, match="not a PEM certificate"):
        load_own_certificate(other, other)
    with pytest.raises(TlsError, match="not a PEM private key"):
        load_own_certificate(tls_files.certfile, tls_files.certfile)
