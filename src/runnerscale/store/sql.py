"""``SqlStore``: the :class:`~runnerscale.protocols.Store` on SQLAlchemy.

Why synchronous, one short transaction per call: the lifecycle's crash-safety rule is "write the
state, then do the side effect", so a write must be durable when the call returns, and nothing
may hold a transaction open across an await. The calls are small primary-key or indexed
statements; the controller can run them in a thread when it wants to.

SQLite (the default) gets WAL (readers never block the writer), a busy timeout (a second process
waits instead of failing), foreign keys, and full fsync. SQLAlchemy, not the ``sqlite3`` module,
emits BEGIN, so every statement of a call is in its transaction; calls that write begin with
``BEGIN IMMEDIATE``, taking the write lock up front, so a read-then-write (an observation merged
into a stored job) can neither lose an update nor deadlock on a lock upgrade. Postgres gets the
same effect from ``SELECT ... FOR UPDATE`` and ``INSERT ... ON CONFLICT``.

Job observations only move forward (``JobState.can_become``): webhooks arrive duplicated and out
of order, and the API poller reports what may already be stale, so a late "queued" must never
resurrect a completed job. A stale observation still fills what the stored row did not know yet
(a start time, the runner's name) and refreshes ``observed_at``.

Runner rows are never written whole once inserted: every change is a compare-and-set
``transition`` (see :mod:`runnerscale.store.transitions`), one ``UPDATE`` whose ``WHERE`` names
the state the writer believes the row is in, so the database itself refuses a stale write (on
Postgres too, where another daemon's transaction may run at the same time).

The active jobs and the live runners are also kept in memory (:mod:`runnerscale.store.view`),
so a reconcile tick reads them without SQL. The rule that keeps that view equal to the
database: every write of this process to jobs or runners is applied to the view once its
transaction has committed (a rolled-back one changes nothing), all such writes of the process
one at a time, and each counts itself in the ``kv`` row ``view_generation`` (an increment in
the same transaction). A read the view serves first reads that number: when it is not the one
this process's own writes made it, another process (a standby's webhooks, another daemon, a
CLI command) wrote meanwhile, and the view is reread whole (a row read by key then simply
goes to SQL). It is also reread when :meth:`SqlStore.resync` is called (on taking the lead)
and every :data:`RESYNC_INTERVAL` seconds, for writers that do not count themselves (an older
version, a hand-made SQL change).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Row,
    Select,
    Text,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from runnerscale.files import make_dirs, private_file
from runnerscale.model import Job, JobLoss, JobState, Runner, RunnerState
from runnerscale.protocols import Delivery, ObservedJob, RunnerNameTaken, Taken
from runnerscale.store.migrate import StateVersionError, bring_up_to_date
from runnerscale.store.observations import first_seen, merge_observation
from runnerscale.store.tables import DeliveryRow, JobLossRow, JobRow, KeyValueRow, RunnerRow
from runnerscale.store.transitions import checked_changes, expected_states
from runnerscale.store.view import ACTIVE_JOB_STATES, LIVE_RUNNER_STATES, ActiveView

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql

__all__ = [
    "DELIVERY_TTL",
    "RESYNC_INTERVAL",
    "SqlStore",
    "StateVersionError",
    "engine_url",
    "open_store",
]

#: How long a webhook delivery id is remembered (GitHub redelivers within hours, not days).
DELIVERY_TTL: Final = 24 * 3600.0
#: How long a SQLite call waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
#: Job ids per ``IN (...)`` list (SQLite's default limit on bound parameters is far above).
_CHUNK: Final = 500
#: Rows per multi-row INSERT (SQLite caps the parameters of one statement).
_ROWS_PER_INSERT: Final = 500
#: Marks the engine facade whose transactions write (SQLite: BEGIN IMMEDIATE).
_WRITE_OPTION: Final = "runnerscale_write"
#: Seconds between two rereads of the active view whatever the writes counted (a safety net
#: for writers that do not count themselves; a reread at 10,000 runners costs about what one
#: tick without the view did, so once a minute is under 1 % of a process's time).
RESYNC_INTERVAL: Final = 60.0
#: The ``kv`` row counting the writes to jobs and runners (see the module docstring).
GENERATION_KEY: Final = "view_generation"


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a configured database URL.

    ``postgresql://`` (and ``postgres://``) mean the psycopg 3 driver, the one the ``postgres``
    extra installs; SQLAlchemy would otherwise pick psycopg2. Explicit drivers are kept.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        # pre_ping: a daemon outlives server restarts and idle-connection reapers.
        return create_engine(url, pool_pre_ping=True)
    if _is_sqlite_memory(url):
        # One connection, or every checkout would see a new, empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (see _on_begin): the sqlite3 module's legacy
        # transaction control would run SELECTs outside the transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def _private_sqlite(database: Path) -> None:
    """The database for runnerscale's user only: its folder made ``0700`` (when made here), the
    file ``0600`` before SQLite opens it (SQLite gives its ``-wal``, ``-shm`` and ``-journal``
    files the database file's mode), and those of an older, laxer database narrowed too."""
    make_dirs(database.parent)
    private_file(database)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(database.with_name(database.name + suffix), create=False)


def open_store(url: str) -> SqlStore:
    """Open (creating and migrating as needed) the database at ``url``.

    ``sqlite:///path/to/state.db`` (the parent directory is created) or ``postgresql://...``.
    Migrations run to the newest revision on every open; on an up-to-date database that is one
    version check, without Alembic (:mod:`runnerscale.store.migrate`).
    """
    parsed = engine_url(url)
    if parsed.get_backend_name() == "sqlite" and not _is_sqlite_memory(parsed):
        assert parsed.database is not None
        _private_sqlite(Path(parsed.database).expanduser())
    engine = _make_engine(parsed)
    try:
        bring_up_to_date(engine, _WRITE_OPTION)
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine)


