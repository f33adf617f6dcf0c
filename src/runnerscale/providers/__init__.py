"""Backends: where runners actually run. One package per backend, all behind one contract.

The contract is :class:`runnerscale.protocols.Provider`, garm's small one:

``create(spec) -> Instance``
    Start one runner for ``spec`` (an :class:`~runnerscale.model.InstanceSpec`, whose
    ``jitconfig`` is a one-job secret). Raise
    :class:`~runnerscale.protocols.ProviderError` when the backend cannot; the
    message names the pool and the cause, never the JIT config.
``delete(instance_id)``
    Stop and remove it. Deleting something already gone, or never known, is success: the
    controller retries deletions after crashes and must be able to repeat them blindly.
``get(instance_id) -> Instance | None`` and ``list() -> list[Instance]``
    Report what the backend holds, found by the backend's own tags (the controller id and the
    pool), not by what the controller remembers: after a restart the inventory is rebuilt from
    here, and ``list`` includes instances that stopped but were not removed yet, so the janitor
    can reap them, and what a create interrupted part-way left (``incomplete``: a folder
    without its record, a container never started), which ``delete`` removes like any other.
``close()``
    Release clients. It never stops runners: they outlive the daemon by design.

Why one package per backend, found through entry points: a backend is a plug-in. Each is a
package ``runnerscale.providers.<name>`` holding everything of it: its settings model (the
pool's ``<name>:`` block), its provider, its host facts and the capacity it puts on a pool,
gathered in one :class:`~runnerscale.providers.registry.Backend` that its distribution
declares in the ``runnerscale.providers`` entry-point group. :mod:`.registry` reads the group;
the configuration, the daemon and ``config schema`` ask it by name and never name a backend,
so a new backend (in this repository or a separate distribution) touches no other file. Each
backend's SDK (docker, boto3, asyncssh, kubernetes) is an optional extra, imported only when
the backend builds a provider, so validating a configuration and importing ``runnerscale`` or
another backend work without it. Backends never import each other (one exception: the ``ssh``
backend's docker mode runs the Docker backend's provider on each node's engine, so that its
containers are exactly the Docker backend's), and this package's ``__init__`` imports no
backend. docs/backends/writing-a-backend.md is the guide.

Backends:

- :mod:`runnerscale.providers.local` - runner processes on this host (no SDK).
- :mod:`runnerscale.providers.docker` - runner containers on local or remote Docker engines
  (the ``docker`` extra); its runner image is ``images/runner``.
- :mod:`runnerscale.providers.ssh` - runner processes or containers on a fleet of hosts
  reached over SSH, placed by their slots and labels (the ``ssh`` extra; ``ssh`` and
  ``docker`` for docker mode).
- :mod:`runnerscale.providers.ec2` - an EC2 instance per runner from a launch template, the
  JIT config handed over through SSM, spot with on-demand fallback (the ``aws`` extra); its
  runner image is ``images/ec2``.

Shared by the backends (no SDK): :mod:`runnerscale.providers.command`, a runner command's
placeholders; :mod:`runnerscale.providers.settings`, the settings pieces (runner environment,
stop grace, the quoted ``{jitconfig}`` check); :mod:`runnerscale.providers.registry`.
"""
