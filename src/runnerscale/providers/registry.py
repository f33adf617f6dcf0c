"""The installed backends, found through the ``runnerscale.providers`` entry-point group.

Why a registry fed by entry points: a backend is a plug-in. The configuration, the daemon and
``config schema`` ask this module for a pool's backend by the name the pool gives
(``provider: docker``) and never name a backend themselves, so adding a backend touches no
file outside its package: its distribution declares, in ``pyproject.toml``::

    [project.entry-points."runnerscale.providers"]
    docker = "runnerscale.providers.docker:BACKEND"

and the object named there is a :class:`Backend`. The built-in ``local`` and ``docker``
backends are registered exactly the same way, by this package's own ``pyproject.toml``.

What a backend gives (docs/backends/writing-a-backend.md):

``settings``
    The pydantic model of the pool's block named after the backend (``docker:``), a
    :class:`~runnerscale.config.base.ConfigModel`. The core schema makes it the type of that
    block, so its errors name the file, the line and the path like every other error, and
    ``config schema`` includes it.
``build(settings, context) -> Provider``
    The pool's provider. May raise :class:`~runnerscale.protocols.ProviderError` (the daemon
    then refuses to start with its message). Import the backend's SDK here, not at module
    level: validating a configuration must work without it.
``host_facts(settings, provider) -> HostFacts`` (optional)
    What ``auto`` in a pool's labels stands for: the architecture and accelerators of the host
    the runners run on. Raise ``ProviderError`` when the host cannot be asked now (the pool
    waits for it). Without it, a pool of this backend cannot name ``auto`` or an architecture.
``capacity(settings) -> int | None`` (optional)
    A cap the host puts on the pool's runners (the local backend: its capacity), below which
    ``max_runners`` and ``min_idle`` are held.
``pool_advice(settings, labels) -> list[Advice]`` (optional)
    What of the block works but should change given the rest of its pool (its configured
    ``labels``, which the block's own ``advice()`` cannot see): ``config validate`` prints it
    as a warning, at a path below the block (the ssh backend: a host label the pool already
    has).
``events`` (optional)
    The events the backend counts through ``context.record(event, outcome)`` (the metric
    ``runnerscale_backend_events_total``) and their outcomes, so that their series exist
    from the start; an event not declared is counted all the same.
``runs_here`` (default false)
    Its runners run on the host that runs runnerscale (the local backend): ``config
    validate`` then checks a pool's architecture label against this host.

Loading a backend's entry point imports only its package's ``__init__`` (and what that
imports): keep the SDK out of it. Nothing here imports a backend.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runnerscale import plugins
from runnerscale.instance_access import InstanceAccess
from runnerscale.protocols import Provider

if TYPE_CHECKING:
    from pydantic import BaseModel

    from runnerscale.config.base import Advice
    from runnerscale.hostlabels import HostFacts

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendContext",
    "UnknownBackendError",
    "backend",
    "installed",
]

ENTRY_POINT_GROUP = "runnerscale.providers"


def _record_nothing(event: str, outcome: str) -> None:
    """The default of :attr:`BackendContext.record`: a context built without one counts
    nothing (tests, ``config validate``)."""


@dataclass(frozen=True)
class BackendContext:
    """What every backend's factory gets besides its pool's settings."""

    #: The pool's name (a provider serves one pool; tag its resources with it).
    pool: str
    #: This daemon's id (tag resources with it, so that two daemons never touch each other's).
    controller_id: str
    #: The daemon's state directory (a backend keeping files on this host puts them below it).
    state_dir: Path
    #: The pool's labels as configured, lower-case, without ``auto`` (what it stands for is
    #: asked of the backend once built). A placing backend sets a node apart only by labels
    #: beyond these (:func:`runnerscale.model.labels_beyond`), as the scaler counts them.
    labels: frozenset[str] = frozenset()
    #: Counts one of the backend's own events by outcome, e.g. ``record("launch",
    #: "insufficient_capacity")`` (the metric ``runnerscale_backend_events_total``). Both are
    #: short fixed words: never an instance id, a name or anything secret.
    record: Callable[[str, str], None] = _record_nothing
    #: The daemon's per-instance credentials (:mod:`runnerscale.instance_access`): a backend
    #: whose instances fetch their JIT config from the daemon (the external backend) grants
    #: each one a token here. None where no daemon serves them (``config validate``, tests).
    instance_access: InstanceAccess | None = None
    #: The pool's ``boot_timeout``: how long its runner may take to come online after it is
    #: created (a grant's token need not outlive the create plus this).
    boot_timeout: float = 300.0
    #: The web URL of the GitHub target the pool's runners register at
    #: (``https://github.com/acme``, ``https://ghe.example.com/acme/app``); "" when unknown.
    target_url: str = ""
    #: The runner group the pool's runners join ("" when the default).
    runner_group: str = ""
    #: The runner application downloads GitHub offers the pool's target, as GitHub's API
    #: answers them (objects with ``os``, ``architecture``, ``download_url``, ``filename``
    #: and, where given, ``temp_download_token`` and ``sha256_checksum``), asked when
    #: awaited; None where no GitHub client is at hand. Raises
    #: :class:`~runnerscale.protocols.GitHubError` when GitHub cannot answer now.
    runner_downloads: Callable[[], Awaitable[list[dict[str, str]]]] | None = None


@dataclass(frozen=True)
class Backend:
    """One backend, as its package registers it (the object its entry point names)."""

    #: The model of the pool's block named after the backend.
    settings: type[BaseModel]
    #: Builds the pool's provider from its settings.
    build: Callable[[Any, BackendContext], Provider]
    #: One line for ``config schema``: the block's description.
    description: str = ""
    #: What ``auto`` stands for on the runners' host (None: the backend cannot tell).
    host_facts: Callable[[Any, Provider], HostFacts] | None = None
    #: A cap the host puts on the pool's runners (None: no cap but max_runners).
    capacity: Callable[[Any], int | None] | None = None
    #: Where that cap comes from, for the warning when ``max_runners`` is above it ("the sum
    #: of ssh.hosts' slots"); empty: the block's ``capacity`` setting.
    capacity_source: str = ""
    #: Advice on the block given its pool's labels as configured (paths below the block).
    pool_advice: Callable[[Any, Sequence[str]], list[Advice]] | None = None
    #: Its runners run on this host: a pool's architecture is checked against this host's.
    runs_here: bool = False
    #: An example of the block, for the hint when a pool lacks it ("{image: NAME}").
    example: str = "{}"
    #: Where it comes in listings (``config schema``, hints): lower first, then by name.
    order: int = 100
    #: The events it counts (``BackendContext.record``) and the outcomes of each, as fixed
    #: words: their series start at zero (an alert on ``increase()`` sees the first one).
    events: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class UnknownBackendError(LookupError):
    """No installed backend has that name."""

    def __init__(self, name: str, names: tuple[str, ...]) -> None:
        super().__init__(
            f"provider {name!r} is not installed; installed: {', '.join(names) or 'none'}"
        )
        self.name = name
        self.names = names


@functools.cache
def installed() -> Mapping[str, Backend]:
    """Every installed backend by name, in ``order`` then name order (``local`` and ``docker``
    built in).

    Loaded once per process: a backend installed later is seen by the next process.
    """
    return plugins.load(ENTRY_POINT_GROUP, Backend)


def backend(name: str) -> Backend:
    """The installed backend of that name; :class:`UnknownBackendError` lists the others."""
    backends = installed()
    try:
        return backends[name]
    except KeyError:
        raise UnknownBackendError(name, tuple(backends)) from None
