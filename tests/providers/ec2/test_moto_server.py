"""The tests' AWS: moto in server mode, the account the issue's pool needs, and the proxy that
makes launches fail as AWS does when capacity or quota is short (boto3 against all of it)."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runnerscale.providers.ec2.settings import Ec2Config
from tests.moto_server import Ec2Faults, Ec2Setup, Launch, MotoServer


def launch(
    client: Any, setup: Ec2Setup, instance_type: str, *, subnet: int = 0, **extra: Any
) -> str:
    """One instance from the template; its id."""
    answer = client.run_instances(
        MinCount=1,
        MaxCount=1,
        LaunchTemplate={"LaunchTemplateName": setup.launch_template_name, "Version": "$Default"},
        InstanceType=instance_type,
        SubnetId=setup.subnet_ids[subnet],
        **extra,
    )
    instance_id: str = answer["Instances"][0]["InstanceId"]
    return instance_id


def error_of(client: Any, setup: Ec2Setup, instance_type: str, **extra: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        launch(client, setup, instance_type, **extra)
    error = raised.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


SPOT: dict[str, Any] = {"InstanceMarketOptions": {"MarketType": "spot"}}


@pytest.fixture
def ec2(moto_server: MotoServer) -> Any:
    """A client that does not retry, so an injected server error is raised at once."""
    return moto_server.client("ec2", retries=1)


def test_the_account_has_what_the_issue_configuration_names(ec2_setup: Ec2Setup) -> None:
    ec2 = ec2_setup.ec2
    subnets = ec2.describe_subnets(SubnetIds=ec2_setup.subnet_ids)["Subnets"]
    assert {subnet["VpcId"] for subnet in subnets} == {ec2_setup.vpc_id}
    assert len({subnet["AvailabilityZone"] for subnet in subnets}) == 2
    (template,) = ec2.describe_launch_templates(LaunchTemplateNames=["runnerscale-runner"])[
        "LaunchTemplates"
    ]
    assert template["LaunchTemplateId"] == ec2_setup.launch_template_id
    settings = Ec2Config.model_validate(ec2_setup.block())
    assert settings.subnets == ec2_setup.subnet_ids
    assert settings.endpoint_url == ec2_setup.server.url
    instance_id = launch(ec2, ec2_setup, "m7i.large", subnet=1)
    (instance,) = ec2_setup.instances()
    assert (instance["InstanceId"], instance["ImageId"], instance["SubnetId"]) == (
        instance_id,
        ec2_setup.image_id,
        ec2_setup.subnet_ids[1],
    )
    assert ec2_setup.server.faults.launches == [
        Launch("m7i.large", ec2_setup.subnet_ids[1], "on-demand", 1, "launched")
    ]


def test_each_test_starts_from_an_empty_account(ec2_setup: Ec2Setup) -> None:
    assert ec2_setup.instances() == []
    assert ec2_setup.parameters() == []
    assert ec2_setup.server.faults.launches == []


def test_capacity_errors_for_chosen_types_and_subnets(ec2_setup: Ec2Setup, ec2: Any) -> None:
    faults = ec2_setup.server.faults
    faults.insufficient_capacity(["m7i.large"])
    faults.insufficient_capacity(["m6i.large"], subnets=[ec2_setup.subnet_ids[0]])
    assert error_of(ec2, ec2_setup, "m7i.large") == ("InsufficientInstanceCapacity", 500)
    assert error_of(ec2, ec2_setup, "m6i.large") == ("InsufficientInstanceCapacity", 500)
    launch(ec2, ec2_setup, "m6i.large", subnet=1)  # another subnet has some
    launch(ec2, ec2_setup, "m5.large")  # another type has some
    assert [(item.instance_type, item.outcome) for item in faults.launches] == [
        ("m7i.large", "InsufficientInstanceCapacity"),
        ("m6i.large", "InsufficientInstanceCapacity"),
        ("m6i.large", "launched"),
        ("m5.large", "launched"),
    ]
    assert len(ec2_setup.instances()) == 2  # nothing of the refused launches reached moto


@pytest.mark.parametrize(
    "code", ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"]
)
def test_spot_errors_leave_on_demand_alone(ec2_setup: Ec2Setup, ec2: Any, code: str) -> None:
    ec2_setup.server.faults.spot_unavailable(code)
    assert error_of(ec2, ec2_setup, "m7i.large", **SPOT)[0] == code
    launch(ec2, ec2_setup, "m7i.large")
    (instance,) = ec2_setup.instances()
    assert instance.get("InstanceLifecycle") is None  # on demand


@pytest.mark.parametrize("code", ["VcpuLimitExceeded", "InstanceLimitExceeded"])
def test_quota_errors_and_a_rule_that_runs_out(ec2_setup: Ec2Setup, ec2: Any, code: str) -> None:
    ec2_setup.server.faults.quota_exceeded(code, times=2)
    assert error_of(ec2, ec2_setup, "m5.large") == (code, 400)
    assert error_of(ec2, ec2_setup, "c7g.large", **SPOT) == (code, 400)
    launch(ec2, ec2_setup, "m5.large", **SPOT)  # the rule is used up
    (instance,) = ec2_setup.instances()
    assert instance["InstanceLifecycle"] == "spot"


def test_moto_s_own_errors_pass_through_and_are_recorded(ec2_setup: Ec2Setup, ec2: Any) -> None:
    with pytest.raises(ClientError) as raised:
        ec2.run_instances(
            MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateName": "no-such-template"}
        )
    code = raised.value.response["Error"]["Code"]
    assert ec2_setup.server.faults.launches == [Launch(None, None, "on-demand", 1, code)]


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="no fault 'Overheated'"):
        Ec2Faults().fail("Overheated")


def test_ssm_secure_strings_through_the_proxy(ec2_setup: Ec2Setup) -> None:
    ssm = ec2_setup.ssm
    ssm.put_parameter(Name="/runnerscale/jit/i-1", Value="one-job", Type="SecureString")
    assert ssm.get_parameter(Name="/runnerscale/jit/i-1")["Parameter"]["Value"] != "one-job"
    decrypted = ssm.get_parameter(Name="/runnerscale/jit/i-1", WithDecryption=True)
    assert decrypted["Parameter"]["Value"] == "one-job"
    assert ec2_setup.parameters() == ["/runnerscale/jit/i-1"]


def test_credentials_stay_out_of_this_process_environment(moto_server: MotoServer) -> None:
    moto_server.client("ec2").describe_regions()
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(os.environ)


def test_aws_environment_gives_the_standard_chain_for_one_test(
    aws_environment: dict[str, str], moto_server: MotoServer
) -> None:
    client = boto3.session.Session().client("ec2", endpoint_url=moto_server.url)
    assert client.meta.region_name == "eu-west-1"
    client.describe_regions()
    assert os.environ["AWS_ACCESS_KEY_ID"] == aws_environment["AWS_ACCESS_KEY_ID"]