@functools.lru_cache(maxsize=4096)
def _labels(text: str) -> tuple[str, ...]:
    """A label list as stored (JSON), decoded once per distinct text: a fleet's jobs and
    runners share a handful of label sets, and decoding each row's was a third of a tick."""
    return tuple(json.loads(text))


def _columns(table: type[JobRow | RunnerRow]) -> list[Any]:
    """Every column, ``labels`` as its stored text (``labels_text``)."""
    columns: list[Any] = [c for c in table.__table__.columns if c.name != "labels"]
    return [*columns, cast(table.__table__.c.labels, Text).label("labels_text")]


def _plain(table: type[JobRow | RunnerRow]) -> Select[Any]:
    """Every column as a plain row (no ORM entity), ``labels`` as its stored text."""
    return select(*_columns(table))


def _stored_generation(connection: Connection) -> int:
    """The writes to jobs and runners counted so far (``view_generation``; 0 before any)."""
    stored = connection.execute(
        select(KeyValueRow.value).where(KeyValueRow.key == GENERATION_KEY)
    ).scalar()
    return 0 if stored is None else int(stored)


@dataclasses.dataclass
class _Changes:
    """What one write changed of the rows the view keeps, applied once it has committed."""

    session: Session
    jobs: list[Job] = dataclasses.field(default_factory=list)
    pools: dict[int, str | None] = dataclasses.field(default_factory=dict)
    runners: list[Runner] = dataclasses.field(default_factory=list)
    gone: list[str] = dataclasses.field(default_factory=list)

    def apply(self, view: ActiveView) -> None:
        view.put_jobs(self.jobs)
        view.set_pools(self.pools)
        view.put_runners(self.runners)
        for name in self.gone:
            view.drop_runner(name)


def _to_job(row: JobRow | Row[Any], labels: tuple[str, ...] | None = None) -> Job:
    return Job(
        id=row.id,
        repo=row.repo,
        labels=tuple(row.labels) if labels is None else labels,
        state=JobState(row.state),
        created_at=row.created_at,
        run_id=row.run_id,
        name=row.name,
        started_at=row.started_at,
        completed_at=row.completed_at,
        runner_name=row.runner_name,
        conclusion=row.conclusion,
        observed_at=row.observed_at,
        pool=row.pool,
    )


def _job_values(job: ObservedJob, now: float) -> dict[str, Any]:
    """A job's row as its first observation makes it (:func:`first_seen`, as columns)."""
    stored = first_seen(job, now)
    values = {name: getattr(stored, name) for name in _JOB_FIELDS}
    values["labels"] = list(job.labels)
    values["state"] = job.state.value
    return values


#: The columns of a job's row (:class:`~runnerscale.model.Job`'s fields).
_JOB_FIELDS: Final = tuple(field.name for field in dataclasses.fields(Job))


