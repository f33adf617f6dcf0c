"""The backend registry: the ``runnerscale.providers`` entry points, read with
``importlib.metadata`` as production reads them (a distribution's ``*.dist-info`` on
``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.providers import registry
from runnerscale.providers.docker.settings import DockerConfig
from runnerscale.providers.local.settings import LocalConfig
from tests.plugins.entry_points import install
from tests.plugins.memory_backend import MemoryConfig


def test_the_built_in_backends_are_registered_by_their_entry_points() -> None:
    installed = registry.installed()
    assert list(installed)[:2] == ["local", "docker"]
    assert installed["local"].settings is LocalConfig
    assert installed["docker"].settings is DockerConfig
    assert installed["local"].capacity is not None
    assert installed["docker"].capacity is None


@pytest.mark.usefixtures("fresh_plugins")
def test_a_distribution_on_the_path_adds_a_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(
        str(install(tmp_path, {"memory": "tests.plugins.memory_backend:BACKEND"}))
    )
    assert list(registry.installed()) == ["local", "docker", "ssh", "ec2", "external", "memory"]
    assert registry.backend("memory").settings is MemoryConfig


@pytest.mark.usefixtures("fresh_plugins")
def test_an_unknown_name_lists_the_installed_backends() -> None:
    with pytest.raises(registry.UnknownBackendError) as raised:
        registry.backend("kubernetes")
    assert str(raised.value) == (
        "provider 'kubernetes' is not installed; installed: local, docker, ssh, ec2, external"
    )


@pytest.mark.usefixtures("fresh_plugins")
def test_an_entry_point_that_is_not_a_backend_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(
        str(install(tmp_path, {"broken": "tests.plugins.memory_backend:MemoryProvider"}))
    )
    with pytest.raises(TypeError, match=r"broken = tests\.plugins\.memory_backend:MemoryProvider"):
        registry.installed()
