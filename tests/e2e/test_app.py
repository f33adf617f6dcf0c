"""The daemon as a GitHub App (a real RSA key in a file) for two organisations, as a real
``runnerscale run`` process against the simulator: every job is served, and no key, token or
JIT config reaches the debug log or the status API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runnerscale.config import load_config
from runnerscale.daemon import Daemon, StartupError
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import JobSpec, WorldSettings
from tests.e2e.control import control_client
from tests.e2e.harness import (
    ENV,
    LINUX,
    WEBHOOK_SECRET,
    all_done,
    record_jit_configs,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)
from tests.e2e.test_daemon import _clean, _reachable
from tests.github.test_app_auth import APP_ID, KEY

pytestmark = pytest.mark.timeout(300)


async def test_an_app_serves_two_organisations_and_logs_no_secret(tmp_path: Path) -> None:
    options = SimulatorOptions(
        app_id=APP_ID, app_key=KEY, world=WorldSettings(runner_offline_after=30.0)
    )
    async with SimulatorServer(options) as simulator:
        world = simulator.simulator.world
        for repo in ("acme/app", "beta/site"):
            world.ensure_repo(repo)
        key_file = tmp_path / "app.pem"
        key_file.write_text(KEY)
        key_file.chmod(0o600)
        config = write_config(tmp_path, simulator.url, poll_interval="2s", max_runners=4)
        text = config.read_text()
        text = text.replace(
            "  token: ${E2E_TOKEN}\n",
            f"  app:\n    id: {APP_ID}\n    private_key_file: {key_file}\n",
        ).replace("targets:\n  - org: acme\n", "targets:\n  - org: acme\n  - org: beta\n")
        config.write_text(text)
        port = int(text.split("listen: 127.0.0.1:")[1].split()[0])
        simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
        jit_configs = record_jit_configs(world)
        log = tmp_path / "daemon.log"
        daemon = await start_daemon_process(config, log)
        try:
            async with httpx.AsyncClient() as http, control_client(config) as control:
                await wait_until(
                    lambda: _reachable(http, f"http://127.0.0.1:{port}/healthz"),
                    30,
                    "the daemon to listen",
                )
                jobs = world.create_jobs(
                    [
                        JobSpec(repo, LINUX, 2.0, None, f"j{i}")
                        for i in range(3)
                        for repo in ("acme/app", "beta/site")
                    ]
                )
                simulator.simulator.notify()
                job_ids = [job.id for job in jobs]
                await wait_until(lambda: all_done(world, job_ids), 120, "jobs of both orgs")
                assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
                status = (await control.get("/api/v1/status")).text
                metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            await wait_until(lambda: _clean(simulator, tmp_path / "runners"), 60, "clean-up")
        finally:
            await stop_daemon_process(daemon)
        assert daemon.returncode == 0
        installation_tokens = [t.token for t in world.tokens.values() if t.kind == "installation"]
        assert {t.scope for t in world.tokens.values() if t.kind == "installation"} == {
            "acme",
            "beta",
        }
        secrets = [*installation_tokens, *jit_configs, WEBHOOK_SECRET]
        secrets += [line for line in KEY.splitlines() if not line.startswith("-----")]
        for where, content in (("log", log.read_text()), ("status", status), ("metrics", metrics)):
            for secret in secrets:
                assert secret not in content, f"a secret in the {where}"


async def test_bad_credentials_stop_the_start(tmp_path: Path) -> None:
    async with SimulatorServer(SimulatorOptions(tokens=("ghp_the_right_one",))) as simulator:
        simulator.simulator.world.ensure_repo("acme/app")
        config = load_config(
            write_config(tmp_path, simulator.url),
            env={**ENV, "E2E_TOKEN": "ghp_a_wrong_token", "HOME": str(tmp_path)},
        )
        daemon = Daemon.build(config, controller_id="runnerscale-e2e")
        with pytest.raises(StartupError, match="401") as caught:
            await daemon.start()
        assert "ghp_a_wrong_token" not in str(caught.value)
        await daemon.stop()
