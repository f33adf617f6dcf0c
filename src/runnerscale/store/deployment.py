"""Which deployment a state belongs to: its controller id, kept in the state itself.

Why in the state: the backends tag every instance with the controller id and adopt (or, as
orphans, delete) only the instances that carry theirs. The id must therefore be one per
deployment: the same for every daemon of it (they share the state, so they read the same id)
and different for two deployments on one Docker engine or one host (different states, so
different ids), which would otherwise adopt and remove each other's runners.

How it is chosen (:func:`choose_controller_id`, once, on the daemon's start):

- ``controller_id`` in the configuration, when given, is the id (and is written to the state,
  so the state remembers it when the key is dropped later);
- else the id the state holds;
- else, on a state that already has runner rows (written by a runnerscale from before ids were
  per deployment, which tagged everything ``runnerscale``): ``runnerscale``, so an existing
  installation keeps adopting its runners;
- else a new ``rs-<8 hex>``, written with insert-if-absent, so two daemons starting at once on
  a new database agree on the first one written.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Final

from runnerscale.store.sql import SqlStore

__all__ = ["CONTROLLER_ID_KEY", "LEGACY_CONTROLLER_ID", "choose_controller_id", "new_controller_id"]

log = logging.getLogger("runnerscale")

#: The ``kv`` row that holds the deployment's controller id.
CONTROLLER_ID_KEY: Final = "controller_id"
#: What every runnerscale tagged its runners with before ids were per deployment.
LEGACY_CONTROLLER_ID: Final = "runnerscale"


def new_controller_id() -> str:
    return f"rs-{secrets.token_hex(4)}"


def choose_controller_id(
    store: SqlStore, configured: str | None, new: Callable[[], str] = new_controller_id
) -> str:
    """The deployment's controller id (see the module docstring); written to the state."""
    stored = store.get_value(CONTROLLER_ID_KEY)
    if configured is not None:
        if stored is not None and stored != configured:
            log.warning(
                "controller_id %s from the configuration replaces %s: runners tagged %s are "
                "no longer this deployment's (they are neither adopted nor removed)",
                configured,
                stored,
                stored,
            )
        if stored != configured:
            store.set_value(CONTROLLER_ID_KEY, configured)
        return configured
    if stored is not None:
        return stored
    candidate = LEGACY_CONTROLLER_ID if store.runners() else new()
    chosen = store.add_value(CONTROLLER_ID_KEY, candidate)
    log.info("controller id %s (kept in the state: every daemon of it uses it)", chosen)
    return chosen