def _to_loss(row: JobLossRow) -> JobLoss:
    return JobLoss(
        job_id=row.job_id,
        repo=row.repo,
        pool=row.pool,
        reason=row.reason,
        lost_at=row.lost_at,
        settled_at=row.settled_at,
        outcome=row.outcome,
    )


def _to_runner(row: RunnerRow | Row[Any], labels: tuple[str, ...] | None = None) -> Runner:
    return Runner(
        name=row.name,
        pool=row.pool,
        target=row.target,
        state=RunnerState(row.state),
        created_at=row.created_at,
        state_since=row.state_since,
        github_id=row.github_id,
        instance_id=row.instance_id,
        job_id=row.job_id,
        attempts=row.attempts,
        last_error=row.last_error,
        idle_since=row.idle_since,
        labels=tuple(row.labels) if labels is None else labels,
    )


def given_twice(names: Sequence[str]) -> None:
    """Refuse new runners that name one runner twice (each store's check before it writes)."""
    if len(set(names)) != len(names):
        twice = sorted(name for name, count in Counter(names).items() if count > 1)
        raise RunnerNameTaken(f"a runner named {twice[0]!r} is given twice", twice)


def _runner_values(runner: Runner) -> dict[str, Any]:
    return {
        "name": runner.name,
        "pool": runner.pool,
        "target": runner.target,
        "state": runner.state.value,
        "created_at": runner.created_at,
        "state_since": runner.state_since,
        "github_id": runner.github_id,
        "instance_id": runner.instance_id,
        "job_id": runner.job_id,
        "attempts": runner.attempts,
        "last_error": runner.last_error,
        "idle_since": runner.idle_since,
        "labels": list(runner.labels),
    }


class _Statements:
    """The statements of the hottest writes, built once (building one costs more than
    running it: webhook intake runs them for every group of deliveries)."""

    def __init__(self, insert: Callable[[type[Any]], postgresql.Insert | sqlite.Insert]) -> None:
        self.remember_deliveries = (
            insert(DeliveryRow)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(DeliveryRow.id)
        )
        self.insert_jobs = (
            insert(JobRow).on_conflict_do_nothing(index_elements=["id"]).returning(JobRow.id)
        )
        self.forget_deliveries = delete(DeliveryRow).where(
            DeliveryRow.seen_at < bindparam("before")
        )
        count = cast(cast(KeyValueRow.value, BigInteger) + 1, Text)
        self.count_write = (
            insert(KeyValueRow)
            .values(key=GENERATION_KEY, value="1")
            .on_conflict_do_update(index_elements=["key"], set_={"value": count})
            .returning(KeyValueRow.value)
        )


