"""docs/backends/external.md's shell provider, as written: under 30 lines, and a provider
runnerscale can create, find, list and delete runners with."""

from __future__ import annotations

import re
from pathlib import Path

from runnerscale.model import InstanceSpec
from tests.providers.external.support import Rig

PAGE = Path(__file__).parents[3] / "docs" / "backends" / "external.md"


def documented_provider() -> str:
    """The page's bash block (its one provider)."""
    (block,) = re.findall(r"^```bash\n(.*?)^```", PAGE.read_text(), re.DOTALL | re.MULTILINE)
    return str(block)


def install(folder: Path) -> Rig:
    """The page's provider, and a BOOT that stands in for a runner, in ``folder``."""
    program = folder / "provider"
    program.write_text(documented_provider())
    program.chmod(0o755)
    boot = folder / "boot"
    boot.write_text("#!/bin/bash\nexec /usr/bin/sleep 300\n")
    boot.chmod(0o755)
    rig = Rig(folder, "provider", BOOT=str(boot))
    rig.executable = program
    return rig


def test_the_page_shows_a_provider_in_under_30_lines() -> None:
    assert len(documented_provider().splitlines()) < 30


async def test_the_documented_provider_works(tmp_path: Path) -> None:
    rig = install(tmp_path)
    provider = rig.provider()
    spec = InstanceSpec(runner_name="lxd-r1", pool="lxd", jitconfig="secret-jit")
    instance = await provider.create(spec)
    try:
        assert (instance.id, instance.running) == ("lxd-r1", True)
        assert [i.runner_name for i in await provider.list()] == ["lxd-r1"]
        found = await provider.get("lxd-r1")
        assert found is not None
        assert found.running
        assert await rig.provider(pool="other").list() == []
    finally:
        await provider.delete("lxd-r1")
    assert await provider.list() == []
    assert await provider.get("lxd-r1") is None
    await provider.delete("lxd-r1")  # gone: success
