"""The SSH backend: the hosts a team already owns, reached over SSH, as one pool.

The package holds all of it: the pool's ``ssh:`` settings (:mod:`.settings`, no SDK), a
node's address (:mod:`.address`), its pooled connection (:mod:`.connection`, the only module
importing asyncssh, an optional extra), the provider (:mod:`.provider`, whose docstring says
why it works the way it does) with its parts (:mod:`.nodes`, :mod:`.memory`,
:mod:`.placement`, :mod:`.process`, :mod:`.containers`), what ``auto`` stands for on the nodes
(:mod:`.facts`), and :data:`BACKEND`, the entry
registered in the ``runnerscale.providers`` entry-point group. This module imports the
provider only when a pool is built or its nodes are asked about, so a configuration naming
``ssh`` validates on a host without asyncssh.
"""

from __future__ import annotations

from collections.abc import Sequence

from runnerscale.config.base import Advice
from runnerscale.hostlabels import HostFacts
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.registry import Backend, BackendContext
from runnerscale.providers.ssh.facts import pool_host_facts
from runnerscale.providers.ssh.settings import SshConfig

__all__ = ["BACKEND", "SshConfig"]

_EXTRA = "pip install 'runnerscale[ssh]'"


def build(settings: SshConfig, context: BackendContext) -> Provider:
    """The pool's provider (imports asyncssh)."""
    try:
        from runnerscale.providers.ssh.provider import SshProvider  # noqa: PLC0415 - an extra
    except ImportError:
        raise ProviderError(
            f"pool {context.pool}: the ssh backend needs the asyncssh package: {_EXTRA}"
        ) from None
    return SshProvider(settings, context)


def host_facts(settings: SshConfig, provider: Provider) -> HostFacts:
    """The nodes' architecture and accelerators, asked of every node that answers (they must
    agree): see :mod:`.facts`."""
    try:
        from runnerscale.providers.ssh.provider import node_traces  # noqa: PLC0415 - an extra
    except ImportError:
        raise ProviderError(f"the ssh backend needs the asyncssh package: {_EXTRA}") from None
    return pool_host_facts(settings, *node_traces(settings))


def capacity(settings: SshConfig) -> int | None:
    """The nodes' slots, when every node gives its own (else they are learned from the nodes'
    CPU counts, which the file does not know)."""
    slots = [host.slots for host in settings.hosts]
    if any(count is None for count in slots):
        return None
    return sum(count for count in slots if count is not None)


def pool_advice(settings: SshConfig, labels: Sequence[str]) -> list[Advice]:
    """Host labels the pool has already (see :meth:`SshConfig.labels_advice`)."""
    return settings.labels_advice(labels)


BACKEND = Backend(
    settings=SshConfig,
    build=build,
    description="Settings of the SSH backend (provider: ssh): the pool's runners on hosts "
    "reached over SSH.",
    host_facts=host_facts,
    capacity=capacity,
    capacity_source="the sum of the slots of ssh.hosts",
    pool_advice=pool_advice,
    example="{user: runner, known_hosts: /etc/runnerscale/known_hosts, image: "
    "runnerscale-runner:latest, hosts: [{address: node1.example.net}]}",
    order=2,
)
