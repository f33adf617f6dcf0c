"""A pool's blocks besides its backend's: the ``runnerscale.pool_blocks`` entry points, read
with ``importlib.metadata`` as production reads them (a distribution's ``*.dist-info`` on
``sys.path``). The simulation's ``simulation:`` block is one, registered by this project's
``pyproject.toml``; a distribution on the path adds another, which every pool then accepts,
``config schema`` shows after the backends' blocks (the blocks in name order), and whose
errors name the file, the line and the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from runnerscale.config import blocks, schema
from runnerscale.simulation import settings as simulation
from tests.plugins.entry_points import install, python_path
from tests.plugins.pool_block import CostCentreConfig

COST_CENTRE = {"cost_centre": "tests.plugins.pool_block:BLOCK"}
POOL = {"name": "linux", "labels": ["self-hosted"], "provider": "local", "max_runners": 2}
LOCAL = {"local": {"command": ["./run.sh"]}}
CONFIG = """\
github:
  token: ghp_PoolBlockTestToken0123456789abcdefgh
targets:
  - repo: acme/app
pools:
  - name: linux
    labels: [self-hosted]
    provider: local
    max_runners: 2
    local:
      command: [/bin/true]
    cost_centre:
      code: EU-042
"""


def test_the_simulation_block_is_registered_by_its_entry_point() -> None:
    assert blocks.installed() == {simulation.NAME: simulation.BLOCK}
    assert simulation.BLOCK.settings is simulation.SimulationConfig
    assert list(schema.PoolConfig.model_fields)[-6:] == [
        "local",
        "docker",
        "ssh",
        "ec2",
        "external",
        "simulation",
    ]
    pool = schema.PoolConfig.model_validate({**POOL, **LOCAL})
    assert simulation.pool_simulation(pool) == simulation.SimulationConfig()
    priced = schema.PoolConfig.model_validate({**POOL, **LOCAL, "simulation": {"cost_per_hour": 2}})
    assert simulation.pool_simulation(priced).cost_per_hour == 2.0


@pytest.mark.usefixtures("fresh_plugins")
def test_a_distribution_on_the_path_adds_a_pool_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(install(tmp_path, {}, COST_CENTRE)))
    model = schema._pool_model()
    assert list(model.model_fields)[-3:] == ["external", "cost_centre", "simulation"]  # by name
    properties = model.model_json_schema()["properties"]
    assert properties["cost_centre"] == {
        "anyOf": [{"$ref": "#/$defs/CostCentreConfig"}, {"type": "null"}],
        "default": None,
        "description": "Who pays for the pool's runners.",
    }
    pool = model.model_validate({**POOL, **LOCAL, "cost_centre": {"code": "EU-042"}})
    assert pool.cost_centre == CostCentreConfig(code="EU-042")
    with pytest.raises(ValidationError) as raised:
        model.model_validate({**POOL, **LOCAL, "cost_centre": {"code": "nowhere"}})
    assert raised.value.errors()[0]["loc"] == ("cost_centre", "code")


@pytest.mark.usefixtures("fresh_plugins")
def test_a_block_named_like_a_pool_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(install(tmp_path, {}, {"labels": COST_CENTRE["cost_centre"]})))
    with pytest.raises(TypeError, match=r"entry point labels in group runnerscale\.pool_blocks"):
        schema._pool_model()


@pytest.mark.slow
def test_the_command_line_sees_the_block_and_names_its_errors_lines(tmp_path: Path) -> None:
    site = install(tmp_path / "site", {}, COST_CENTRE)
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": python_path(site)}

    def runnerscale(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runnerscale", *arguments]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    shown = runnerscale("config", "schema")
    assert shown.returncode == 0, shown.stderr
    pool = json.loads(shown.stdout)["$defs"]["PoolConfig"]["properties"]
    assert list(pool)[-3:] == ["external", "cost_centre", "simulation"]

    good = tmp_path / "good.yaml"
    good.write_text(CONFIG)
    assert runnerscale("config", "validate", "-c", str(good)).returncode == 0

    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("EU-042", "nowhere"))
    checked = runnerscale("config", "validate", "-c", str(bad))
    output = checked.stdout + checked.stderr
    assert checked.returncode == 2, output
    line = CONFIG.splitlines().index("      code: EU-042") + 1
    assert f"bad.yaml:{line}" in output
    assert "pools[0].cost_centre.code" in output
