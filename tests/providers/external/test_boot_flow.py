"""The instance's side, as docs/backends/external.md's boot script does it against the real
endpoints (served over HTTP on loopback): it reports ``installing``, fetches each of the
runner's files once with its token (kept off command lines and removed from disk), reports
``idle``, after which its token opens nothing, and starts the runner with the files. A boot
that cannot fetch reports ``failed``, and the backend then lists its instance as not running."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from runnerscale.instance_access import InstanceGrant, InstanceReport
from runnerscale.instancemeta import InstanceRegistry
from runnerscale.model import InstanceSpec
from tests.instancemeta.conftest import Served, served
from tests.instancemeta.jit import encoded
from tests.providers.external.documented import install, lingering_runner, rig
from tests.providers.external.waiting import booted, reported

__all__ = ["served"]  # a fixture, imported


async def test_the_boot_fetches_each_file_once_reports_and_starts_the_runner(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    installed = install(tmp_path, lingering_runner())
    granting = Granting(served.registry)
    provider = rig(installed, granting).provider()
    jitconfig = encoded()
    instance = await provider.create(InstanceSpec("rs-lxd-1", "lxd", jitconfig))
    try:
        (folder,) = installed.instance_dirs()
        await booted(served.registry, "rs-lxd-1", folder)
        statuses = [outcome for route, outcome in served.counted if route == "status"]
        assert statuses == ["ok", "ok"]  # installing, then idle
        assert "reports installing: fetching the runner's JIT config" in caplog.text
        assert "reports idle: the runner starts" in caplog.text
        fetched = [outcome for route, outcome in served.counted if route == "credentials"]
        assert fetched == ["ok"] * 3
        # The runner's folder holds the very files of the JIT config, as GitHub encoded them.
        files = {
            f".{name}": base64.b64encode((folder / "runner" / f".{name}").read_bytes()).decode()
            for name in ("runner", "credentials", "credentials_rsaparams")
        }
        assert files == json.loads(base64.b64decode(jitconfig))
        # The token's files are gone; the token opens nothing any more.
        assert sorted(path.name for path in folder.iterdir()) == ["log", "pid", "pool", "runner"]
        (grant,) = granting.grants
        async with httpx.AsyncClient() as http:
            again = await http.get(
                f"{grant.metadata_url}/credentials/runner",
                headers={"Authorization": f"Bearer {grant.token}"},
            )
        assert again.status_code == 401
        assert grant.token not in caplog.text
        assert grant.token not in (folder / "log").read_text()
        found = await provider.get(instance.id)
        assert found is not None
        assert found.running
    finally:
        await provider.delete(instance.id)
    assert jitconfig not in caplog.text
    assert "secret-rsa-d-part" not in caplog.text


@dataclass
class Granting:
    """The registry, the grants it made kept (their tokens: what a test knocks with)."""

    registry: InstanceRegistry
    grants: list[InstanceGrant] = field(default_factory=list)

    def grant(
        self, *, pool: str, runner_name: str, jitconfig: str, lifetime: float
    ) -> InstanceGrant:
        made = self.registry.grant(
            pool=pool, runner_name=runner_name, jitconfig=jitconfig, lifetime=lifetime
        )
        self.grants.append(made)
        return made

    def revoke(self, runner_name: str) -> None:
        self.registry.revoke(runner_name)

    def report(self, runner_name: str) -> InstanceReport | None:
        return self.registry.report(runner_name)


async def test_a_boot_that_cannot_fetch_reports_failed_and_is_listed_not_running(
    served: Served, tmp_path: Path
) -> None:
    installed = install(tmp_path, lingering_runner())
    provider = rig(installed, served.registry).provider()
    # A JIT config that holds no runner files: the credentials routes answer 404.
    instance = await provider.create(InstanceSpec("rs-lxd-2", "lxd", "not-a-jit-config"))
    try:
        await reported(served.registry, "rs-lxd-2", "failed")
        found = await provider.get(instance.id)
        assert found is not None
        assert not found.running
        assert "the instance reported failure: cannot fetch .runner" in found.detail
        [listed] = await provider.list()
        assert not listed.running
        async with httpx.AsyncClient() as http:
            status = await http.get(f"{served.url}/api/v1/metadata/credentials/runner")
        assert status.status_code == 401
    finally:
        await provider.delete(instance.id)
    assert await provider.list() == []
