"""The external backend describes its instances' host as the provider is told it: the pool's
architecture, so that a pool whose labels name one (the issue's ``x64``) starts, and one whose
``arch`` contradicts its labels does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.hostlabels import HostFacts
from runnerscale.providers.external import host_facts
from tests.providers.external.support import Rig


@pytest.mark.parametrize(
    ("labels", "arch", "expected"),
    [
        ({"self-hosted", "linux", "x64", "lxd"}, None, "x64"),
        ({"self-hosted", "linux", "arm64"}, None, "arm64"),
        ({"self-hosted", "linux"}, "i386", "x86"),
    ],
)
def test_the_instances_architecture_is_the_pools(
    tmp_path: Path, labels: set[str], arch: str | None, expected: str
) -> None:
    rig = Rig(tmp_path, "working")
    provider = rig.provider(labels=frozenset(labels), arch=arch)
    assert host_facts(provider.settings, provider) == HostFacts(arch=expected)
