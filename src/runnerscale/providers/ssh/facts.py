"""What ``auto`` stands for on the nodes of an SSH pool: their architecture and the
accelerators their runners get, judged from one shell script's answer.

Why one place for both: the daemon (the backend's ``host_facts``, when a pool's labels name
``auto``) and ``runnerscale hosts check`` (what ``auto`` expands to on each node) must tell
the same labels for the same node. Both run :data:`TRACES_SCRIPT` on the node (``key=value``
lines: ``uname -m``, the accelerators' tools, device paths and ``nvidia-smi -L``) and judge
its answer with :func:`node_host_facts`, by the rule of the backend the runners behave like:

- docker mode: the engine host's architecture and only the accelerators the pool passes to
  its containers (``container.gpus``, ``/dev/kfd`` or ``/dev/accel`` in ``container.devices``),
  as the Docker backend tells it (a GPU the containers do not get is no label);
- process mode: the node's own accelerators, as the local backend tells its host's.

A pool's runners all carry its labels, so its nodes must agree (:func:`pool_host_facts`): nodes
of different architectures or accelerators are refused, with the advice to split the pool or
write the labels out. No I/O here: the provider asks the nodes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runnerscale.hostlabels import HostFacts, Probes, container_host_facts, detect_local_host
from runnerscale.protocols import ProviderError
from runnerscale.providers.ssh.settings import SshConfig

__all__ = ["TRACES_SCRIPT", "NodeTraces", "node_host_facts", "parse_lines", "pool_host_facts"]

#: Prints a node's architecture and its accelerators' traces, one ``key=value`` per line.
TRACES_SCRIPT = r"""
printf 'machine=%s\n' "$(uname -m)"
for tool in nvidia-smi rocminfo rocm-smi; do
  command -v "$tool" >/dev/null 2>&1 && printf 'command=%s\n' "$tool"
done
for path in /dev/kfd /opt/rocm /dev/accel/accel* /opt/intel/openvino*; do
  [ -e "$path" ] && printf 'path=%s\n' "$path"
done
[ -n "${INTEL_OPENVINO_DIR:-}" ] && printf 'env=INTEL_OPENVINO_DIR\n'
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>/dev/null | sed 's/^/nvidia=/'; fi
true
"""


def parse_lines(output: str) -> list[tuple[str, str]]:
    """A script's ``key=value`` lines, in order (others are skipped)."""
    pairs = []
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


@dataclass(frozen=True)
class NodeTraces:
    """What :data:`TRACES_SCRIPT` found on a node."""

    #: ``uname -m``.
    machine: str
    #: Accelerators' tools on PATH, paths that exist, ``nvidia-smi -L``'s lines.
    commands: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    nvidia: tuple[str, ...] = ()
    openvino_env: bool = False

    @classmethod
    def parse(cls, output: str) -> NodeTraces:
        lists: dict[str, list[str]] = {}
        for key, value in parse_lines(output):
            lists.setdefault(key, []).append(value)
        return cls(
            machine=(lists.get("machine") or [""])[-1],
            commands=frozenset(lists.get("command", [])),
            paths=frozenset(lists.get("path", [])),
            nvidia=tuple(lists.get("nvidia", [])),
            openvino_env="env" in lists,
        )

    def probes(self) -> Probes:
        """The traces as :class:`~runnerscale.hostlabels.Probes`: the local backend's
        detection, answered from what the node said."""

        def found(pattern: str) -> list[str]:
            return sorted(path for path in self.paths if fnmatch.fnmatch(path, pattern))

        listed = "\n".join(self.nvidia) if self.nvidia else None
        return Probes(
            machine=lambda: self.machine,
            which=lambda name: f"/usr/bin/{name}" if name in self.commands else None,
            exists=lambda path: path in self.paths,
            glob=found,
            run=lambda argv: listed,
            environ={"INTEL_OPENVINO_DIR": "set"} if self.openvino_env else {},
        )


def node_host_facts(
    settings: SshConfig, traces: NodeTraces, engine_machine: str | None = None
) -> HostFacts:
    """What ``auto`` stands for on one node of the pool (see the module docstring).
    ``engine_machine``: the engine's own architecture, when it was asked (docker mode)."""
    if settings.mode == "docker":
        container = settings.container
        return container_host_facts(
            engine_machine or traces.machine,
            gpus=container.gpus is not None,
            devices=container.devices,
        )
    return detect_local_host(traces.probes())


def _differ(what: str, said: Sequence[str]) -> ProviderError:
    return ProviderError(
        f"the nodes differ in {what} ({', '.join(said)}), and a pool's runners all carry its "
        "labels: put the nodes of each kind in a pool of their own, or write the pool's labels "
        "out instead of auto"
    )


def pool_host_facts(
    settings: SshConfig, traces: Mapping[str, NodeTraces], failures: Mapping[str, str]
) -> HostFacts:
    """What ``auto`` stands for in the pool, from the nodes that answered (``traces``, by
    node); ``failures``: why the others did not. Raises ``ProviderError`` when none answered
    (the pool waits) or when they disagree."""
    if not traces:
        said = "; ".join(f"{node}: {why}" for node, why in failures.items())
        raise ProviderError(
            f"no node answered, and the pool's labels need the nodes' architecture (they name "
            f"'auto' or an architecture): {said}; bring a node up, or write the labels out"
        )
    facts = {node: node_host_facts(settings, found) for node, found in traces.items()}
    if len({fact.arch or traces[node].machine for node, fact in facts.items()}) > 1:
        raise _differ("architecture", [f"{node} is {traces[node].machine}" for node in traces])
    if len({fact.accelerators for fact in facts.values()}) > 1:
        raise _differ(
            "accelerators",
            [
                f"{node} has {', '.join(sorted(fact.accelerators)) or 'none'}"
                for node, fact in facts.items()
            ],
        )
    return next(iter(facts.values()))
