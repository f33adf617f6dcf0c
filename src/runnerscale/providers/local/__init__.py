"""The local backend: every runner is a process on this host (no SDK).

The package holds all of it: the pool's ``local:`` settings (:mod:`.settings`), the provider
(:mod:`.provider`, whose docstring says why it works the way it does), and :data:`BACKEND`, the
entry registered in the ``runnerscale.providers`` entry-point group: how to build the provider
from the settings, this host's facts, and the capacity that caps a local pool.
"""

from __future__ import annotations

from runnerscale.hostlabels import HostFacts, detect_local_host
from runnerscale.protocols import Provider
from runnerscale.providers.local.provider import (
    JITCONFIG_ENV,
    JITCONFIG_PLACEHOLDER,
    KEPT_LOG_BYTES,
    KEPT_LOGS,
    LOG_NAME,
    SCRUBBED_NAMES,
    SCRUBBED_PREFIXES,
    SCRUBBED_SUBSTRINGS,
    LocalProvider,
    LocalSettings,
    default_capacity,
    scrub_environment,
)
from runnerscale.providers.local.settings import LocalConfig
from runnerscale.providers.registry import Backend, BackendContext

__all__ = [
    "BACKEND",
    "JITCONFIG_ENV",
    "JITCONFIG_PLACEHOLDER",
    "KEPT_LOGS",
    "KEPT_LOG_BYTES",
    "LOG_NAME",
    "SCRUBBED_NAMES",
    "SCRUBBED_PREFIXES",
    "SCRUBBED_SUBSTRINGS",
    "LocalConfig",
    "LocalProvider",
    "LocalSettings",
    "default_capacity",
    "scrub_environment",
]


def build(settings: LocalConfig, context: BackendContext) -> Provider:
    """The pool's provider: its runners under ``work_root/<pool>/`` (by default the state
    directory's ``runners`` folder)."""
    work_root = settings.work_root
    if work_root is None:
        work_root = context.state_dir / "runners"
    return LocalProvider(
        LocalSettings(
            command=settings.argv,
            env=dict(settings.env),
            work_root=work_root / context.pool,
            capacity=settings.effective_capacity,
            user=settings.user,
            stop_grace=settings.stop_grace,
            controller_id=context.controller_id,
            pool=context.pool,
        )
    )


def host_facts(settings: LocalConfig, provider: Provider) -> HostFacts:
    """The runners run here: this host's architecture and accelerators."""
    return detect_local_host()


def capacity(settings: LocalConfig) -> int:
    """A local pool cannot run more runners than its host's capacity allows."""
    return settings.effective_capacity


BACKEND = Backend(
    settings=LocalConfig,
    build=build,
    runs_here=True,
    description="Settings of the local backend (provider: local).",
    host_facts=host_facts,
    capacity=capacity,
    example="{command: [./run.sh]}",
    order=0,
)
