"""The daemon serves the instances' routes on ``server.listen``, open (the token is the key),
tells its registry the URL once the listener is bound (port 0 too), counts the requests in its
metrics, and fills the instance fields of a backend's context."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runnerscale.config import load_config
from runnerscale.daemon import Daemon, _instance_context, downloads_target, runner_downloads
from runnerscale.fakegithub.server import SimulatorServer
from runnerscale.github.client import GitHubClient
from runnerscale.model import Target
from runnerscale.protocols import GitHubError
from runnerscale.providers.registry import BackendContext
from tests.e2e.harness import ENV, TOKEN, in_process_daemon, write_config
from tests.e2e.test_daemon import simulator
from tests.instancemeta.jit import encoded

__all__ = ["simulator"]  # a fixture, imported

pytestmark = pytest.mark.timeout(120)


def configure(directory: Path, api_url: str, *server: str, target: str = "org: acme") -> Path:
    directory.mkdir(exist_ok=True)
    config = write_config(directory, api_url, poll_interval="1h", target=target)
    text = config.read_text()
    config.write_text(text.replace("server:\n", "server:\n" + "".join(f"  {s}\n" for s in server)))
    return config


async def test_the_routes_are_served_on_the_public_listener(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    async with in_process_daemon(configure(tmp_path, simulator.url)) as daemon:
        registry = daemon.instances
        assert registry is not None
        assert daemon.http.public_url == daemon.url  # 127.0.0.1:PORT, as bound
        assert registry.public_url == daemon.url
        grant = registry.grant(pool="linux-x64", runner_name="r1", jitconfig=encoded(), lifetime=60)
        assert grant.metadata_url == f"{daemon.url}/api/v1/metadata"
        bearer = {"Authorization": f"Bearer {grant.token}"}
        async with httpx.AsyncClient() as http:
            refused = await http.get(f"{grant.metadata_url}/credentials/runner")
            assert refused.status_code == 401
            runner = await http.get(f"{grant.metadata_url}/credentials/runner", headers=bearer)
            assert runner.status_code == 200
            status = await http.post(
                f"{grant.callback_url}/status", headers=bearer, json={"status": "failed"}
            )
            assert status.status_code == 200
            # The control API is still not served here.
            assert (await http.get(f"{daemon.url}/api/v1/status")).status_code == 404
            metrics = (await http.get(f"{daemon.url}/metrics")).text
        report = registry.report("r1")
        assert report is not None
        assert report.failed
        assert (
            'runnerscale_instance_requests_total{outcome="unauthorized",route="credentials"} 1.0'
            in metrics
        )
        assert 'runnerscale_instance_requests_total{outcome="ok",route="status"} 1.0' in metrics


async def test_port_0_and_public_url(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = load_config(configure(tmp_path, simulator.url), env={**ENV, "HOME": str(tmp_path)})
    daemon = Daemon.build(config, port=0, controller_id="rs-test")
    try:
        port = daemon.http.public.port
        assert port != 0
        assert daemon.http.public_url == f"http://127.0.0.1:{port}"
        assert daemon.instances is not None
        assert daemon.instances.public_url == daemon.url
    finally:
        daemon.http.close()
        daemon.store.close()
    public = configure(tmp_path / "b", simulator.url, "public_url: http://10.0.0.5:8787")
    config = load_config(public, env={**ENV, "HOME": str(tmp_path / "b")})
    daemon = Daemon.build(config, port=0, controller_id="rs-test")
    try:
        assert daemon.http.public_url == "http://10.0.0.5:8787"
        assert daemon.instances is not None
        assert daemon.instances.public_url == "http://10.0.0.5:8787"
    finally:
        daemon.http.close()
        daemon.store.close()


async def test_a_backends_context_gets_the_pools_target_and_downloads(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = configure(tmp_path, simulator.url, target="org: acme\n    runner_group: ci")
    config = load_config(path, env={**ENV, "HOME": str(tmp_path)})
    daemon = Daemon.build(config, port=0, controller_id="rs-test")
    try:
        assert daemon.instances is not None
        base = BackendContext(pool="linux-x64", controller_id="rs-test", state_dir=tmp_path)
        context = _instance_context(base, config, config.pools[0], daemon.instances, daemon.github)
        assert context.instance_access is daemon.instances
        assert context.boot_timeout == config.pools[0].boot_timeout
        assert context.target_url == f"{simulator.url}/acme"
        assert context.runner_group == "ci"
        assert context.runner_downloads is not None
        downloads = await context.runner_downloads()
        assert any(d["os"] == "linux" for d in downloads)
    finally:
        daemon.http.close()
        daemon.store.close()


async def test_an_enterprise_takes_another_targets_downloads(simulator: SimulatorServer) -> None:
    enterprise, org = Target("enterprise", "big"), Target("org", "acme")
    assert downloads_target([enterprise, org], enterprise) == org
    assert downloads_target([enterprise, org], org) == org
    assert downloads_target([enterprise], enterprise) is None
    client = GitHubClient(simulator.url, TOKEN)
    assert await runner_downloads(client, [enterprise, org], enterprise)()
    with pytest.raises(GitHubError, match="add one of its organisations as a target"):
        await runner_downloads(client, [enterprise], enterprise)()
