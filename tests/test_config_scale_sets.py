"""Scale-set pools in the configuration file: the issue's pool as written, and what is refused
(with the line, the path and the fix)."""

from __future__ import annotations

import pytest

from runnerscale.config import Config, ConfigError, Problem, config_json_schema, parse_config
from runnerscale.scaleset_api import ScaleSetSpec

HEAD = """\
github:
  token: ghp_0123456789abcdef0123456789abcdef0123
targets:
  - org: acme
pools:
"""
#: The issue's pool, as written (its backend's block added: any backend works).
ISSUE_POOL = """\
  - name: scaleset-x64
    demand: scale_set              # default: webhooks (with polling as the safety net)
    scale_set:
      name: runnerscale-x64        # jobs use runs-on: runnerscale-x64
      runner_group: Default
      labels: [linux, x64]         # extra labels (multi-label scale sets)
    provider: local
    local: {command: [runnerscale, sim-runner], capacity: 20}
    max_runners: 20
    min_idle: 1
"""
WEBHOOK_POOL = """\
  - name: hooks
    labels: [self-hosted, linux]
    provider: local
    local: {command: [runnerscale, sim-runner], capacity: 4}
    max_runners: 4
"""


def parse(pools: str) -> Config:
    return parse_config(HEAD + pools, source="rs.yaml", env={})


def only_problem(pools: str) -> Problem:
    with pytest.raises(ConfigError) as caught:
        parse(pools)
    assert len(caught.value.problems) == 1, str(caught.value)
    return caught.value.problems[0]


def test_the_issue_pool_loads_as_written() -> None:
    config = parse(ISSUE_POOL + WEBHOOK_POOL)
    pool = config.pools[0]
    assert pool.demand == "scale_set"
    assert pool.labels == ["runnerscale-x64", "linux", "x64"]
    assert pool.scale_set_spec == ScaleSetSpec("runnerscale-x64", "Default", ("linux", "x64"))
    spec = config.pool_specs()[0]
    assert spec.assigned_jobs == 0
    assert spec.labels == frozenset({"runnerscale-x64", "linux", "x64"})
    assert config.pools[1].demand == "webhooks"
    assert config.pool_specs()[1].assigned_jobs is None


def test_a_scale_set_block_takes_defaults() -> None:
    pools = ISSUE_POOL.replace("      runner_group: Default\n", "").replace(
        "      labels: [linux, x64]         # extra labels (multi-label scale sets)\n", ""
    )
    config = parse(pools)
    assert config.pools[0].scale_set_spec == ScaleSetSpec("runnerscale-x64")
    assert config.pools[0].labels == ["runnerscale-x64"]


def test_a_scale_set_pool_gets_no_self_hosted_advice() -> None:
    config = parse(ISSUE_POOL)
    assert not [item for item in config.pools[0].advice() if "self-hosted" in item.message]


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "message", "hint"),
    [
        (
            ISSUE_POOL.splitlines(keepends=True)[1],
            "",
            7,
            "pools[0].scale_set",
            "is set, but the pool's demand is webhooks",
            "add 'demand: scale_set'",
        ),
        (
            "".join(ISSUE_POOL.splitlines(keepends=True)[2:6]),
            "",
            7,
            "pools[0].demand",
            "is scale_set, but the pool has no scale_set block",
            "add 'scale_set: {name: NAME}'",
        ),
        (
            "name: runnerscale-x64 ",
            "name: 'runner scale x64'",
            9,
            "pools[0].scale_set.name",
            "is not a valid scale set name",
            "e.g. runnerscale-x64",
        ),
        (
            "labels: [linux, x64]",
            "labels: [linux, auto]",
            11,
            "pools[0].scale_set.labels[1]",
            "is auto, which a scale set cannot have",
            "registered with GitHub as written",
        ),
        (
            "    provider: local\n",
            "    labels: [self-hosted]\n    provider: local\n",
            12,
            "pools[0].labels",
            "is set on a scale-set pool",
            "move these labels to scale_set.labels",
        ),
        (
            "demand: scale_set ",
            "demand: scalesets ",
            7,
            "pools[0].demand",
            "",
            "scale_set",
        ),
    ],
)
def test_errors_name_the_line_and_the_fix(
    old: str, new: str, line: int, path: str, message: str, hint: str
) -> None:
    assert old in ISSUE_POOL, old
    problem = only_problem(ISSUE_POOL.replace(old, new, 1))
    assert (problem.line, problem.path) == (line, path), str(problem)
    assert message in problem.message, str(problem)
    assert hint in problem.hint + problem.message, str(problem)


def test_two_pools_cannot_share_a_scale_set() -> None:
    second = ISSUE_POOL.replace("scaleset-x64", "second").replace(
        "runnerscale-x64 ", "RunnerScale-X64 "
    )
    problem = only_problem(ISSUE_POOL + second)
    assert problem.path == "pools[1].scale_set.name"
    assert problem.line == 19
    assert "already used by pools[0]" in problem.message
    assert "its own scale set name" in problem.hint


TWO_ORGS = HEAD.replace("  - org: acme\n", "  - org: acme\n  - org: Other\n")


def test_a_scale_set_lives_at_its_target_and_the_first_by_default() -> None:
    at_other = ISSUE_POOL.replace("scaleset-x64", "other").replace(
        "runner_group: Default", "runner_group: Default\n      target: 'org: other'"
    )
    config = parse_config(TWO_ORGS + ISSUE_POOL + at_other, source="rs.yaml", env={})
    first, other = config.pools
    assert config.scale_set_target(first).key == "org:acme"
    assert config.scale_set_target(other).key == "org:other"
    # The same name at two targets is two scale sets; each pool's runners register at its own.
    assert [spec.target for spec in config.pool_specs()] == ["org:acme", "org:other"]


def test_an_unknown_scale_set_target_lists_the_targets() -> None:
    pool = ISSUE_POOL.replace(
        "runner_group: Default", "runner_group: Default\n      target: org:acme2"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(TWO_ORGS + pool, source="rs.yaml", env={})
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (12, "pools[0].scale_set.target"), str(problem)
    assert "is not one of the targets (org:acme, org:other)" in problem.message
    assert "KIND:NAME" in problem.hint


def test_two_pools_at_one_target_cannot_share_a_scale_set_name() -> None:
    second = ISSUE_POOL.replace("scaleset-x64", "second").replace(
        "runner_group: Default", "runner_group: Default\n      target: ORG:acme"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(TWO_ORGS + ISSUE_POOL + second, source="rs.yaml", env={})
    (problem,) = caught.value.problems
    assert problem.path == "pools[1].scale_set.name"
    assert "already used by pools[0] at the same target" in problem.message


def test_the_schema_describes_demand_and_the_scale_set_block() -> None:
    schema = config_json_schema()
    text = str(schema)
    assert "scale_set" in text
    assert "ScaleSetConfig" in schema["$defs"]
