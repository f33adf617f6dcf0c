"""The external backend: any infrastructure through a garm-compatible provider program
(garm-provider-lxd, -incus, -openstack, -k8s, or a few lines of shell).

The package holds all of it: the pool's ``external:`` settings (:mod:`.settings`), garm's
contract as runnerscale speaks it (:mod:`.contract`, pure: the environment, the bootstrap
document, the output's rules), one run of the program (:mod:`.execute`: the clean
environment, the timeout that kills its process group, the bounded output), the provider
(:mod:`.provider`, whose docstring says why it works the way it does), and :data:`BACKEND`,
the entry registered in the ``runnerscale.providers`` entry-point group. Nothing beyond the
standard library is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runnerscale.config.base import Advice
from runnerscale.hostlabels import HostFacts, normalize_arch
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.external.contract import arch_from_labels, named_arch
from runnerscale.providers.external.provider import COMMAND_OUTCOMES, ExternalProvider
from runnerscale.providers.external.settings import ExternalConfig
from runnerscale.providers.registry import Backend, BackendContext

__all__ = ["BACKEND", "ExternalConfig", "ExternalProvider", "build", "host_facts", "pool_advice"]


def _check_file(pool: str, what: str, path: str, *, executable: bool) -> None:
    if not os.path.isfile(path):
        raise ProviderError(f"pool {pool!r}: the external {what} {path} does not exist")
    if executable and not os.access(path, os.X_OK):
        raise ProviderError(
            f"pool {pool!r}: the external {what} {path} is not executable: chmod +x {path}"
        )


def build(settings: ExternalConfig, context: BackendContext) -> Provider:
    """The pool's provider, once its program is there (and its config file, when named), and
    the daemon serves the instances' metadata (their JIT configs come from there)."""
    _check_file(context.pool, "executable", settings.executable, executable=True)
    if settings.config_file is not None:
        _check_file(context.pool, "config_file", settings.config_file, executable=False)
    if context.instance_access is None:
        raise ProviderError(
            f"pool {context.pool!r}: the external backend needs the daemon: its instances "
            "fetch their JIT config from the daemon's metadata endpoints"
        )
    arch = settings.arch or arch_from_labels(context.labels)
    return ExternalProvider(settings, context, context.instance_access, arch=arch)


def host_facts(settings: ExternalConfig, provider: Provider) -> HostFacts:
    """The instances' architecture as the provider is told it (the bootstrap's ``arch``): a
    pool whose labels name an architecture (``x64``) is checked against it. Whatever the
    provider's machines carry besides is not known here: no accelerators."""
    external: ExternalProvider = provider  # type: ignore[assignment]  # what build() made
    return HostFacts(arch=normalize_arch(external.arch))


def pool_advice(settings: ExternalConfig, labels: Sequence[str]) -> list[Advice]:
    """An ``arch`` other than the one the pool's labels name: its jobs would land on runners
    of another architecture than they ask for."""
    named = named_arch(labels)
    if settings.arch is None or named is None or named == settings.arch:
        return []
    return [
        Advice(
            f"is {settings.arch}, but the pool's labels name {named}: its jobs ask for {named} "
            f"and would run on {settings.arch}",
            f"remove arch (the labels give {named}), or fix the pool's labels",
            at=("arch",),
        )
    ]


BACKEND = Backend(
    settings=ExternalConfig,
    build=build,
    description="Settings of the external backend (provider: external): each runner on an "
    "instance a garm-compatible provider program creates.",
    example="{executable: /usr/local/bin/garm-provider-lxd, config_file: "
    "/etc/runnerscale/lxd-provider.toml, image: 'ubuntu:24.04', flavor: default}",
    pool_advice=pool_advice,
    host_facts=host_facts,
    order=4,
    # Every run of the provider program, by how it ended (provider.py).
    events={"command": COMMAND_OUTCOMES},
)
