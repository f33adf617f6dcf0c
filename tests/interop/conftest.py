"""Interop tests: real third-party GitHub clients against a live simulator.

Two clients, used through their public APIs the way their users use them:

- Octokit for JavaScript (``@octokit/rest`` and its plugins, pinned in ``node/package.json``
  and ``node/package-lock.json``), run as node scripts in ``node/``. A script reads the
  simulator's address and credentials from the environment and its scenario from a JSON
  argument, and prints one JSON result that the test asserts on;
- PyGithub (pinned in ``constraints.txt``), run in a worker thread because it blocks and the
  simulator serves from the test's event loop.

``bash scripts/install-interop-deps`` (called by ``scripts/test``) installs node, when it is
missing, and the npm packages. The Octokit tests skip, saying why, only when no node 20+ (or
no npm to install the packages with) can be had; a node without the installed packages is an
error, not a skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorServer
from tests.fakegithub import conftest as sim_fixtures

# The simulator's fixtures and credentials (tests/fakegithub/conftest.py), shared with these tests.
TOKEN = sim_fixtures.TOKEN
APP_ID = sim_fixtures.APP_ID
app_private_key = sim_fixtures.app_private_key
sim_options = sim_fixtures.sim_options
simulator = sim_fixtures.simulator
control = sim_fixtures.control
tls_files = sim_fixtures.tls_files
tls_simulator = sim_fixtures.tls_simulator

NODE_DIR = Path(__file__).parent / "node"
#: Written by scripts/install-interop-deps after ``npm ci``: what it installed.
STAMP = NODE_DIR / "node_modules" / ".runnerscale-installed"
#: The oldest node the pinned Octokit packages support (their ``engines``).
MIN_NODE_MAJOR = 20
#: How long one node script may take before the test fails.
NODE_TIMEOUT = 90.0


def installed_stamp(node_major: int) -> str:
    """What scripts/install-interop-deps writes to STAMP (keep the two in step)."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_DIR / name).read_bytes())
    return f"{digest.hexdigest()[:16]} node{node_major}"


class NodeScriptError(AssertionError):
    """A node script failed: its exit code and everything it wrote."""


class NodeProcess:
    """A running node script. It prints JSON lines: any number of progress lines (read with
    :meth:`next_json`), then its result as the last line (:meth:`result`)."""

    def __init__(self, script: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        self.script = script
        self._process = process
        self._stdout = process.stdout
        # Drained all along, so a chatty script never blocks on a full pipe.
        self._stderr = asyncio.create_task(process.stderr.read(), name=f"node-{script}-stderr")

    async def next_json(self, timeout: float = NODE_TIMEOUT) -> Any:
        """The next line the script prints, parsed."""
        try:
            line = await asyncio.wait_for(self._stdout.readline(), timeout)
        except TimeoutError:
            raise await self._failure(f"printed nothing within {timeout} s") from None
        if not line:
            await self._process.wait()
            raise await self._failure(f"exited with {self._process.returncode} before a result")
        return json.loads(line)

    async def result(self, timeout: float = NODE_TIMEOUT) -> Any:
        """Wait for the script to exit and return its last line, parsed."""
        try:
            stdout = await asyncio.wait_for(self._stdout.read(), timeout)
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            raise await self._failure(f"did not finish within {timeout} s") from None
        if self._process.returncode != 0:
            raise await self._failure(
                f"exited with {self._process.returncode}",
                f"--- stdout ---\n{stdout.decode(errors='replace')}",
            )
        lines = stdout.decode().strip().splitlines()
        if not lines:
            raise await self._failure("printed no result")
        return json.loads(lines[-1])

    async def close(self) -> None:
        """Stop the script if it still runs; collect its stderr."""
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()
        await self._stderr

    async def _failure(self, what: str, *more: str) -> NodeScriptError:
        await self.close()
        stderr = self._stderr.result().decode(errors="replace")
        return NodeScriptError(
            "\n".join([f"node {self.script} {what}", f"--- stderr ---\n{stderr}", *more])
        )


@dataclass(frozen=True)
class Node:
    """A usable node with the interop packages installed."""

    executable: str
    version: str

    @asynccontextmanager
    async def start(
        self, script: str, params: Mapping[str, Any], env: Mapping[str, str]
    ) -> AsyncIterator[NodeProcess]:
        """Start ``node/<script>`` with ``params`` as its JSON argument; stopped on exit."""
        process = await asyncio.create_subprocess_exec(
            self.executable,
            str(NODE_DIR / script),
            json.dumps(dict(params)),
            cwd=NODE_DIR,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        running = NodeProcess(script, process)
        try:
            yield running
        finally:
            await running.close()

    async def run(
        self,
        script: str,
        params: Mapping[str, Any],
        env: Mapping[str, str],
        timeout: float = NODE_TIMEOUT,
    ) -> Any:
        """Run ``node/<script>`` to its end and return its JSON result.

        A non-zero exit or a timeout fails the test with node's stderr."""
        async with self.start(script, params, env) as running:
            return await running.result(timeout)


def _find_node() -> Node:
    executable = shutil.which("node")
    if executable is None:
        pytest.skip(
            "node is not installed: the Octokit interop tests need node >= "
            f"{MIN_NODE_MAJOR} (bash scripts/install-interop-deps installs it with apt)"
        )
    version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    match = re.fullmatch(r"v(\d+)\..*", version)
    major = int(match.group(1)) if match else 0
    if major < MIN_NODE_MAJOR:
        pytest.skip(
            f"node {version} at {executable} is too old: the pinned Octokit packages need "
            f"node >= {MIN_NODE_MAJOR}"
        )
    wanted = installed_stamp(major)
    have = STAMP.read_text().strip() if STAMP.exists() else None
    if have != wanted:
        if shutil.which("npm") is None:
            pytest.skip(
                "npm is not installed, so the pinned Octokit packages cannot be installed "
                "(bash scripts/install-interop-deps)"
            )
        pytest.fail(
            f"the npm packages in {NODE_DIR} are missing or stale: run "
            "bash scripts/install-interop-deps"
        )
    return Node(executable, version)


@pytest.fixture(scope="session")
def node() -> Node:
    return _find_node()


@pytest.fixture
def node_env(simulator: SimulatorServer, app_private_key: str) -> dict[str, str]:
    """How a node script finds the simulator and its credentials."""
    return {
        "GITHUB_API_URL": simulator.url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": app_private_key,
    }


async def sim_post(control: httpx.AsyncClient, path: str, body: object) -> Any:
    """POST to the control API (``/_sim/...``); the answer's JSON."""
    response = await control.post(path, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def operation_statuses(control: httpx.AsyncClient, operation: str) -> dict[str, int]:
    """How many answers of each status ``operation`` gave (``/_sim/stats``)."""
    stats = (await control.get("/_sim/stats")).json()
    return dict(stats["operations"].get(operation, {}).get("statuses", {}))
