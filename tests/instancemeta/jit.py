"""GitHub-shaped JIT configs for the tests: base64 of a JSON object of the runner's base64
files, the ``.runner`` file as GitHub writes it (camel-case keys, a byte-order mark)."""

from __future__ import annotations

import base64
import json

RUNNER_FILE = (
    "\ufeff"
    + json.dumps(
        {
            "agentId": 42,
            "agentName": "rs-lxd-abc",
            "poolId": 1,
            "serverUrl": "https://pipelines.actions.githubusercontent.com/abc",
            "gitHubUrl": "https://github.com/acme/app",
            "workFolder": "_work",
            "ephemeral": True,
        }
    )
).encode()
CREDENTIALS_FILE = json.dumps(
    {"scheme": "OAuth", "data": {"clientId": "c1", "authorizationUrl": "https://x/y"}}
).encode()
RSA_FILE = json.dumps({"d": "secret-rsa-d-part", "modulus": "secret-modulus"}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(
    runner: bytes = RUNNER_FILE, credentials: bytes = CREDENTIALS_FILE, rsa: bytes = RSA_FILE
) -> str:
    """The encoded JIT config holding these files."""
    files = {".runner": b64(runner), ".credentials": b64(credentials)}
    files[".credentials_rsaparams"] = b64(rsa)
    return b64(json.dumps(files).encode())


def runner_file_of(github_url: str) -> bytes:
    return json.dumps({"agentId": 1, "gitHubUrl": github_url}).encode()