class SqlStore:
    """Persistent state on SQLite or Postgres; see the module docstring for the guarantees.

    Build it with :func:`open_store`, which migrates the schema first.
    """

    def __init__(self, engine: Engine, *, resync_interval: float = RESYNC_INTERVAL) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})
        self._dialect = engine.dialect.name
        # An in-memory SQLite database is one shared connection: one call at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if _is_sqlite_memory(engine.url) else contextlib.nullcontext()
        )
        self._view = ActiveView()
        #: Held from a write's first statement until the view has its change (and by a
        #: reread): the view takes this process's writes in the order they committed.
        self._view_writes = threading.Lock()
        #: The write count the view is equal to (None: unknown, reread before use).
        self._generation: int | None = None
        self._synced_at = -float("inf")
        self._resync_interval = resync_interval
        self._statements = _Statements(self._insert)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and diagnostics; the store's calls are the API)."""
        return self._engine

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._lock, Session(self._engine) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._lock, Session(self._writer) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write_through(self) -> Iterator[_Changes]:
        """A write to jobs or runners: its changes reach the view once it has committed."""
        with self._view_writes:
            with self._write() as session:
                changes = _Changes(session)
                yield changes
                generation = self._count_write(session)
            changes.apply(self._view)
            # Ours follows the count the view was at: nobody else wrote in between. (Said
            # after the view has the change: a reader never takes it for current without.)
            known = self._generation
            self._generation = generation if known is not None and generation == known + 1 else None

    def _count_write(self, session: Session) -> int:
        """Add this write to ``view_generation``; the count after it."""
        written = session.connection().execute(self._statements.count_write)
        return int(written.scalar_one())

    def _view_current(self, connection: Connection) -> bool:
        """Whether the view equals the database: no write counted but this process's since it
        was last read whole, and not due for its periodic reread."""
        if self._generation is None:
            return False
        if time.monotonic() - self._synced_at >= self._resync_interval:
            return False
        return _stored_generation(connection) == self._generation

    def _current_view(self) -> ActiveView:
        """The view, reread first when it is not current."""
        with self._read() as session:
            current = self._view_current(session.connection())
        if not current:
            self.resync()
        return self._view

    def resync(self) -> None:
        """Reread the active jobs and live runners into the view (others' writes; the daemon
        calls it on taking the lead)."""
        with self._view_writes:
            with self._read() as session:
                connection = session.connection()
                # The count first: rows read after it are at least as new as it says.
                stored = _stored_generation(connection)
                jobs = self._select_jobs(connection, ACTIVE_JOB_STATES, None)
                runners = self._select_runners(connection, None, LIVE_RUNNER_STATES)
            self._view.load(jobs, runners)
            self._generation = stored
            self._synced_at = time.monotonic()

    def _insert(self, table: type[Any]) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can say ON CONFLICT (both supported backends have it)."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - SQLite: never loaded

            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- jobs

    def observe_job(self, job: ObservedJob, now: float) -> Job:
        """Record an observation; states only move forward. Returns the stored job."""
        with self._write_through() as changes:
            stored = self._observe(changes.session, job, now)[1]
            changes.jobs.append(stored)
        return stored

    def _observe(self, session: Session, job: ObservedJob, now: float) -> tuple[Job | None, Job]:
        """Record an observation in ``session``'s transaction: the job before (None: new) and
        after."""
        inserted = (
            session.connection()
            .execute(
                self._insert(JobRow)
                .values(_job_values(job, now))
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(JobRow.id)
            )
            .first()
        )
        row = session.scalars(select(JobRow).where(JobRow.id == job.id).with_for_update()).one()
        if inserted is not None:
            return None, _to_job(row)
        before = _to_job(row)
        row.state = merge_observation(row, JobState(row.state), job, now).value
        session.flush()
        return before, _to_job(row)

    def get_job(self, job_id: int) -> Job | None:
        with self._read() as session:
            if (
                self._view_current(session.connection())
                and (job := self._view.job(job_id)) is not None
            ):
                return job
            row = session.get(JobRow, job_id)
            return None if row is None else _to_job(row)

    def jobs(
        self,
        states: Sequence[JobState] | None = None,
        *,
        completed_since: float | None = None,
        shared: bool = False,
    ) -> list[Job]:
        """Jobs in any of ``states`` (all jobs when None), oldest first; with
        ``completed_since``, only those completed at or after it (``shared``: see
        :meth:`runnerscale.protocols.Store.jobs`; rows read from SQL are new ones anyway)."""
        if states is not None and completed_since is None and ACTIVE_JOB_STATES.issuperset(states):
            return self._current_view().jobs(states, shared=shared)
        with self._read() as session:
            return self._select_jobs(session.connection(), states, completed_since)

    def _select_jobs(
        self,
        connection: Connection,
        states: Collection[JobState] | None,
        completed_since: float | None,
    ) -> list[Job]:
        # Plain rows, not ORM entities: building (and tracking) an entity per row was most of
        # a tick's time at fleet size, when a tick still read every active job here.
        query = _plain(JobRow).order_by(JobRow.created_at, JobRow.id)
        if states is not None:
            query = query.where(JobRow.state.in_(sorted(state.value for state in states)))
        if completed_since is not None:
            query = query.where(JobRow.completed_at >= completed_since)
        return [_to_job(row, _labels(row.labels_text)) for row in connection.execute(query)]

    def count_jobs(self, states: Sequence[JobState]) -> dict[JobState, int]:
        if ACTIVE_JOB_STATES.issuperset(states):
            return self._current_view().count_jobs(states)
        query = (
            select(JobRow.state, func.count())
            .where(JobRow.state.in_([state.value for state in states]))
            .group_by(JobRow.state)
        )
        with self._read() as session:
            counted = {JobState(state): n for state, n in session.connection().execute(query)}
        return {state: counted[state] for state in dict.fromkeys(states) if state in counted}

    def set_job_pool(self, job_id: int, pool: str | None) -> None:
        """Remember the pool chosen for a job. Raises KeyError for an unknown job."""
        with self._write_through() as changes:
            result = changes.session.connection().execute(
                update(JobRow).where(JobRow.id == job_id).values(pool=pool)
            )
            if result.rowcount != 1:
                raise KeyError(f"no job {job_id}")
            changes.pools[job_id] = pool

    def set_job_pools(self, pools: Mapping[int, str | None]) -> None:
        """Remember the pool chosen for each job, in one transaction (one statement per
        pool); jobs no longer stored are skipped."""
        by_pool: dict[str | None, list[int]] = {}
        for job_id, pool in pools.items():
            by_pool.setdefault(pool, []).append(job_id)
        if not by_pool:
            return
        with self._write_through() as changes:
            for pool, ids in by_pool.items():
                for chunk in range(0, len(ids), _CHUNK):
                    changes.session.connection().execute(
                        update(JobRow)
                        .where(JobRow.id.in_(ids[chunk : chunk + _CHUNK]))
                        .values(pool=pool)
                    )
            changes.pools.update(pools)

    def prune_jobs(self, completed_before: float) -> int:
        """Delete jobs completed before the given time (or, when GitHub never said when, last
        observed before it), and their losses. Returns how many jobs were deleted."""
        finished_at = func.coalesce(JobRow.completed_at, JobRow.observed_at)
        old = (JobRow.state == JobState.COMPLETED.value, finished_at < completed_before)
        with self._write() as session:
            connection = session.connection()
            connection.execute(
                delete(JobLossRow).where(JobLossRow.job_id.in_(select(JobRow.id).where(*old)))
            )
            return connection.execute(delete(JobRow).where(*old)).rowcount

    # -- jobs whose runner died mid-job

    def record_job_loss(self, loss: JobLoss) -> bool:
        """Insert the loss unless the job has one already (the first account is kept)."""
        with self._write() as session:
            added = (
                session.connection()
                .execute(
                    self._insert(JobLossRow)
                    .values(
                        job_id=loss.job_id,
                        repo=loss.repo,
                        pool=loss.pool,
                        reason=loss.reason,
                        lost_at=loss.lost_at,
                        settled_at=loss.settled_at,
                        outcome=loss.outcome,
                    )
                    .on_conflict_do_nothing(index_elements=["job_id"])
                    .returning(JobLossRow.job_id)
                )
                .first()
            )
            return added is not None

    def job_losses(self, *, settled: bool | None = None) -> list[JobLoss]:
        query = select(JobLossRow).order_by(JobLossRow.lost_at, JobLossRow.job_id)
        if settled is not None:
            column = JobLossRow.settled_at
            query = query.where(column.is_not(None) if settled else column.is_(None))
        with self._read() as session:
            return [_to_loss(row) for row in session.scalars(query)]

    def settle_job_loss(self, job_id: int, outcome: str, now: float) -> bool:
        """One ``UPDATE ... WHERE settled_at IS NULL``: the database picks the one winner."""
        with self._write() as session:
            result = session.connection().execute(
                update(JobLossRow)
                .where(JobLossRow.job_id == job_id, JobLossRow.settled_at.is_(None))
                .values(settled_at=now, outcome=outcome)
            )
            return result.rowcount == 1

    def reopen_job_loss(self, job_id: int, settled_at: float) -> bool:
        with self._write() as session:
            result = session.connection().execute(
                update(JobLossRow)
                .where(JobLossRow.job_id == job_id, JobLossRow.settled_at == settled_at)
                .values(settled_at=None, outcome=None)
            )
            return result.rowcount == 1

    # -- runners

    def add_runner(self, runner: Runner) -> None:
        """Insert a new runner; a duplicate name raises RunnerNameTaken."""
        with self._write_through() as changes:
            added = (
                changes.session.connection()
                .execute(
                    self._insert(RunnerRow)
                    .values(**_runner_values(runner))
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(RunnerRow.name)
                )
                .first()
            )
            if added is None:
                raise RunnerNameTaken(
                    f"a runner named {runner.name!r} already exists", [runner.name]
                )
            changes.runners.append(dataclasses.replace(runner, labels=tuple(runner.labels)))

    def add_runners(self, runners: Sequence[Runner]) -> None:
        """Insert new runners in one transaction (one commit, not one per runner: a
        decision to create a thousand must not stall the loop); a duplicate name raises
        RunnerNameTaken and inserts none."""
        names = [runner.name for runner in runners]
        given_twice(names)
        if not runners:
            return  # no write at all: an empty commit still syncs to disk
        with self._write_through() as changes:
            added: set[str] = set()
            for start in range(0, len(runners), _ROWS_PER_INSERT):
                chunk = runners[start : start + _ROWS_PER_INSERT]
                added.update(
                    changes.session.connection()
                    .execute(
                        self._insert(RunnerRow)
                        .values([_runner_values(runner) for runner in chunk])
                        .on_conflict_do_nothing(index_elements=["name"])
                        .returning(RunnerRow.name)
                    )
                    .scalars()
                )
            if missing := set(names) - added:
                # Raised inside the transaction: it is rolled back, nothing is inserted.
                raise RunnerNameTaken(f"a runner named {min(missing)!r} already exists", missing)
            changes.runners.extend(dataclasses.replace(r, labels=tuple(r.labels)) for r in runners)

    def get_runner(self, name: str) -> Runner | None:
        with self._read() as session:
            if (
                self._view_current(session.connection())
                and (runner := self._view.runner(name)) is not None
            ):
                return runner
            row = session.get(RunnerRow, name)
            return None if row is None else _to_runner(row)

    def runners(
        self,
        *,
        pool: str | None = None,
        states: Sequence[RunnerState] | None = None,
        shared: bool = False,
    ) -> list[Runner]:
        """Runners of ``pool`` (any when None) in ``states`` (any when None), oldest first
        (``shared``: see :meth:`runnerscale.protocols.Store.runners`; rows read from SQL are
        new ones anyway)."""
        if states is not None and LIVE_RUNNER_STATES.issuperset(states):
            return self._current_view().runners(pool, states, shared=shared)
        with self._read() as session:
            return self._select_runners(session.connection(), pool, states)

    def _select_runners(
        self, connection: Connection, pool: str | None, states: Collection[RunnerState] | None
    ) -> list[Runner]:
        # Plain rows, not ORM entities (as in :meth:`_select_jobs`).
        query = _plain(RunnerRow).order_by(RunnerRow.created_at, RunnerRow.name)
        if pool is not None:
            query = query.where(RunnerRow.pool == pool)
        if states is not None:
            query = query.where(RunnerRow.state.in_(sorted(state.value for state in states)))
        return [_to_runner(row, _labels(row.labels_text)) for row in connection.execute(query)]

    def count_runners(self, states: Sequence[RunnerState]) -> dict[tuple[str, RunnerState], int]:
        if LIVE_RUNNER_STATES.issuperset(states):
            return self._current_view().count_runners(states)
        query = (
            select(RunnerRow.pool, RunnerRow.state, func.count())
            .where(RunnerRow.state.in_([state.value for state in states]))
            .group_by(RunnerRow.pool, RunnerRow.state)
        )
        with self._read() as session:
            return {
                (pool, RunnerState(state)): count
                for pool, state, count in session.connection().execute(query)
            }

    def transition(
        self,
        name: str,
        expected: RunnerState | Collection[RunnerState],
        new: RunnerState,
        **changes: Any,
    ) -> bool:
        """Compare-and-set (``Store.transition``): one ``UPDATE ... WHERE name = ? AND state
        IN (...)`` writing the new state and ``changes`` only. False when the runner is not in
        ``expected``; KeyError for an unknown name."""
        states = expected_states(expected)
        values = checked_changes(changes)
        if "labels" in values:
            values["labels"] = list(values["labels"])
        with self._write_through() as written:
            connection = written.session.connection()
            moved = connection.execute(
                update(RunnerRow)
                .where(
                    RunnerRow.name == name,
                    RunnerRow.state.in_(sorted(state.value for state in states)),
                )
                .values(state=new.value, **values)
                .returning(*_columns(RunnerRow))
            ).first()
            # Not moved: the row as it is (the view may have missed another's write), or none.
            row = (
                moved or connection.execute(_plain(RunnerRow).where(RunnerRow.name == name)).first()
            )
            if row is None:
                written.gone.append(name)
            else:
                written.runners.append(_to_runner(row, _labels(row.labels_text)))
        if row is None:
            raise KeyError(f"no runner named {name!r}")
        return moved is not None

    def prune_runners(self, gone_before: float) -> int:
        """Delete runners that have been ``gone`` since before the given time."""
        with self._write() as session:
            result = session.connection().execute(
                delete(RunnerRow).where(
                    RunnerRow.state == RunnerState.GONE.value,
                    RunnerRow.state_since < gone_before,
                )
            )
            return result.rowcount

    # -- webhook deliveries

    def remember_delivery(self, delivery_id: str, now: float) -> bool:
        """True the first time a delivery id is seen. Forgets ids older than a day."""
        with self._write() as session:
            self._forget_deliveries(session, now)
            return self._remember(session, delivery_id, now)

    def take_deliveries(self, batch: Sequence[Delivery], now: float) -> list[Taken]:
        """Each delivery's id and the job of each new one, in one transaction (see
        :meth:`~runnerscale.protocols.Store.take_deliveries`).

        A few statements per group, not a few per delivery: the ids in one multi-row insert,
        the jobs first heard of in another (their row is what was inserted: no read back);
        only a job already stored (or twice in the group) is merged on its own."""
        with self._write_through() as changes:
            session = changes.session
            self._forget_deliveries(session, now)
            remembered = self._remember_all(session, {d.id for d in batch if d.id}, now)
            new: list[bool] = []
            for delivery in batch:
                first = not delivery.id or delivery.id in remembered
                remembered.discard(delivery.id or "")  # its repeats in the group are not
                new.append(first)
            jobs = [d.job for d, fresh in zip(batch, new, strict=True) if fresh and d.job]
            firsts = list({job.id: job for job in reversed(jobs)}.values())
            inserted = self._insert_jobs(session, firsts, now)
            taken = []
            for delivery, fresh in zip(batch, new, strict=True):
                if not fresh:
                    taken.append(Taken(False))
                elif delivery.job is None:
                    taken.append(Taken(True))
                elif (job := inserted.pop(delivery.job.id, None)) is not None:
                    taken.append(Taken(True, None, job))
                else:
                    taken.append(Taken(True, *self._observe(session, delivery.job, now)))
            changes.jobs.extend(t.after for t in taken if t.after is not None)
        return taken

    def _remember_all(self, session: Session, ids: set[str], now: float) -> set[str]:
        """Insert delivery ids; those not known before. (An executemany: its statement is
        compiled once and cached, whatever the group's size; SQLAlchemy sends it as
        multi-row inserts.)"""
        if not ids:
            return set()
        statement = self._statements.remember_deliveries
        rows = [{"id": key, "seen_at": now} for key in ids]
        return set(session.connection().scalars(statement, rows))

    def _insert_jobs(self, session: Session, jobs: list[ObservedJob], now: float) -> dict[int, Job]:
        """Insert the jobs not stored yet, in one executemany; those inserted, as stored. A
        job stored already is left for :meth:`_observe` to merge."""
        if not jobs:
            return {}
        statement = self._statements.insert_jobs
        by_id = {job.id: job for job in jobs}
        rows = [_job_values(job, now) for job in jobs]
        return {
            job_id: first_seen(by_id[job_id], now)
            for job_id in session.connection().scalars(statement, rows)
        }

    def _forget_deliveries(self, session: Session, now: float) -> None:
        session.connection().execute(
            self._statements.forget_deliveries, {"before": now - DELIVERY_TTL}
        )

    def _remember(self, session: Session, delivery_id: str, now: float) -> bool:
        row = {"id": delivery_id, "seen_at": now}
        added = session.connection().execute(self._statements.remember_deliveries, row).first()
        return added is not None

    # -- key/value facts

    def get_value(self, key: str) -> str | None:
        with self._read() as session:
            row = session.get(KeyValueRow, key)
            return None if row is None else row.value

    def set_value(self, key: str, value: str) -> None:
        with self._write() as session:
            statement = self._insert(KeyValueRow).values(key=key, value=value)
            session.connection().execute(
                statement.on_conflict_do_update(
                    index_elements=["key"], set_={"value": statement.excluded.value}
                )
            )

    def add_value(self, key: str, value: str) -> str:
        """Store ``value`` unless the key has one; returns the stored value (two daemons
        starting at once on a new database agree on the first one written)."""
        with self._write() as session:
            session.connection().execute(
                self._insert(KeyValueRow)
                .values(key=key, value=value)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            stored = session.get(KeyValueRow, key)
            assert stored is not None
            return stored.value

    def close(self) -> None:
        """Close every pooled connection (the store is unusable afterwards)."""
        self._engine.dispose()
