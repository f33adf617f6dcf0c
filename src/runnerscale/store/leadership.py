"""Which daemon of a deployment leads: one lock on the shared state, held for the leader's life.

Why a lock held by a live session and not a lease row with a deadline: a lease must be renewed
before it expires and the standby must wait out the whole deadline after a crash, so the
takeover time is the lease's length, and a leader stalled past its deadline acts beside its
successor. A lock held by the leader's process is freed by the operating system or the database
the moment the process dies (``kill -9`` closes its files and its TCP connection), so a standby
that asks every few seconds takes over within seconds, with no clock to agree on.

- **Postgres** (:class:`PostgresLeadership`): a session-level ``pg_try_advisory_lock`` on a
  connection of its own, kept for the daemon's life in autocommit (no transaction stays open).
  Each check asks ``pg_locks`` whether this session still holds the lock, so a broken
  connection is noticed at the next check: the lock went with it. The session sets short TCP
  keepalives on both ends, so Postgres frees the lock of a leader whose host vanished (no FIN,
  no RST) within about ten seconds instead of the kernel's two hours, and the leader's own
  check fails within its ``tcp_user_timeout``, before that. Such a lock is *revocable* (the
  server can drop the session of a live holder): a new leader waits until the old one must
  have noticed (:mod:`runnerscale.succession`).
- **SQLite** (:class:`FileLeadership`): an exclusive ``flock`` on ``<database>.leader`` next to
  the database, which only the holder's death or release frees. A second daemon on the same
  file stands by like a Postgres standby (the same code path), on the same host.
- An in-memory SQLite database is nobody else's: :class:`SoleLeadership` always leads.

Who leads is recorded by the leader when it takes the lock (its id and since when: the ``kv``
row ``leader`` on Postgres, the lock file's content on SQLite) and believed only while the lock
is held, so a dead leader's record is never shown as the leader. Nothing here is secret, and no
error text that could hold the database URL is logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import Connection, create_engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from runnerscale.store.sql import _is_sqlite_memory, engine_url
from runnerscale.store.tables import KeyValueRow

__all__ = [
    "LEADER_KEY",
    "FileLeadership",
    "Leader",
    "Leadership",
    "PostgresLeadership",
    "SoleLeadership",
    "open_leadership",
]

log = logging.getLogger("runnerscale.leadership")

#: The ``kv`` row where the Postgres leader says who it is.
LEADER_KEY: Final = "leader"
#: The advisory lock's two keys (the two-integer form, apart from the migrations' bigint one):
#: "runn" and 1.
_PG_LOCK: Final = (0x72756E6E, 1)
#: The lock session's TCP settings (seconds): a peer silent this long is dead to the server
#: (idle + interval * count) and, for unacknowledged data, to the client (user timeout).
_KEEPALIVE_IDLE: Final = 4
_KEEPALIVE_INTERVAL: Final = 2
_KEEPALIVE_COUNT: Final = 3
_USER_TIMEOUT_MS: Final = 5_000
_CONNECT_TIMEOUT: Final = 5


@dataclass(frozen=True)
class Leader:
    """Who leads a deployment: a daemon's instance id, and since when (epoch seconds)."""

    id: str
    since: float

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "since": self.since})

    @classmethod
    def from_json(cls, raw: str) -> Leader | None:
        """The record, or None when it is not one (half written, or foreign)."""
        try:
            data = json.loads(raw)
            return cls(id=str(data["id"]), since=float(data["since"]))
        except (ValueError, TypeError, KeyError):
            return None


class Leadership(Protocol):
    """The lock one daemon of a deployment holds while it leads.

    Blocking calls (a database or a file): the daemon makes them from one task, in a thread."""

    #: This daemon's id, recorded as the leader's when it takes the lock.
    instance: str
    #: Whether a live holder can lose the lock without releasing it (a database session that
    #: breaks): a new leader then waits for the old one to notice before it acts.
    revocable: bool

    def try_acquire(self) -> bool:
        """Whether this daemon leads now: take the lock when it is free, and when already
        held, check that it still is (False: lost, and given up)."""
        ...

    def leader(self) -> Leader | None:
        """Who holds the lock now (None: nobody, or not known)."""
        ...

    def release(self) -> None:
        """Give the lock up (idempotent); the leadership can be tried for again."""
        ...

    def close(self) -> None:
        """Release, and free what the leadership holds (connections)."""
        ...


def _error_kind(error: BaseException) -> str:
    """What went wrong, without the message (a connection error may quote the URL's host,
    user and options, never needed to act on it)."""
    cause = error.__cause__ or error.__context__ or error
    return type(cause).__name__


