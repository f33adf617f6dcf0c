"""What an EC2 instance is to runnerscale: its tags at launch, and the
:class:`~runnerscale.model.Instance` a ``DescribeInstances`` entry stands for (pure: no AWS
call).

Why it reads the way it does:

*Running is AWS's state*: ``pending`` and ``running`` are a runner's instance that is up or
coming up; ``stopping``, ``stopped`` and ``shutting-down`` one that ended (listed, not
running, until it is deleted); ``terminated`` is gone (never listed).

*Incomplete is the hand-off's tag*: an instance is launched with ``runnerscale:handoff``
``pending``, and tagged ``written`` just before its parameter is written (not after: the boot
script deletes the parameter once read, so a parameter's absence cannot tell "never written"
from "taken"). Still ``pending`` with no parameter (and no create of this provider in flight
for it) is what a create interrupted between the launch and the tag left: its boot script
waits for a parameter that never comes, so it never runs a runner. ``pending`` with a
parameter (a daemon that wrote the parameter first, interrupted before the tag) boots its
runner, so it is a runner's instance (the provider finishes the tag,
:meth:`Ec2Provider.list`).

*Draining is the boot script's tag*: on a spot interruption notice or a rebalance
recommendation the boot script tags its own instance ``runnerscale:interruption``; such an
instance takes no new job.

*The price is the instance's own*: its type and market (``InstanceLifecycle`` is ``spot`` for
a spot instance), while it runs; a stopped instance costs no compute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from runnerscale.model import Instance
from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.prices import Market

__all__ = [
    "DRAINING",
    "ID_PATTERN",
    "LISTED_STATES",
    "RUNNING_STATES",
    "describe",
    "labels_of",
    "tag_list",
]

#: An instance id as EC2 makes them (anything else names no instance).
ID_PATTERN = re.compile(r"i-[0-9a-f]{8,17}")
#: The states an instance of a runner is in, up or coming up.
RUNNING_STATES = frozenset({"pending", "running"})
#: The states ``list`` reports (terminated instances are gone).
LISTED_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
#: Why an instance with the boot script's interruption tag takes no new job.
DRAINING = {
    "spot-interruption": "spot interruption notice",
    "rebalance": "spot rebalance recommendation",
}
PENDING = "pending"
WRITTEN = "written"


def tag_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as EC2 and SSM take them."""
    return [{"Key": key, "Value": value} for key, value in values.items()]


def labels_of(entry: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a ``DescribeInstances`` entry, as a mapping."""
    return {str(tag["Key"]): str(tag["Value"]) for tag in entry.get("Tags", [])}


def describe(
    entry: Mapping[str, Any],
    *,
    pool: str,
    parameters: Collection[str],
    creating: Collection[str],
    price: Callable[[str, Market], float | None],
) -> Instance:
    """The instance a ``DescribeInstances`` entry stands for, knowing which instances have a
    parameter (their ids), which runners this provider is creating right now, and the pool's
    prices."""
    labels = labels_of(entry)
    instance_id = str(entry["InstanceId"])
    runner = labels.get(tags.RUNNER, instance_id)
    state = str(entry.get("State", {}).get("Name", "unknown"))
    instance_type = str(entry.get("InstanceType", "unknown"))
    market: Market = "spot" if entry.get("InstanceLifecycle") == "spot" else "on-demand"
    where = entry.get("Placement", {}).get("AvailabilityZone") or "?"
    incomplete = (
        labels.get(tags.HANDOFF) == PENDING
        and instance_id not in parameters
        and runner not in creating
    )
    running = state in RUNNING_STATES and not incomplete
    what = f"{instance_type} {market} instance {instance_id} in {where}"
    if incomplete:
        detail = (
            f"incomplete: {what} was launched but its JIT config was never written "
            "(a create was interrupted)"
        )
    else:
        detail = f"{what}: {state}"
        cause = entry.get("StateReason", {}).get("Message")
        if not running and cause:
            detail += f" ({cause})"
    notice = labels.get(tags.INTERRUPTION)
    draining = None
    if notice is not None and running:
        draining = DRAINING.get(notice, f"interruption notice ({notice})")
        detail += f"; {draining}: takes no new job"
    launched = entry.get("LaunchTime")
    return Instance(
        id=instance_id,
        runner_name=runner,
        pool=pool,
        running=running,
        created_at=launched.timestamp() if launched is not None else None,
        detail=detail,
        incomplete=incomplete,
        price_per_hour=price(instance_type, market) if state in RUNNING_STATES else None,
        draining=draining,
    )
