"""The stand-in runner: ``runnerscale sim-runner``, its JIT config in the environment.

It behaves, from the outside, like the official runner's ``run.sh``: it takes the encoded
configuration the (simulated) GitHub handed out, connects, waits for its one job, "runs" it for
the job's duration while sending heartbeats, reports the result, and exits. Backends launch it
exactly as they launch the real runner, so the whole autoscaler can be exercised without GitHub.

It takes the configuration where the official runner does (:func:`take_jitconfig`): the
``--jitconfig`` option, else the environment variable ``ACTIONS_RUNNER_INPUT_JITCONFIG``, which
keeps it off the command line that every local user can read; else the settings files in its
root folder (:func:`jitconfig_from_files`), where a boot script that fetched them one by one
(garm's, the external backend's) puts them for the official runner's ``run.sh``.

The protocol (all JSON, ``Authorization: Bearer <runner credential>``, under ``/_sim/runner``):
``POST connect``; ``GET job?wait=S`` (long-poll; ``{"job": null}`` or the job message);
``POST jobs/ID/heartbeat`` (answers ``{"cancelled": bool}``); ``POST jobs/ID/complete`` with
``{"conclusion": ...}``; ``POST disconnect`` when it leaves without a job.

Exit codes: 0 after its job (or a clean stop), 2 for a configuration it cannot read, 3 when
the service no longer knows the runner (removed), 4 when the service cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from runnerscale.fakegithub.jitconfig import JitConfig, JitConfigError, decode, from_files

EXIT_OK = 0
EXIT_BAD_CONFIG = 2
EXIT_UNREGISTERED = 3
EXIT_UNREACHABLE = 4

HEARTBEAT_SECONDS = 5.0
LONG_POLL_SECONDS = 20.0
#: How long the runner keeps retrying an unreachable service before it gives up.
CONNECT_PATIENCE = 60.0
#: Where the official runner reads its ``--jitconfig`` when the option is not given.
JITCONFIG_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"
#: What every ``ACTIONS_RUNNER_INPUT_<NAME>`` variable starts with.
_INPUT_PREFIX = "ACTIONS_RUNNER_INPUT_"


def take_jitconfig(
    option: str | None, environ: MutableMapping[str, str] | None = None
) -> str | None:
    """The encoded JIT config, as the official runner finds it: the ``--jitconfig`` option,
    else ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (trimmed; empty counts as not set). None: neither.

    As the official runner does, every ``ACTIONS_RUNNER_INPUT_*`` variable is removed from the
    environment (``os.environ`` by default), so nothing this process starts inherits one.

    The official runner's rule (actions/runner, ``src/Runner.Listener/CommandSettings.cs``,
    read at commit 258d6c857db3): its constructor stores every ``ACTIONS_RUNNER_INPUT_<NAME>``
    variable as the value of option ``--<name>`` (case-insensitive), registers those of secret
    options (``jitconfig`` is one, ``Constants.Runner.CommandLine.Args.Secrets``) with its
    secret masker, and removes them from its environment block; ``GetJitConfig()`` is
    ``GetArg("jitconfig")``, the command line first, then those variables.
    """
    environ = os.environ if environ is None else environ
    found = None
    for name in [name for name in environ if name.upper().startswith(_INPUT_PREFIX)]:
        value = environ.pop(name).strip()
        if name.upper() == JITCONFIG_ENV and value:
            found = value
    return option if option else found


def jitconfig_from_files(root: Path) -> str | None:
    """The encoded JIT config made of the settings files in ``root`` (``.runner``,
    ``.credentials``, ``.credentials_rsaparams``, as GitHub's encoded config holds them and
    the official runner reads them from its folder); None when ``.runner`` is not there.
    Raises :class:`JitConfigError` when a file is missing or unreadable."""
    if not (root / ".runner").exists():
        return None
    return from_files(root)


class UnregisteredError(Exception):
    """The service answered 401: this runner was removed or never existed."""


@dataclass
class StandInRunner:
    config: JitConfig
    out: TextIO = sys.stdout
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    long_poll_seconds: float = LONG_POLL_SECONDS

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()

    def say(self, message: str) -> None:
        print(f"[{self.config.runner_name}] {message}", file=self.out, flush=True)

    def request_stop(self) -> None:
        self._stop.set()

    async def _call(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """One protocol call, retried while the service is unreachable."""
        delay = 0.5
        waited = 0.0
        while True:
            try:
                response = await client.request(method, f"/_sim/runner/{path}", **kwargs)
            except httpx.TransportError:
                if waited >= CONNECT_PATIENCE:
                    raise
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)
                continue
            if response.status_code == 401:
                raise UnregisteredError(response.json().get("message", "unregistered"))
            response.raise_for_status()
            return response

    async def run(self) -> int:
        headers = {"Authorization": f"Bearer {self.config.credential}"}
        timeout = httpx.Timeout(self.long_poll_seconds + 30.0)
        async with httpx.AsyncClient(
            base_url=self.config.server_url,
            headers=headers,
            timeout=timeout,
            verify=self._tls_context(),
        ) as client:
            try:
                return await self._lifecycle(client)
            except UnregisteredError as error:
                self.say(f"The service no longer knows this runner: {error}")
                return EXIT_UNREGISTERED
            except httpx.TransportError as error:
                self.say(f"Cannot reach {self.config.server_url}: {type(error).__name__}")
                return EXIT_UNREACHABLE

    def _tls_context(self) -> ssl.SSLContext:
        """The usual trust (``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi's roots) plus
        the simulator's own CA when its configuration carries one."""
        context = httpx.create_ssl_context()
        if self.config.server_ca is not None:
            context.load_verify_locations(cadata=self.config.server_ca)
        return context

    async def _lifecycle(self, client: httpx.AsyncClient) -> int:
        await self._call(client, "POST", "connect")
        self.say("Connected to GitHub")
        self.say("Listening for Jobs")
        job = await self._wait_for_job(client)
        if job is None:
            await self._call(client, "POST", "disconnect")
            self.say("Stopped before a job was assigned")
            return EXIT_OK
        self.say(f"Running job: {job['name']}")
        conclusion = await self._run_job(client, job)
        if conclusion is None:
            # Acknowledge the cancel so the service can let this runner go.
            await self._call(
                client, "POST", f"jobs/{job['id']}/complete", json={"conclusion": "cancelled"}
            )
            self.say(f"Job {job['name']} was cancelled by the service")
            return EXIT_OK
        await self._call(
            client, "POST", f"jobs/{job['id']}/complete", json={"conclusion": conclusion}
        )
        self.say(f"Job {job['name']} completed with result: {conclusion.capitalize()}")
        return EXIT_OK

    async def _wait_for_job(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        while not self._stop.is_set():
            poll = asyncio.create_task(
                self._call(client, "GET", "job", params={"wait": self.long_poll_seconds})
            )
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
            if poll not in done:
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
                stop.cancel()
                return None
            stop.cancel()
            job: dict[str, Any] | None = poll.result().json()["job"]
            if job is not None:
                return job
        return None

    async def _run_job(self, client: httpx.AsyncClient, job: dict[str, Any]) -> str | None:
        """Run until the job's duration has passed; None when the service cancelled it."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + float(job["duration"])
        while True:
            beat = await self._call(client, "POST", f"jobs/{job['id']}/heartbeat")
            if beat.json()["cancelled"]:
                return None
            left = ends - loop.time()
            if left <= 0:
                return str(job["conclusion"])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.heartbeat_seconds, left)):
                    await self._stop.wait()
            if self._stop.is_set():
                # Like the official runner on SIGTERM: the job ends as cancelled.
                return "cancelled"


async def run_stand_in(encoded: str | None, out: TextIO = sys.stdout) -> int:
    """Run the stand-in runner with the encoded config (None: none was given; exit 2)."""
    if encoded is None:
        print(
            f"sim-runner: no JIT config: set {JITCONFIG_ENV}, or run it where the runner's "
            "settings files are (.runner, .credentials: --root DIR), or give --jitconfig (which "
            "every local user can read on the command line)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    try:
        config = decode(encoded)
    except JitConfigError as error:
        print(f"sim-runner: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    runner = StandInRunner(config, out=out)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.request_stop)
    try:
        return await runner.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
