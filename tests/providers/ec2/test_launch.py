"""The EC2 launch plan (providers/ec2/launch.py): pure, so tested as plain functions."""

from __future__ import annotations

import pytest

from runnerscale.providers.ec2.launch import (
    Attempt,
    after_failure,
    classify,
    ordered,
    outcome,
    plan,
    summary,
)


def test_types_in_order_each_in_every_subnet_spot_first() -> None:
    attempts = plan(("spot", "on-demand"), ["m7i.large", "m6i.large"], ["subnet-a", "subnet-b"])
    assert [(a.market, a.instance_type, a.subnet) for a in attempts] == [
        ("spot", "m7i.large", "subnet-a"),
        ("spot", "m7i.large", "subnet-b"),
        ("spot", "m6i.large", "subnet-a"),
        ("spot", "m6i.large", "subnet-b"),
        ("on-demand", "m7i.large", "subnet-a"),
        ("on-demand", "m7i.large", "subnet-b"),
        ("on-demand", "m6i.large", "subnet-a"),
        ("on-demand", "m6i.large", "subnet-b"),
    ]


def test_no_subnets_means_the_templates_network() -> None:
    assert plan(("on-demand",), ["m5.large", "m6i.large"], []) == [
        Attempt("on-demand", "m5.large", None),
        Attempt("on-demand", "m6i.large", None),
    ]
    assert str(Attempt("on-demand", "m5.large", None)) == (
        "m5.large on-demand in the launch template's subnet"
    )
    assert str(Attempt("spot", "m5.large", "subnet-a")) == "m5.large spot in subnet-a"


@pytest.mark.parametrize(
    ("code", "failure", "counted"),
    [
        ("InsufficientInstanceCapacity", "capacity", "insufficient_capacity"),
        ("InsufficientCapacity", "capacity", "insufficient_capacity"),
        ("UnfulfillableCapacity", "capacity", "insufficient_capacity"),
        ("SpotMaxPriceTooLow", "capacity", "insufficient_capacity"),
        ("InsufficientFreeAddressesInSubnet", "capacity", "insufficient_capacity"),
        ("Unsupported", "capacity", "insufficient_capacity"),
        ("VcpuLimitExceeded", "quota", "quota_exceeded"),
        ("InstanceLimitExceeded", "quota", "quota_exceeded"),
        ("MaxSpotInstanceCountExceeded", "quota", "quota_exceeded"),
        ("InvalidParameterValue", "other", "failed"),
        ("UnauthorizedOperation", "other", "failed"),
        ("RequestLimitExceeded", "other", "failed"),
        ("", "other", "failed"),
    ],
)
def test_error_codes_are_classified(code: str, failure: str, counted: str) -> None:
    assert classify(code) == failure
    assert outcome(classify(code)) == counted


def test_after_a_capacity_or_quota_error_the_rest_is_tried() -> None:
    rest = plan(("spot", "on-demand"), ["m6i.large"], ["subnet-a"])
    assert after_failure(rest, "InsufficientInstanceCapacity") == rest
    assert after_failure(rest, "VcpuLimitExceeded") == rest


def test_a_spot_quota_ends_the_spot_attempts_only() -> None:
    rest = plan(("spot", "on-demand"), ["m6i.large", "m5.large"], [])
    assert after_failure(rest, "MaxSpotInstanceCountExceeded") == [
        Attempt("on-demand", "m6i.large", None),
        Attempt("on-demand", "m5.large", None),
    ]


def test_any_other_error_ends_the_plan() -> None:
    rest = plan(("spot", "on-demand"), ["m6i.large"], [])
    assert after_failure(rest, "InvalidLaunchTemplateName.NotFoundException") == []


def test_recently_short_attempts_go_last_in_their_own_order() -> None:
    attempts = plan(("spot", "on-demand"), ["m7i.large", "m6i.large"], [])
    short = {Attempt("spot", "m7i.large", None), Attempt("on-demand", "m7i.large", None)}
    assert ordered(attempts, short) == [
        Attempt("spot", "m6i.large", None),
        Attempt("on-demand", "m6i.large", None),
        Attempt("spot", "m7i.large", None),
        Attempt("on-demand", "m7i.large", None),
    ]
    assert ordered(attempts, set()) == attempts


def test_summary_names_every_attempt_and_its_code() -> None:
    tried = [
        (Attempt("spot", "m7i.large", "subnet-a"), "InsufficientInstanceCapacity"),
        (Attempt("on-demand", "m7i.large", "subnet-a"), "VcpuLimitExceeded"),
    ]
    assert summary(tried) == (
        "m7i.large spot in subnet-a: InsufficientInstanceCapacity; "
        "m7i.large on-demand in subnet-a: VcpuLimitExceeded"
    )
