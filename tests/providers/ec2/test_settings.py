"""The ``ec2:`` block of a pool: the issue's configuration as written, defaults, prices, and
every error naming what is wrong and how to fix it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runnerscale.config.base import Advice
from runnerscale.config.source import read_yaml
from runnerscale.providers.ec2 import prices, tags
from runnerscale.providers.ec2.settings import Ec2Config, Ec2Price
from tests.providers.settings_checks import FILE_HEAD, file_validator, validation_problems

#: The pool of issue 15, verbatim.
ISSUE_POOL = (Path(__file__).parent / "issue15.yaml").read_text()
BASE: dict[str, Any] = {
    "region": "eu-west-1",
    "launch_template": "runnerscale-runner",
    "instance_types": ["m7i.large"],
}


def issue_block() -> dict[str, Any]:
    data, _ = read_yaml(ISSUE_POOL, "issue.yaml", {})
    block: dict[str, Any] = data["pools"][0]["ec2"]
    return block


def problems(block: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str]]:
    return validation_problems(Ec2Config.model_validate, block)


def test_the_issue_configuration_validates_as_written() -> None:
    ec2 = Ec2Config.model_validate(issue_block())
    assert (ec2.region, ec2.launch_template, ec2.launch_template_version) == (
        "eu-west-1",
        "runnerscale-runner",
        "$Default",
    )
    assert ec2.instance_types == ["m7i.large", "m6i.large", "m5.large"]
    assert ec2.subnets == ["subnet-aaa", "subnet-bbb"]
    assert ec2.market == "spot-then-on-demand"
    assert ec2.markets == ("spot", "on-demand")
    assert ec2.parameter_name("i-0123456789abcdef0") == "/runnerscale/jit/i-0123456789abcdef0"
    assert ec2.tags == {"team": "ci"}
    assert (ec2.endpoint_url, ec2.profile, ec2.prices) == (None, None, {})
    assert ec2.launch_template_spec == {
        "LaunchTemplateName": "runnerscale-runner",
        "Version": "$Default",
    }
    assert ec2.advice() == []  # every type has a default price on both markets


def test_defaults() -> None:
    ec2 = Ec2Config.model_validate(BASE)
    assert (ec2.subnets, ec2.market, ec2.markets) == ([], "on-demand", ("on-demand",))
    assert ec2.ssm_parameter_prefix == "/runnerscale/jit"
    assert (ec2.tags, ec2.endpoint_url, ec2.profile) == ({}, None, None)
    spot = Ec2Config.model_validate({**BASE, "market": "spot"})
    assert spot.markets == ("spot",)


def test_a_template_by_id_a_numbered_version_and_a_prefix_with_a_trailing_slash() -> None:
    ec2 = Ec2Config.model_validate(
        {
            **BASE,
            "launch_template": "lt-0abcdef1234567890",
            "launch_template_version": 3,  # YAML reads a bare number as an int
            "ssm_parameter_prefix": "/ci/runners/",
            "endpoint_url": "http://127.0.0.1:5000",
            "profile": "ci",
        }
    )
    assert ec2.launch_template_spec == {
        "LaunchTemplateId": "lt-0abcdef1234567890",
        "Version": "3",
    }
    assert ec2.parameter_name("i-1") == "/ci/runners/i-1"


def test_prices_default_and_overridden() -> None:
    assert prices.hourly_price("m5.large", "on-demand") == 0.107
    assert prices.hourly_price("m5.2xlarge", "on-demand") == 0.428  # four times large
    assert prices.hourly_price("c7g.xlarge", "spot") == 0.064
    assert prices.hourly_price("x9z.large", "on-demand") is None
    ec2 = Ec2Config.model_validate(
        {**BASE, "prices": {"m7i.large": {"spot": 0.031}, "x9z.large": {"on_demand": 1.5}}}
    )
    assert ec2.prices["m7i.large"] == Ec2Price(spot=0.031)
    assert ec2.price("m7i.large", "spot") == 0.031  # the pool's figure
    assert ec2.price("m7i.large", "on-demand") == 0.1124  # not given: the default
    assert ec2.price("x9z.large", "on-demand") == 1.5
    assert ec2.price("x9z.large", "spot") is None
    # Every family the defaults promise, on both markets, spot below on-demand.
    for family in ("m7i", "m6i", "m5", "c7i", "c6i", "t3", "m7g", "c7g"):
        for size in ("large", "xlarge", "2xlarge"):
            spot = prices.hourly_price(f"{family}.{size}", "spot")
            on_demand = prices.hourly_price(f"{family}.{size}", "on-demand")
            assert spot is not None
            assert on_demand is not None
            assert 0 < spot < on_demand


def test_an_unknown_price_and_an_unused_one_are_advised() -> None:
    ec2 = Ec2Config.model_validate(
        {
            **BASE,
            "instance_types": ["m7i.large", "x9z.large"],
            "market": "spot-then-on-demand",
            "prices": {"c5.large": {"on_demand": 0.09}},
        }
    )
    assert ec2.advice() == [
        Advice(
            "has no known spot or on-demand price for x9z.large: the pool's cost and budget "
            "count its instances as free",
            "add prices: {x9z.large: {spot: 0.1, on_demand: 0.1}} (US dollars per hour)",
            at=("instance_types", 1),
        ),
        Advice(
            "is not among instance_types: it is not used",
            "remove it, or add c5.large to instance_types",
            at=("prices", "c5.large"),
        ),
    ]


@pytest.mark.parametrize(
    ("change", "where", "message", "hint"),
    [
        ({"region": "Ireland"}, ("region",), "is not an AWS region", "eu-west-1"),
        ({"launch_template": "lt-xyz"}, ("launch_template",), "not a launch template id", "lt-"),
        ({"launch_template": "a b"}, ("launch_template",), "name or id", "runnerscale-runner"),
        (
            {"launch_template_version": "latest"},
            ("launch_template_version",),
            "is not a launch template version",
            "$Latest",
        ),
        ({"instance_types": []}, ("instance_types",), "at least 1", ""),
        (
            {"instance_types": ["m7i.large", "M5.Large"]},
            ("instance_types", 1),
            "'M5.Large' is not an instance type",
            "lower case",
        ),
        (
            {"instance_types": ["m7i.large", "m7i.large"]},
            ("instance_types", 1),
            "written twice",
            "once",
        ),
        (
            {"subnets": ["subnet-aaa", "sn-1"]},
            ("subnets", 1),
            "'sn-1' is not a subnet id",
            "describe-subnets",
        ),
        ({"subnets": ["subnet-aaa", "subnet-aaa"]}, ("subnets", 1), "written twice", "once"),
        ({"market": "cheap"}, ("market",), "", ""),
        (
            {"ssm_parameter_prefix": "runnerscale/jit"},
            ("ssm_parameter_prefix",),
            "absolute",
            "/runnerscale/jit",
        ),
        (
            {"ssm_parameter_prefix": "/"},
            ("ssm_parameter_prefix",),
            "not a parameter path",
            "letters",
        ),
        (
            {"ssm_parameter_prefix": "/a//b"},
            ("ssm_parameter_prefix",),
            "not a parameter path",
            "letters",
        ),
        ({"ssm_parameter_prefix": "/aws/jit"}, ("ssm_parameter_prefix",), "reserves", ""),
        (
            {"ssm_parameter_prefix": "/a" * 15},
            ("ssm_parameter_prefix",),
            "too deep",
            "14 levels",
        ),
        ({"tags": {"runnerscale:pool": "x"}}, ("tags", "runnerscale:pool"), "reserved", ""),
        ({"tags": {"AWS:owner": "x"}}, ("tags", "AWS:owner"), "reserved", "aws:"),
        ({"tags": {"cost centre": "x"}}, ("tags", "cost centre"), "instance metadata", "no /"),
        ({"tags": {"team/app": "x"}}, ("tags", "team/app"), "instance metadata", "no /"),
        ({"tags": {"team": "x" * 256}}, ("tags", "team"), "256 characters", "255"),
        ({"tags": {f"k{n}": "v" for n in range(45)}}, ("tags",), "has 45 tags", "keep to 44"),
        ({"endpoint_url": "127.0.0.1:5000"}, ("endpoint_url",), "http(s) URL", "http://"),
        ({"profile": "my profile"}, ("profile",), "is not a profile name", "~/.aws/config"),
        ({"prices": {"m7i.large": {}}}, ("prices", "m7i.large"), "gives no price", "on_demand"),
        ({"prices": {"m7i.large": {"spot": -1}}}, ("prices", "m7i.large", "spot"), "", ""),
        ({"prices": {"big": {"spot": 1}}}, ("prices", "big"), "not an instance type", ""),
        ({"regoin": "eu-west-1"}, ("regoin",), "", ""),
    ],
)
def test_errors_name_the_key_and_the_fix(
    change: dict[str, Any], where: tuple[Any, ...], message: str, hint: str
) -> None:
    found = problems({**BASE, **change})
    assert [item[0] for item in found] == [where]
    (_, said, fix) = found[0]
    assert message in said
    assert hint in fix


def test_the_tag_keys_are_ones_the_instance_metadata_can_show() -> None:
    pattern = re.compile(r"^[A-Za-z0-9+\-=.,_:@]{1,127}$")
    for key in (tags.CONTROLLER, tags.POOL, tags.RUNNER, tags.SSM_PREFIX, tags.INTERRUPTION):
        assert pattern.fullmatch(key)
        assert key.startswith(tags.RESERVED_PREFIXES[0])


def test_the_whole_issue_file_validates_through_the_command_line(tmp_path: Path) -> None:
    """``runnerscale config validate`` on the issue's pool in a complete file: the block is a
    pool's ``ec2:`` block, and its errors name the file's line and the fix."""
    config = FILE_HEAD + ISSUE_POOL
    validate_file = file_validator(tmp_path, "ec2", "tests.providers.ec2.settings_backend:BACKEND")
    good = validate_file(config)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ec2-x64 (ec2, max 50)" in good.stdout

    lines = config.splitlines()
    # (old, new, exit code, the key on the line, the path, what is said); an instance type
    # without a known price is a warning on its line, the file still valid.
    cases = [
        ("[subnet-aaa, subnet-bbb]", "[subnet-aaa, sn-bbb]", 2, "subnets:", r"subnets\[1\]",
         "'sn-bbb' is not a subnet id"),
        ("{team: ci}", "{team: ci, 'aws:owner': me}", 2, "tags:", r"tags\.aws:owner",
         "is reserved"),
        ("m5.large]", "x9z.large]", 0, "instance_types:", r"instance_types\[2\]",
         "no known spot or on-demand price for x9z.large"),
    ]  # fmt: skip
    for old, new, code, key, path, said in cases:
        result = validate_file(config.replace(old, new))
        output = result.stdout + result.stderr
        assert result.returncode == code, output
        line = next(n for n, text in enumerate(lines, 1) if key in text)
        assert re.search(rf"runnerscale\.yaml:{line}: pools\[0\]\.ec2\.{path}: ", output), output
        assert said in output
