"""docs/backends/external.md's provider and boot script, as written on the page: the provider
under 30 lines, both clean under ``shellcheck``, and together a provider runnerscale creates,
finds, lists and deletes runners with, whose instances fetch their JIT files from the real
endpoints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runnerscale.model import InstanceSpec
from tests.instancemeta.conftest import Served, served
from tests.instancemeta.jit import encoded
from tests.providers.external.documented import (
    boot_script,
    documented_provider,
    install,
    lingering_runner,
    rig,
)
from tests.providers.external.waiting import booted

__all__ = ["served"]  # a fixture, imported


def test_the_page_shows_a_provider_in_under_30_lines() -> None:
    assert len(documented_provider().splitlines()) < 30


@pytest.mark.parametrize("script", [documented_provider, boot_script], ids=["provider", "boot"])
def test_the_scripts_pass_shellcheck(script: object, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run scripts/install-system-deps"
    assert callable(script)
    path = tmp_path / "script"
    path.write_text(script())
    checked = subprocess.run([shellcheck, str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_the_documented_provider_works(served: Served, tmp_path: Path) -> None:
    installed = install(tmp_path, lingering_runner())
    made = rig(installed, served.registry)
    provider = made.provider()
    spec = InstanceSpec(runner_name="lxd-r1", pool="lxd", jitconfig=encoded())
    instance = await provider.create(spec)
    try:
        assert (instance.id, instance.running) == ("lxd-r1", True)
        await booted(served.registry, "lxd-r1", installed.instance_dirs()[0])
        assert [i.runner_name for i in await provider.list()] == ["lxd-r1"]
        found = await provider.get("lxd-r1")
        assert found is not None
        assert found.running
        # Another controller's provider, and (told the pool, v0.1.1) another pool's, neither
        # see it nor remove it.
        for other in (
            made.provider(controller_id="ctl-other"),
            made.provider(pool="other", interface_version="v0.1.1"),
        ):
            assert await other.list() == []
            assert await other.get("lxd-r1") is None
            await other.delete("lxd-r1")
        assert [i.runner_name for i in await provider.list() if i.running] == ["lxd-r1"]
    finally:
        await provider.delete("lxd-r1")
    assert await provider.list() == []
    assert await provider.get("lxd-r1") is None
    assert installed.instance_dirs() == []
    await provider.delete("lxd-r1")  # gone: success
