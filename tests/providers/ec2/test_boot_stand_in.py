"""The stand-in of the instances' boot script: it takes the JIT config from SSM as an instance
would (and only then), deletes it, starts the runner with it in its environment, and goes down
with its instance. The launches here are made by hand, as the provider would make them."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.providers.ec2 import tags
from tests.ec2_boot import BootStandIn
from tests.moto_server import Ec2Setup

POOL = "ec2-x64"
SECRET = "eyJqaXQiOiAic3RhbmQtaW4gc2VjcmV0In0="  # stands for an encoded JIT config
#: A runner that writes what it was given (its JIT config, and any AWS variable) and waits.
REPORTER = (
    "import os, sys, time\n"
    "aws = sorted(k for k in os.environ if k.startswith('AWS'))\n"
    "open(sys.argv[1], 'w').write(os.environ['ACTIONS_RUNNER_INPUT_JITCONFIG'] + '|' + "
    "','.join(aws))\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def launch(setup: Ec2Setup, runner: str = "runner-1", **tagged: str) -> str:
    """An instance as the provider launches one: tagged with the pool, the runner and the
    prefix, its metadata showing its tags."""
    instance_tags = {tags.POOL: POOL, tags.RUNNER: runner, tags.SSM_PREFIX: "/runnerscale/jit"}
    instance_tags.update(tagged)
    answer = setup.ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        LaunchTemplate={"LaunchTemplateName": setup.launch_template_name},
        InstanceType="m7i.large",
        SubnetId=setup.subnet_ids[0],
        MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": key, "Value": value} for key, value in instance_tags.items()],
            }
        ],
    )
    instance_id: str = answer["Instances"][0]["InstanceId"]
    return instance_id


def hand_over(setup: Ec2Setup, instance_id: str, jitconfig: str = SECRET) -> None:
    setup.ssm.put_parameter(
        Name=f"/runnerscale/jit/{instance_id}",
        Value=jitconfig,
        Type="SecureString",
        Tags=[{"Key": tags.POOL, "Value": POOL}],
    )


def state(setup: Ec2Setup, instance_id: str) -> str:
    (instance,) = [i for i in setup.instances() if i["InstanceId"] == instance_id]
    name: str = instance["State"]["Name"]
    return name


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return tmp_path / "runner-saw"


@pytest.fixture
def boot(ec2_setup: Ec2Setup, report: Path) -> Iterator[BootStandIn]:
    stand_in = BootStandIn(
        ec2_setup.server,
        match={tags.POOL: POOL},
        command=(sys.executable, "-c", REPORTER, str(report), "60"),
        patience=1.0,
    )
    yield stand_in
    stand_in.stop()


def wait_for(path: Path) -> str:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.05)
    return path.read_text()


def test_the_hand_off(ec2_setup: Ec2Setup, boot: BootStandIn, report: Path) -> None:
    instance_id = launch(ec2_setup)
    assert boot.step() == []  # running, but the parameter is not there yet: it waits
    assert boot.failures == {}
    hand_over(ec2_setup, instance_id)
    assert boot.step() == [instance_id]
    assert wait_for(report) == f"{SECRET}|"  # the JIT config, and no AWS credential
    runner = boot.booted[instance_id]
    assert (runner.runner_name, runner.parameter) == ("runner-1", f"/runnerscale/jit/{instance_id}")
    assert ec2_setup.parameters() == []  # read once, then deleted
    assert boot.step() == []  # booted once
    assert not any(SECRET in text for text in boot.exposed_texts())
    assert f"{tags.RUNNER}=runner-1" in boot.exposed_texts()


def test_an_instance_terminated_from_outside_takes_its_runner(
    ec2_setup: Ec2Setup, boot: BootStandIn, report: Path
) -> None:
    instance_id = launch(ec2_setup)
    hand_over(ec2_setup, instance_id)
    boot.step()
    wait_for(report)
    runner = boot.booted[instance_id]
    assert runner.returncode is None
    boot.terminate_from_outside(instance_id)
    boot.step()
    assert runner.returncode == -9
    assert runner.ended == "instance terminated"
    assert state(ec2_setup, instance_id) == "terminated"


def test_an_interruption_notice_tags_the_instance(ec2_setup: Ec2Setup, boot: BootStandIn) -> None:
    instance_id = launch(ec2_setup)
    boot.interrupt(instance_id)
    boot.interrupt(launch(ec2_setup, "runner-2"), "rebalance")
    found = {
        i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}.get(tags.INTERRUPTION)
        for i in ec2_setup.instances()
    }
    assert found[instance_id] == "spot-interruption"
    assert sorted(str(kind) for kind in found.values()) == ["rebalance", "spot-interruption"]
    with pytest.raises(ValueError, match="no notice 'eviction'"):
        boot.interrupt(instance_id, "eviction")


def test_what_keeps_an_instance_from_booting_is_said(
    ec2_setup: Ec2Setup, boot: BootStandIn
) -> None:
    no_parameter = launch(ec2_setup)
    no_prefix = launch(ec2_setup, "runner-2", **{tags.SSM_PREFIX: ""})
    hand_over(ec2_setup, no_prefix)
    hidden_tags = ec2_setup.ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        LaunchTemplate={"LaunchTemplateName": ec2_setup.launch_template_name},
        MetadataOptions={"InstanceMetadataTags": "disabled"},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": tags.POOL, "Value": POOL}]}
        ],
    )["Instances"][0]["InstanceId"]
    other_pool = launch(ec2_setup, "runner-4", **{tags.POOL: "another"})
    boot.step()
    time.sleep(1.1)  # the patience
    assert boot.step() == []
    assert boot.failures == {
        no_parameter: f"no parameter /runnerscale/jit/{no_parameter} after 1s",
        no_prefix: "no runnerscale:ssm-prefix tag after 1s",
        hidden_tags: "its tags are not in its instance metadata (InstanceMetadataTags is not "
        "enabled): the boot script cannot read runnerscale:ssm-prefix",
    }
    assert other_pool not in boot.booted


def test_shutting_down_after_the_job(ec2_setup: Ec2Setup, report: Path) -> None:
    stand_in = BootStandIn(
        ec2_setup.server,
        command=(sys.executable, "-c", REPORTER, str(report), "0"),
        shutdown_after_job=True,
    )
    instance_id = launch(ec2_setup)
    hand_over(ec2_setup, instance_id)
    with stand_in:
        deadline = time.monotonic() + 30
        while state(ec2_setup, instance_id) != "terminated":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert stand_in.booted[instance_id].returncode == 0


async def test_the_stand_in_runner_serves_a_job(ec2_setup: Ec2Setup) -> None:
    """The default command: ``runnerscale sim-runner`` takes the handed-over JIT config to the
    simulator, runs a job and exits; a thread of passes boots it."""
    token = "ghp_ec2_boot_test_token"
    async with (
        SimulatorServer(SimulatorOptions(tokens=(token,))) as simulator,
        httpx.AsyncClient(base_url=simulator.url) as control,
    ):
        await control.post("/_sim/repos", json={"repo": "acme/app"})
        answer = await control.post(
            "/repos/acme/app/actions/runners/generate-jitconfig",
            json={"name": "runner-1", "labels": ["self-hosted", "ec2"], "runner_group_id": 1},
            headers={"Authorization": f"token {token}"},
        )
        jitconfig = answer.json()["encoded_jit_config"]
        instance_id = await asyncio.to_thread(launch, ec2_setup)
        await asyncio.to_thread(hand_over, ec2_setup, instance_id, jitconfig)
        stand_in = BootStandIn(ec2_setup.server).start(interval=0.1)
        try:
            job = (
                await control.post(
                    "/_sim/jobs", json={"repo": "acme/app", "labels": ["ec2"], "duration": 0.5}
                )
            ).json()
            async with asyncio.timeout(60):
                while True:
                    jobs: list[dict[str, Any]] = (await control.get("/_sim/jobs")).json()
                    record = next(j for j in jobs if j["id"] == job["id"])
                    if record["status"] == "completed":
                        break
                    await asyncio.sleep(0.1)
                runner = stand_in.booted[instance_id]
                while runner.returncode is None:  # it reports, then exits
                    await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(stand_in.stop)
        assert record["runner_name"] == "runner-1"
        assert (runner.returncode, runner.ended) == (0, None)
