"""Alembic environment shipped inside the package, so a daemon migrates its own database.

``runnerscale.store.open_store`` runs it programmatically and hands over an open connection in
``config.attributes["connection"]`` (inside the transaction that holds the migration lock). The
``sqlalchemy.url`` fallback serves the ``alembic`` command line for developers writing a new
migration. Logging is left alone: a library does not configure the application's logging.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from runnerscale.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later migrations copy and move tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("runnerscale migrations need a connection or sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
