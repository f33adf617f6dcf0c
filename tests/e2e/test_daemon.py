"""The daemon end to end, over real HTTP: simulator + daemon + local backend + stand-in runners.

Each test ends by checking that nothing was left behind: no runner registered in the
simulator, no runner directory (process) on the backend, no live runner in the store.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.fakegithub.world import WorldSettings
from runnerscale.github.webhooks import sign
from tests.contract.openapi import contract_dir
from tests.e2e.control import control_client
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    all_done,
    in_process_daemon,
    leftovers,
    nothing_left,
    queue_jobs,
    record_jit_configs,
    start_daemon_process,
    stop_daemon_process,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    options = SimulatorOptions(tokens=(TOKEN,), world=WorldSettings(runner_offline_after=30.0))
    async with SimulatorServer(options) as server:
        server.simulator.world.ensure_repo("acme/app")
        yield server


def hook(simulator: SimulatorServer, daemon_url: str) -> None:
    simulator.simulator.webhooks.add_hook(f"{daemon_url}/webhook", WEBHOOK_SECRET)


async def test_a_burst_of_30_jobs_is_served_and_nothing_is_left(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="10s")
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        job_ids = queue_jobs(simulator, 30, duration=1.0)
        world = simulator.simulator.world
        await wait_until(lambda: all_done(world, job_ids), 120, "30 jobs to complete")
        assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )
        created = [r for r in daemon.store.runners() if r.pool == "linux-x64"]
        assert len(created) >= 30  # ephemeral: one runner per job
        assert len(created) <= 30 + 8  # no runaway creation
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{daemon.url}/metrics")).text
        assert 'runnerscale_scale_operations_total{operation="create",pool="linux-x64"}' in metrics
        assert "runnerscale_job_queue_wait_seconds_bucket" in metrics


async def test_webhooks_alone_serve_jobs(simulator: SimulatorServer, tmp_path: Path) -> None:
    # Polling is effectively off: only the webhook fast path can find the jobs in time.
    config = write_config(tmp_path, simulator.url, poll_interval="1h")
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        await asyncio.sleep(0.5)  # let the start-up poll pass
        job_ids = queue_jobs(simulator, 5)
        world = simulator.simulator.world
        await wait_until(lambda: all_done(world, job_ids), 60, "jobs served by webhooks")
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )


async def test_polling_alone_serves_jobs_when_every_webhook_is_lost(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    simulator.simulator.set_faults(
        simulator.simulator.faults.plan.model_validate({"webhooks": {"drop_rate": 1.0}})
    )
    config = write_config(tmp_path, simulator.url, poll_interval="2s")
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        job_ids = queue_jobs(simulator, 6)
        world = simulator.simulator.world
        await wait_until(lambda: all_done(world, job_ids), 90, "jobs served by polling")
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )
        deliveries = simulator.simulator.webhooks.log
        assert deliveries
        assert all(d.status == "dropped" for d in deliveries)


async def test_bad_webhooks_are_rejected(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="1h")
    async with in_process_daemon(config) as daemon, httpx.AsyncClient(base_url=daemon.url) as http:
        examples = contract_dir() / "webhooks" / "workflow_job"
        body = (examples / "queued.payload.json").read_bytes()

        def headers(
            payload: bytes, *, event: str = "workflow_job", delivery: str = "d-1"
        ) -> dict[str, str]:
            return {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(WEBHOOK_SECRET, payload),
                "Content-Type": "application/json",
            }

        missing = await http.post(
            "/webhook", content=body, headers={"X-GitHub-Event": "workflow_job"}
        )
        assert missing.status_code == 401
        wrong = await http.post(
            "/webhook",
            content=body,
            headers={**headers(body), "X-Hub-Signature-256": "sha256=" + "0" * 64},
        )
        assert wrong.status_code == 401
        not_json = b"this is not json"
        assert (
            await http.post("/webhook", content=not_json, headers=headers(not_json))
        ).status_code == 400
        other = await http.post("/webhook", content=b"{}", headers=headers(b"{}", event="push"))
        assert other.status_code == 204
        too_big = b" " * (25 * 1024 * 1024 + 1)
        response = await http.post("/webhook", content=too_big, headers=headers(b"x"))
        assert response.status_code == 413

        # The published examples are accepted as they are (their repositories are not
        # among this daemon's targets, which is said, not an error).
        for example in sorted(examples.glob("*.payload.json")):
            payload = example.read_bytes()
            answer = await http.post(
                "/webhook", content=payload, headers=headers(payload, delivery=example.name)
            )
            assert answer.status_code in (200, 202), (example.name, answer.text)

        # A repeated delivery is harmless.
        own = json.loads(body)
        own["repository"]["full_name"] = "acme/app"
        own["repository"]["owner"]["login"] = "acme"
        payload = json.dumps(own).encode()
        first = await http.post(
            "/webhook", content=payload, headers=headers(payload, delivery="same")
        )
        again = await http.post(
            "/webhook", content=payload, headers=headers(payload, delivery="same")
        )
        assert (first.status_code, again.status_code) == (202, 200)
        assert "duplicate" in again.json()["message"]

        # Each delivery is counted by what became of it.
        metrics = (await http.get("/metrics")).text
        examples_count = len(list(examples.glob("*.payload.json")))
        for outcome, count in (
            ("bad_signature", 2),
            ("invalid", 1),
            ("ignored_event", 1),
            ("too_large", 1),
            ("not_a_target", examples_count),
            ("accepted", 1),
            ("duplicate", 1),
            ("failed", 0),
        ):
            assert (
                f'runnerscale_webhook_deliveries_total{{outcome="{outcome}"}} {count}.0' in metrics
            )


async def test_operators_scale_by_hand_and_read_status(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="1s", idle_timeout="1h")
    async with (
        in_process_daemon(config) as daemon,
        control_client(daemon, timeout=30) as http,
        httpx.AsyncClient(base_url=daemon.url) as public,
    ):
        up = await http.post("/api/v1/pools/linux-x64/scale-up", json={"count": 2})
        assert up.status_code == 200
        assert len(up.json()["created"]) == 2
        await wait_until(
            lambda: (
                len([r for r in simulator.simulator.world.runners.values() if r.connected]) == 2
            ),
            30,
            "two idle runners online",
        )
        await daemon.controller.poll_once()
        await daemon.controller.reconcile_once()
        status = (await http.get("/api/v1/status")).json()
        pool = status["pools"][0]
        assert (pool["name"], pool["idle"]) == ("linux-x64", 2)
        assert status["github"]["rate_limit"]["core"]["limit"] == 5000
        assert (
            await http.post("/api/v1/pools/nope/scale-up", json={"count": 1})
        ).status_code == 404
        assert (
            await http.post("/api/v1/pools/linux-x64/scale-up", json={"count": 0})
        ).status_code == 422
        down = await http.post("/api/v1/pools/linux-x64/scale-down", json={})
        assert len(down.json()["removed"]) == 2
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 30, "clean-up"
        )
        assert (await http.delete("/api/v1/runners/rs-unknown")).status_code == 404
        health = (await public.get("/healthz")).json()
        assert health["status"] == "ok"


async def test_a_daemon_killed_mid_burst_carries_on_after_restart_and_logs_no_secret(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="2s", max_runners=4)
    log = tmp_path / "daemon.log"
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    simulator.simulator.webhooks.add_hook(f"http://127.0.0.1:{port}/webhook", WEBHOOK_SECRET)
    world = simulator.simulator.world
    jit_configs = record_jit_configs(world)
    daemon = await start_daemon_process(config, log)
    try:
        async with httpx.AsyncClient() as http:
            await wait_until(
                lambda: _reachable(http, f"http://127.0.0.1:{port}/healthz"),
                30,
                "the daemon to listen",
            )
        job_ids = queue_jobs(simulator, 12, duration=3.0)
        await wait_until(
            lambda: sum(world.jobs[j].status.value == "in_progress" for j in job_ids) >= 2,
            60,
            "jobs to start",
        )
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        daemon = await start_daemon_process(config, log)
        await wait_until(lambda: all_done(world, job_ids), 120, "every job after the restart")
        assert all(world.jobs[j].conclusion.value == "success" for j in job_ids)  # type: ignore[union-attr]
        await wait_until(
            lambda: _clean(simulator, tmp_path / "runners"), 60, "no runner left after the restart"
        )
    finally:
        await stop_daemon_process(daemon)
    assert daemon.returncode == 0
    text = log.read_text()
    assert "runner" in text  # the log says what it decided
    for secret in [TOKEN, WEBHOOK_SECRET, *jit_configs]:
        assert secret not in text


async def _reachable(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def _clean(simulator: SimulatorServer, work_root: Path) -> bool:
    return not any((await leftovers(simulator, work_root)).values())


async def test_the_daemon_keeps_its_state_in_postgres(
    simulator: SimulatorServer, tmp_path: Path, postgres_url: str
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="2s", state=postgres_url)
    async with in_process_daemon(config) as daemon:
        hook(simulator, daemon.url)
        job_ids = queue_jobs(simulator, 4)
        world = simulator.simulator.world
        await wait_until(lambda: all_done(world, job_ids), 60, "jobs served with Postgres state")
        await wait_until(
            lambda: nothing_left(simulator, daemon, tmp_path / "runners"), 60, "clean-up"
        )
        assert daemon.store.engine.dialect.name == "postgresql"
        assert {job.id for job in daemon.store.jobs()} >= set(job_ids)


async def test_sighup_reloads_limits_and_a_bad_config_is_refused(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, simulator.url, poll_interval="2s", max_runners=4)
    log = tmp_path / "daemon.log"
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    daemon = await start_daemon_process(config, log)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as public,
            control_client(config) as http,
        ):
            await wait_until(
                lambda: _reachable(public, f"http://127.0.0.1:{port}/healthz"), 30, "listen"
            )

            async def max_runners() -> int:
                pools = (await http.get("/api/v1/status")).json()["pools"]
                return int(pools[0]["max_runners"]) if pools else -1

            async def cap_is(expected: int) -> bool:
                return await max_runners() == expected

            await wait_until(lambda: cap_is(4), 30, "the first status")
            config.write_text(config.read_text().replace("max_runners: 4", "max_runners: 2"))
            daemon.send_signal(signal.SIGHUP)
            await wait_until(lambda: cap_is(2), 30, "the reloaded cap")
            config.write_text(config.read_text().replace("max_runners: 2", "max_runners: zero"))
            daemon.send_signal(signal.SIGHUP)
            await wait_until(lambda: "reload refused" in log.read_text(), 30, "the refusal")
            assert await max_runners() == 2
    finally:
        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await daemon.wait()
    assert daemon.returncode == 0
    text = log.read_text()
    assert "pool linux-x64: limits updated" in text
    assert "max_runners" in text  # the refusal names the problem
