"""The schema comes from the migrations shipped in the package, on an empty database and again
(as a no-op) on every later open; a database of an earlier version is brought up to date with
its rows kept; and the hand-written migrations match ``tables.py``."""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy import inspect as inspect_db

import runnerscale.store
from runnerscale.model import JobLoss, JobState, RunnerState
from runnerscale.protocols import ObservedJob, Store
from runnerscale.store import SqlStore, StateVersionError, open_store
from runnerscale.store.migrate import SCHEMA_REVISION
from runnerscale.store.sql import engine_url
from runnerscale.store.tables import metadata

TABLES = {"jobs", "runners", "deliveries", "kv", "job_losses", "alembic_version"}


def head_revision() -> str:
    with resources.as_file(resources.files("runnerscale.store") / "migrations") as location:
        head = ScriptDirectory(str(location)).get_current_head()
    assert head is not None
    return head


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Bring the database at ``url`` to ``revision`` of the shipped migrations (as an older
    runnerscale left it, or back)."""
    parsed = engine_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    try:
        with (
            resources.as_file(resources.files("runnerscale.store") / "migrations") as location,
            engine.begin() as connection,
        ):
            config = Config()
            config.set_main_option("script_location", str(location))
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


@contextlib.contextmanager
def raw_engine(url: str) -> Iterator[Engine]:
    """An engine on the database at ``url``, beside the store (to write rows as an older
    runnerscale did, or to inspect the schema)."""
    engine = create_engine(engine_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def current_revision(store: SqlStore) -> str | None:
    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_public_names() -> None:
    assert set(runnerscale.store.__all__) == {"SqlStore", "StateVersionError", "open_store"}
    for name in runnerscale.store.__all__:
        assert getattr(runnerscale.store, name) is not None


def test_sql_store_has_every_method_of_the_store_protocol() -> None:
    members = [name for name in vars(Store) if not name.startswith("_")]
    assert "observe_job" in members
    for name in members:
        wanted = inspect.signature(getattr(Store, name))
        have = inspect.signature(getattr(SqlStore, name))
        assert list(have.parameters) == list(wanted.parameters), name
        for parameter in wanted.parameters.values():
            assert have.parameters[parameter.name].kind == parameter.kind, (name, parameter)


def test_package_ships_the_migrations() -> None:
    location = resources.files("runnerscale.store") / "migrations"
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert (location / "versions" / "0001_initial.py").is_file()
    assert (location / "versions" / "0002_job_losses.py").is_file()
    assert (location / "versions" / "0003_runner_labels.py").is_file()
    assert head_revision() == "0003"


def test_migrations_create_the_schema(sql_store: SqlStore) -> None:
    found = inspect_db(sql_store.engine)
    assert set(found.get_table_names()) >= TABLES
    assert {index["name"] for index in found.get_indexes("jobs")} == {"ix_jobs_state_completed_at"}
    assert {index["name"] for index in found.get_indexes("runners")} == {
        "ix_runners_pool_state",
        "ix_runners_state_state_since",
    }
    assert current_revision(sql_store) == head_revision()


def test_migration_matches_the_models(sql_store: SqlStore) -> None:
    with sql_store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_a_database_of_the_first_version_gains_the_job_losses_and_keeps_its_rows(
    store_url: str,
) -> None:
    migrate(store_url, "0001")
    with raw_engine(store_url) as engine:
        assert "job_losses" not in inspect_db(engine).get_table_names()
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO jobs (id, repo, labels, state, created_at, observed_at) "
                    "VALUES (7, 'acme/app', '[\"linux\"]', 'in_progress', 1.0, 2.0)"
                )
            )
    store = open_store(store_url)
    try:
        assert current_revision(store) == head_revision()
        job = store.get_job(7)
        assert job is not None
        assert (job.repo, job.labels, job.state) == ("acme/app", ("linux",), JobState.IN_PROGRESS)
        assert store.job_losses() == []
        loss = JobLoss(7, "acme/app", "linux", "runner rs-1 died mid-job", lost_at=3.0)
        assert store.record_job_loss(loss)
        assert store.job_losses() == [loss]
    finally:
        store.close()


def test_the_job_losses_migration_goes_back_down(store_url: str) -> None:
    open_store(store_url).close()
    migrate(store_url, "0001", down=True)
    with raw_engine(store_url) as engine:
        assert "job_losses" not in inspect_db(engine).get_table_names()
    store = open_store(store_url)  # and up again
    try:
        store.observe_job(
            ObservedJob(id=1, repo="acme/app", labels=(), state=JobState.QUEUED, created_at=1.0),
            now=1.0,
        )
        assert store.record_job_loss(JobLoss(1, "acme/app", "linux", "why", lost_at=2.0))
    finally:
        store.close()


def test_runners_of_the_second_version_gain_empty_labels_and_keep_their_rows(
    store_url: str,
) -> None:
    migrate(store_url, "0002")
    with raw_engine(store_url) as engine, engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runners (name, pool, target, state, created_at, state_since, "
                "attempts) VALUES ('rs-1', 'linux', 'repo:acme/app', 'busy', 1.0, 2.0, 1)"
            )
        )
    store = open_store(store_url)
    try:
        runner = store.get_runner("rs-1")
        assert runner is not None
        assert (runner.pool, runner.state, runner.labels) == ("linux", RunnerState.BUSY, ())
        assert store.transition("rs-1", RunnerState.BUSY, RunnerState.BUSY, labels=("deploy",))
        assert store.get_runner("rs-1") == replace(runner, labels=("deploy",))
    finally:
        store.close()


def test_the_runner_labels_migration_goes_back_down(store_url: str) -> None:
    open_store(store_url).close()
    migrate(store_url, "0002", down=True)
    with raw_engine(store_url) as engine:
        columns = {column["name"] for column in inspect_db(engine).get_columns("runners")}
        assert "labels" not in columns
        assert "idle_since" in columns
    open_store(store_url).close()  # and up again


def test_reopening_is_idempotent(make_store: Callable[[], SqlStore]) -> None:
    first = make_store()
    first.set_value("etag", "W/1")
    first.close()
    for _ in range(2):
        again = make_store()
        assert current_revision(again) == head_revision()
        assert again.get_value("etag") == "W/1"
        with again.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(head_revision(),)]
        again.close()


def test_open_store_creates_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.is_file()
    finally:
        store.close()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


def test_in_memory_sqlite_works_for_quick_tests() -> None:
    store = open_store("sqlite://")
    try:
        store.set_value("k", "v")
        assert store.get_value("k") == "v"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("configured", "driver"),
    [
        ("postgresql://u@db/runnerscale", "postgresql+psycopg"),
        ("postgres://u@db/runnerscale", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/runnerscale", "postgresql+psycopg"),
        ("sqlite:///var/lib/runnerscale/state.db", "sqlite"),
    ],
)
def test_engine_url_picks_the_psycopg3_driver(configured: str, driver: str) -> None:
    assert engine_url(configured).drivername == driver


def test_no_column_can_hold_a_secret() -> None:
    columns = {column.name for table in metadata.tables.values() for column in table.columns}
    assert not any(word in name for name in columns for word in ("jit", "secret", "token"))


def test_a_state_of_a_newer_runnerscale_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """What a rollback without restoring the backup meets: a clear refusal, not a crash, and
    the newer schema kept for the newer version."""
    url = f"sqlite:///{tmp_path}/state.db"
    open_store(url).engine.dispose()
    engine = create_engine(engine_url(url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StateVersionError) as refused:
        open_store(url)
    message = str(refused.value)
    assert "written by a newer runnerscale" in message
    assert (
        f"revision 0099, which this version does not know (it knows up to {head_revision()})"
        in message
    )
    assert "restore the state saved before the upgrade (docs/deploy.md#rolling-back)" in message
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0099"
        )
    engine.dispose()


def test_the_schema_revision_constant_is_alembics_head() -> None:
    """Opening compares the stored revision with the constant, not with Alembic's scripts: a
    new migration must move it too."""
    assert head_revision() == SCHEMA_REVISION


def schema(engine: Engine) -> dict[str, Any]:
    """Everything the database says about its tables (columns, keys, indexes, defaults)."""
    found = inspect_db(engine)
    described: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        described[table] = {
            "columns": {
                column["name"]: (
                    repr(column["type"]),
                    column["nullable"],
                    column.get("default"),
                    column.get("autoincrement"),
                )
                for column in found.get_columns(table)
            },
            "primary key": found.get_pk_constraint(table),
            "indexes": sorted(
                (index["name"] or "", tuple(index["column_names"]), bool(index["unique"]))
                for index in found.get_indexes(table)
            ),
            "unique": sorted(repr(unique) for unique in found.get_unique_constraints(table)),
            "foreign keys": sorted(repr(key) for key in found.get_foreign_keys(table)),
            "checks": sorted(repr(check) for check in found.get_check_constraints(table)),
        }
    return described


def test_a_fresh_state_gets_the_schema_the_migrations_make(store_url: str) -> None:
    """A fresh state is created from ``tables.py`` and stamped, without Alembic; that must be
    the very schema the migrations build, on each backend."""
    open_store(store_url).close()
    with raw_engine(store_url) as engine:
        created = schema(engine)
        with engine.begin() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == SCHEMA_REVISION
            )
        metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
    migrate(store_url, "head")
    with raw_engine(store_url) as engine:
        migrated = schema(engine)
    assert set(created) == TABLES
    assert created == migrated


def test_an_up_to_date_state_opens_without_alembic(tmp_path: Path) -> None:
    """Alembic is a quarter of the daemon's start-up: a fresh state and a current one are
    opened without importing it (an older one still migrates: the tests above)."""
    url = f"sqlite:///{tmp_path}/state.db"
    program = (
        "import sys\n"
        "from runnerscale.store import open_store\n"
        f"open_store({url!r}).close()\n"
        f"open_store({url!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', "
        "'sqlalchemy.dialects.postgresql'))))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.strip() == "[]"