class PostgresLeadership:
    """A session-level advisory lock on a dedicated connection (see the module docstring)."""

    revocable = True

    def __init__(self, url: str, instance: str, *, now: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self._now = now
        parsed = engine_url(url)
        defaults: dict[str, Any] = {
            "application_name": "runnerscale leadership",
            "connect_timeout": _CONNECT_TIMEOUT,
            "keepalives": 1,
            "keepalives_idle": _KEEPALIVE_IDLE,
            "keepalives_interval": _KEEPALIVE_INTERVAL,
            "keepalives_count": _KEEPALIVE_COUNT,
            "tcp_user_timeout": _USER_TIMEOUT_MS,
        }
        # What the configured URL says itself is kept.
        connect_args = {key: value for key, value in defaults.items() if key not in parsed.query}
        self._engine = create_engine(
            parsed, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args
        )
        self._connection: Connection | None = None
        self._mine: Leader | None = None
        #: Whether the last try failed (said once, not at every try).
        self._failing = False
        # The daemon's task calls from a thread; a timed-out call may still run beside the next.
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._mine is not None

    def try_acquire(self) -> bool:
        with self._lock:
            try:
                return self._try_acquire()
            except SQLAlchemyError as error:
                if self._mine is not None or not self._failing:
                    log.warning(
                        "leadership: the lock's connection failed (%s); trying again",
                        _error_kind(error),
                    )
                self._failing = True
                self._drop()
                return False
            finally:
                if self._connection is not None and self._failing:
                    self._failing = False
                    log.info("leadership: the lock's connection works again")

    def _try_acquire(self) -> bool:
        connection = self._connect()
        if self._mine is not None:
            if self._holds(connection):
                return True
            log.warning("leadership: this session no longer holds the lock")
            self._drop()
            return False
        taken = connection.execute(
            text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": _PG_LOCK[0], "b": _PG_LOCK[1]}
        ).scalar_one()
        if not taken:
            return False
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - SQLite: never loaded

        mine = Leader(self.instance, self._now())
        statement = postgresql.insert(KeyValueRow).values(key=LEADER_KEY, value=mine.to_json())
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["key"], set_={"value": statement.excluded.value}
            )
        )
        self._mine = mine
        return True

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self._engine.connect()
            try:
                # The server's side of the keepalives (a Unix socket ignores them).
                for name, value in (
                    ("tcp_keepalives_idle", _KEEPALIVE_IDLE),
                    ("tcp_keepalives_interval", _KEEPALIVE_INTERVAL),
                    ("tcp_keepalives_count", _KEEPALIVE_COUNT),
                    ("tcp_user_timeout", _USER_TIMEOUT_MS),
                ):
                    connection.execute(
                        text("SELECT set_config(:name, :value, false)"),
                        {"name": name, "value": str(value)},
                    )
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _holds(self, connection: Connection) -> bool:
        return bool(
            connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND classid = :a AND objid = :b"
                    " AND objsubid = 2 AND granted)"
                ),
                {"a": _PG_LOCK[0], "b": _PG_LOCK[1]},
            ).scalar_one()
        )

    def leader(self) -> Leader | None:
        with self._lock:
            if self._mine is not None:
                return self._mine
            try:
                connection = self._connect()
                held = connection.execute(
                    text(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                        " AND classid = :a AND objid = :b AND objsubid = 2 AND granted)"
                    ),
                    {"a": _PG_LOCK[0], "b": _PG_LOCK[1]},
                ).scalar_one()
                if not held:
                    return None
                raw = connection.execute(
                    select(KeyValueRow.value).where(KeyValueRow.key == LEADER_KEY)
                ).scalar_one_or_none()
            except SQLAlchemyError:
                self._drop()
                return None
            return None if raw is None else Leader.from_json(raw)

    def release(self) -> None:
        with self._lock:
            if self._mine is not None and self._connection is not None:
                with contextlib.suppress(SQLAlchemyError):
                    self._connection.execute(
                        text("SELECT pg_advisory_unlock(:a, :b)"),
                        {"a": _PG_LOCK[0], "b": _PG_LOCK[1]},
                    )
            self._drop()

    def _drop(self) -> None:
        """Forget the connection (closing it frees the lock, if the server still had it)."""
        self._mine = None
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                connection.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()


class FileLeadership:
    """An exclusive ``flock`` on a file next to the SQLite database (see the module docstring).

    ``flock``, not ``fcntl`` record locks: those belong to the process, so a second daemon in
    one process (the tests) would not be refused, and closing any descriptor of the file would
    drop them."""

    revocable = False

    def __init__(self, path: Path, instance: str, *, now: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self.path = path
        self._now = now
        self._fd: int | None = None
        self._mine: Leader | None = None

    @property
    def held(self) -> bool:
        return self._mine is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        mine = Leader(self.instance, self._now())
        data = mine.to_json().encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        self._fd, self._mine = fd, mine
        return True

    def leader(self) -> Leader | None:
        if self._mine is not None:
            return self._mine
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its content is the holder's
                return Leader.from_json(os.pread(fd, 4096, 0).decode(errors="replace"))
            return None  # nobody holds it
        finally:
            os.close(fd)  # (drops the shared lock, if taken)

    def release(self) -> None:
        fd, self._fd, self._mine = self._fd, None, None
        if fd is not None:
            os.close(fd)  # frees the lock; the stale content is never believed

    def close(self) -> None:
        self.release()


class SoleLeadership:
    """A state no other daemon can open (in-memory SQLite): this daemon always leads."""

    revocable = False

    def __init__(self, instance: str, *, now: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self._since = now()

    def try_acquire(self) -> bool:
        return True

    def leader(self) -> Leader | None:
        return Leader(self.instance, self._since)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_leadership(url: str, instance: str) -> Leadership:
    """The leadership of the state at ``url`` (the store's URL), for daemon ``instance``."""
    parsed = engine_url(url)
    if parsed.get_backend_name() == "postgresql":
        return PostgresLeadership(url, instance)
    if _is_sqlite_memory(parsed):
        return SoleLeadership(instance)
    assert parsed.database is not None
    return FileLeadership(Path(f"{Path(parsed.database).expanduser()}.leader"), instance)
