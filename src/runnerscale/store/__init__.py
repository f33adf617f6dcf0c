"""Persistence: the controller's :class:`~runnerscale.protocols.Store` on a database.

Why a database at all: a restart (or ``kill -9``) of runnerscale must lose nothing, and the
runner lifecycle writes each state *before* the side effect that leaves it, so the store is
where a crashed daemon learns what it was in the middle of. SQLite (a file, WAL mode) is the
default and needs no server; ``postgresql://`` URLs serve several daemons or managed setups.

``open_store(url)`` creates the SQLite file's directory, brings the schema up to date (the Alembic
migrations that ship inside this package, ``store/migrations``, run only when it is behind: see
:mod:`runnerscale.store.migrate`), and returns a :class:`SqlStore`. Secrets never pass
through here: a runner's JIT config goes from GitHub to the backend and is not stored.
"""

from runnerscale.store.sql import SqlStore, StateVersionError, open_store

__all__ = ["SqlStore", "StateVersionError", "open_store"]
