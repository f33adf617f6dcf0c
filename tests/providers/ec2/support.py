"""What the EC2 provider's tests share: providers over the test account (moto behind the fault
proxy, ``tests/moto_server.py``) and the account read without them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.provider import Ec2Provider
from runnerscale.providers.ec2.settings import Ec2Config
from runnerscale.providers.registry import BackendContext
from tests.moto_server import Ec2Setup

PREFIX = "/runnerscale/jit"


def settings(setup: Ec2Setup, **overrides: Any) -> Ec2Config:
    """The issue's ``ec2:`` block on the test account."""
    return Ec2Config.model_validate(setup.block(**overrides))


def context(
    pool: str,
    controller_id: str,
    record: Callable[[str, str], None] | None = None,
) -> BackendContext:
    if record is None:
        return BackendContext(
            pool=pool, controller_id=controller_id, state_dir=Path("/nonexistent")
        )
    return BackendContext(
        pool=pool, controller_id=controller_id, state_dir=Path("/nonexistent"), record=record
    )


def factory(
    setup: Ec2Setup, pool: str, controller_id: str, **overrides: Any
) -> functools.partial[Ec2Provider]:
    """A picklable maker of the provider (for a create run in a process of its own)."""
    return functools.partial(
        Ec2Provider, settings(setup, **overrides), context(pool, controller_id)
    )


def instance_tags(setup: Ec2Setup, instance_id: str) -> dict[str, str] | None:
    """The instance's tags as EC2 holds them; None when it is not there or terminated."""
    for entry in setup.instances():
        if entry["InstanceId"] == instance_id and entry["State"]["Name"] != "terminated":
            return {tag["Key"]: tag["Value"] for tag in entry.get("Tags", [])}
    return None


def state(setup: Ec2Setup, instance_id: str) -> str | None:
    for entry in setup.instances():
        if entry["InstanceId"] == instance_id:
            return str(entry["State"]["Name"])
    return None


def parameter_value(setup: Ec2Setup, instance_id: str) -> str | None:
    """The JIT config handed over to the instance, as its boot script reads it."""
    try:
        answer = setup.ssm.get_parameter(Name=f"{PREFIX}/{instance_id}", WithDecryption=True)
    except setup.ssm.exceptions.ParameterNotFound:
        return None
    return str(answer["Parameter"]["Value"])


def parameter_tags(setup: Ec2Setup, instance_id: str) -> dict[str, str]:
    answer = setup.ssm.list_tags_for_resource(
        ResourceType="Parameter", ResourceId=f"{PREFIX}/{instance_id}"
    )
    return {tag["Key"]: tag["Value"] for tag in answer["TagList"]}


def leftovers(setup: Ec2Setup, controller_id: str) -> list[str]:
    """Everything of one controller the account holds: instances not terminated (any pool),
    their volumes, and parameters under the prefix."""
    found = [
        f"instance {entry['InstanceId']} ({entry['State']['Name']})"
        for entry in setup.instances(**{tags.CONTROLLER: controller_id})
        if entry["State"]["Name"] != "terminated"
    ]
    paginator = setup.ssm.get_paginator("describe_parameters")
    filters = [{"Key": f"tag:{tags.CONTROLLER}", "Option": "Equals", "Values": [controller_id]}]
    for page in paginator.paginate(ParameterFilters=filters):
        found.extend(f"parameter {entry['Name']}" for entry in page["Parameters"])
    return found


def put_parameter(setup: Ec2Setup, instance_id: str, value: str, owner: dict[str, str]) -> None:
    """A parameter as the provider writes it (for orphans made behind its back)."""
    setup.ssm.put_parameter(
        Name=f"{PREFIX}/{instance_id}",
        Value=value,
        Type="SecureString",
        Tags=[{"Key": key, "Value": text} for key, text in owner.items()],
    )
