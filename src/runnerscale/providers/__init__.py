"""Backends: where runners actually run. One module per backend, all behind one contract.

The contract is :class:`runnerscale.controller.protocols.Provider`, garm's small one:

``create(spec) -> Instance``
    Start one runner for ``spec`` (an :class:`~runnerscale.model.InstanceSpec`, whose
    ``jitconfig`` is a one-job secret). Raise
    :class:`~runnerscale.controller.protocols.ProviderError` when the backend cannot; the
    message names the pool and the cause, never the JIT config.
``delete(instance_id)``
    Stop and remove it. Deleting something already gone, or never known, is success: the
    controller retries deletions after crashes and must be able to repeat them blindly.
``get(instance_id) -> Instance | None`` and ``list() -> list[Instance]``
    Report what the backend holds, found by the backend's own tags (the controller id and the
    pool), not by what the controller remembers: after a restart the inventory is rebuilt from
    here, and ``list`` includes instances that stopped but were not removed yet, so the janitor
    can reap them.
``close()``
    Release clients. It never stops runners: they outlive the daemon by design.

Why one module per backend, and why the SDK is imported only inside it: each backend's SDK
(docker, boto3, asyncssh, kubernetes) is an optional extra of the package, so importing
``runnerscale`` or another backend must work without it. ``cli`` imports the module of the
backend a configuration names, and nothing else does; backends never import each other. This
package's ``__init__`` therefore imports no backend.

Backends:

- :mod:`runnerscale.providers.local` - runner processes on this host (no SDK).
- :mod:`runnerscale.providers.docker` - runner containers on local or remote Docker engines
  (the ``docker`` extra); its runner image is ``images/runner``.

Shared by the backends (no SDK): :mod:`runnerscale.providers.command`, a runner command's
placeholders.
"""
