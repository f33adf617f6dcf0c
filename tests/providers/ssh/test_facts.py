"""What ``auto`` stands for on the nodes of an SSH pool (``providers/ssh/facts.py``), from
what the nodes' script answered: the same rule for the daemon and ``hosts check``, and nodes
that disagree refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runnerscale.hostlabels import HostFacts
from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.facts import NodeTraces, node_host_facts, pool_host_facts
from runnerscale.providers.ssh.settings import SshConfig

NVIDIA = frozenset({"gpu", "nvidia", "cuda"})
ANSWER = """machine=x86_64
command=nvidia-smi
path=/opt/rocm
nvidia=GPU 0: NVIDIA A100 (UUID: GPU-1)
not a line of ours
"""


def settings(**block: Any) -> SshConfig:
    values: dict[str, Any] = {
        "user": "runner",
        "known_hosts": "/etc/runnerscale/known_hosts",
        "image": "runnerscale-runner:latest",
        "hosts": [{"address": "n1"}, {"address": "n2"}],
    }
    values.update(block)
    return SshConfig.model_validate(values, context={"base_dir": Path("/")})


def test_a_nodes_answer_is_read_into_its_traces() -> None:
    assert NodeTraces.parse(ANSWER) == NodeTraces(
        machine="x86_64",
        commands=frozenset({"nvidia-smi"}),
        paths=frozenset({"/opt/rocm"}),
        nvidia=("GPU 0: NVIDIA A100 (UUID: GPU-1)",),
    )


def test_process_mode_tells_the_nodes_own_accelerators() -> None:
    process = settings(mode="process", image=None)
    gpu = NodeTraces.parse(ANSWER)
    assert node_host_facts(process, gpu) == HostFacts("x64", NVIDIA)
    assert node_host_facts(process, NodeTraces("aarch64")) == HostFacts("arm64")
    rocm = NodeTraces("x86_64", paths=frozenset({"/dev/kfd", "/opt/rocm"}))
    assert node_host_facts(process, rocm).accelerators == {"gpu", "amd", "rocm"}


def test_docker_mode_tells_what_the_pool_passes_to_its_containers() -> None:
    gpu = NodeTraces.parse(ANSWER)
    assert node_host_facts(settings(), gpu) == HostFacts("x64")  # a GPU containers do not get
    passed = settings(container={"gpus": "all"})
    assert node_host_facts(passed, NodeTraces("x86_64")) == HostFacts("x64", NVIDIA)
    assert node_host_facts(passed, NodeTraces("x86_64"), "arm64").arch == "arm64"  # the engine's


def test_the_pools_nodes_must_agree() -> None:
    process = settings(mode="process", image=None)
    plain = NodeTraces("x86_64")
    assert pool_host_facts(process, {"n1": plain, "n2": plain}, {}) == HostFacts("x64")
    # A node that did not answer is left out.
    assert pool_host_facts(process, {"n1": plain}, {"n2": "refused"}) == HostFacts("x64")
    with pytest.raises(ProviderError, match=r"differ in architecture \(n1 is x86_64, n2 is aar"):
        pool_host_facts(process, {"n1": plain, "n2": NodeTraces("aarch64")}, {})
    with pytest.raises(ProviderError) as caught:
        pool_host_facts(process, {"n1": NodeTraces.parse(ANSWER), "n2": plain}, {})
    assert str(caught.value).startswith(
        "the nodes differ in accelerators (n1 has cuda, gpu, nvidia, n2 has none)"
    )
    assert "write the pool's labels out instead of auto" in str(caught.value)
    # In docker mode the same GPU is no label: the containers get none, on either node.
    assert pool_host_facts(settings(), {"n1": NodeTraces.parse(ANSWER), "n2": plain}, {})
    with pytest.raises(ProviderError, match=r"no node answered.*n1: refused"):
        pool_host_facts(process, {}, {"n1": "refused"})
