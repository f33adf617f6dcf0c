"""What ``auto`` stands for in an EC2 pool: the architecture and GPUs of its instance types
(pure: judged from ``DescribeInstanceTypes``' answer).

Why every type must agree: a pool's runners register with one label set, and a launch falls
back from the first type to the next when capacity is short. An ``arm64`` type behind an
``x64`` one would take ``x64`` jobs it cannot run, a type without a GPU behind one with a GPU
would take ``gpu`` jobs: such a pool is refused, naming each type's labels, rather than
labelled by its first type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runnerscale.hostlabels import HostFacts, container_host_facts
from runnerscale.protocols import ProviderError

__all__ = ["instance_type_facts", "pool_host_facts"]


def instance_type_facts(info: Mapping[str, Any]) -> HostFacts:
    """One type's architecture (x86_64 when it supports it besides i386) and whether it has
    NVIDIA GPUs, from its ``DescribeInstanceTypes`` entry."""
    architectures = list(info.get("ProcessorInfo", {}).get("SupportedArchitectures", []))
    wide = [architecture for architecture in architectures if architecture != "i386"]
    machine = (wide or architectures or [""])[0]
    gpus = any(
        str(gpu.get("Manufacturer", "")).upper() == "NVIDIA"
        for gpu in info.get("GpuInfo", {}).get("Gpus", [])
    )
    return container_host_facts(machine, gpus=gpus, devices=())


def pool_host_facts(
    pool: str, instance_types: Sequence[str], answers: Sequence[Mapping[str, Any]]
) -> HostFacts:
    """The facts every one of the pool's ``instance_types`` shares; :class:`ProviderError`
    when a type is unknown to the region or the types disagree."""
    by_type = {str(info.get("InstanceType")): instance_type_facts(info) for info in answers}
    unknown = [name for name in instance_types if name not in by_type]
    if unknown:
        raise ProviderError(
            f"pool {pool}: EC2 does not know the instance type(s) {', '.join(unknown)} in the "
            "pool's region: fix ec2.instance_types (aws ec2 describe-instance-types lists them)"
        )
    facts = {name: by_type[name] for name in instance_types}
    if len(set(facts.values())) > 1:
        described = "; ".join(f"{name}: {', '.join(fact.labels())}" for name, fact in facts.items())
        raise ProviderError(
            f"pool {pool}: its instance types differ in what the runners' labels say "
            f"({described}): a launch falls back from one to the next, so give a pool types "
            "of one architecture and the same GPUs (one pool per kind)"
        )
    return facts[instance_types[0]]
