"""Bringing a database's schema to this version's, paying for Alembic only when it is behind.

Why not run Alembic on every open: importing it (with its DDL modules for every database) costs
about a quarter of the daemon's start-up (issue 18), and on nearly every start the schema is
already current. So the stored revision is read with one plain query and compared with
:data:`SCHEMA_REVISION`, this code's newest migration (a test keeps the two equal):

- equal: nothing to do, Alembic is not imported;
- no runnerscale table at all (a fresh state): the tables are created from
  :mod:`runnerscale.store.tables` and the revision stamped, as Alembic's ``stamp`` would (a test
  shows both give the same schema on SQLite and Postgres);
- anything else (an older schema, or one of a newer runnerscale): Alembic migrates, or refuses
  a revision it does not know (:class:`StateVersionError`).

All of it in one transaction that holds the write lock (SQLite ``BEGIN IMMEDIATE``, a Postgres
advisory lock), so two daemons starting at once neither both create the tables nor migrate
twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    select,
    text,
)
from sqlalchemy import inspect as inspect_db

from runnerscale.store.tables import metadata

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

__all__ = ["SCHEMA_REVISION", "StateVersionError", "bring_up_to_date", "migrations_dir"]

#: The newest migration in ``migrations/versions`` (a test keeps it equal to Alembic's head).
SCHEMA_REVISION: Final = "0003"
#: Serializes concurrent migrations of one Postgres database (any constant unique to us).
PG_MIGRATION_LOCK: Final = 0x72756E6E6572  # "runner"

#: Alembic's own bookkeeping table, as its ``stamp`` creates it.
_VERSIONS = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


class StateVersionError(RuntimeError):
    """The state's schema is of a newer runnerscale than this one: it must not be touched (a
    rollback restores the state saved before the upgrade)."""


def migrations_dir() -> contextlib.AbstractContextManager[Path]:
    """The migrations shipped in the package, as a folder Alembic can read."""
    return resources.as_file(resources.files("runnerscale.store") / "migrations")


@contextlib.contextmanager
def _locked(engine: Engine, write_option: str) -> Iterator[Connection]:
    """A write transaction holding the migration lock (see the module docstring)."""
    with engine.execution_options(**{write_option: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
        yield connection


def stored_revision(connection: Connection) -> str | None:
    """The revision stamped in the database; None when it has none (nothing created yet)."""
    if not inspect_db(connection).has_table(_VERSIONS.name):
        return None
    return connection.execute(select(_VERSIONS.c.version_num)).scalar()


def bring_up_to_date(engine: Engine, write_option: str) -> None:
    """Make the schema :data:`SCHEMA_REVISION`'s; ``write_option`` marks a writing
    transaction on this engine (SQLite's ``BEGIN IMMEDIATE``)."""
    with _locked(engine, write_option) as connection:
        current = stored_revision(connection)
        if current == SCHEMA_REVISION:
            return
        if current is None and not _has_any_table(connection):
            metadata.create_all(connection)
            _VERSIONS.create(connection)
            connection.execute(_VERSIONS.insert().values(version_num=SCHEMA_REVISION))
            return
        _alembic_upgrade(connection)


def _has_any_table(connection: Connection) -> bool:
    tables = set(inspect_db(connection).get_table_names())
    return bool(tables & set(metadata.tables))


def _alembic_upgrade(connection: Connection) -> None:
    """Migrate with Alembic to the newest revision (imported only here: see the docstring)."""
    from alembic import command  # noqa: PLC0415 - only when behind: see the docstring
    from alembic.config import Config  # noqa: PLC0415 - the same
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - the same

    with migrations_dir() as script_location:
        _refuse_newer(connection, ScriptDirectory(str(script_location)))
        config = Config()
        config.set_main_option("script_location", str(script_location))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _refuse_newer(connection: Connection, scripts: ScriptDirectory) -> None:
    from alembic.util import CommandError  # noqa: PLC0415 - the same

    current = stored_revision(connection)
    if current is None:
        return
    try:
        scripts.get_revision(current)
    except CommandError:
        raise StateVersionError(
            f"the state was written by a newer runnerscale: its schema is at revision "
            f"{current}, which this version does not know (it knows up to "
            f"{scripts.get_current_head()}). Run the newer runnerscale, or, to roll back, "
            "restore the state saved before the upgrade (docs/deploy.md#rolling-back)"
        ) from None
