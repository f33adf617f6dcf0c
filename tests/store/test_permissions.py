"""The SQLite state database is for runnerscale's user only: its file and SQLite's side files
``0600``, the folder made for it ``0700``, whatever the umask."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runnerscale.store import open_store
from tests.test_files import mode, usual_umask

__all__ = ["usual_umask"]


def test_a_new_database_and_its_folders_are_private(tmp_path: Path, usual_umask: None) -> None:
    tmp_path.chmod(0o755)
    database = tmp_path / "var" / "runnerscale" / "state.db"
    store = open_store(f"sqlite:///{database}")
    try:
        store.set_value("written", "yes")
        side_files = [database.with_name(f"state.db{suffix}") for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in side_files)  # WAL mode, open: both are there
        assert {path.name: mode(path) for path in (database, *side_files)} == {
            "state.db": 0o600,
            "state.db-wal": 0o600,
            "state.db-shm": 0o600,
        }
    finally:
        store.close()
    assert mode(database.parent) == 0o700
    assert mode(database.parent.parent) == 0o700
    assert mode(tmp_path) == 0o755  # it existed: not runnerscale's to change


def test_an_older_laxer_database_is_narrowed(tmp_path: Path, usual_umask: None) -> None:
    database = tmp_path / "state.db"
    open_store(f"sqlite:///{database}").close()
    # Another connection keeps the WAL open, so that SQLite's side files stay.
    connection = sqlite3.connect(database)
    try:
        connection.execute("CREATE TABLE extra (x)")
        files = [database, *(database.with_name(f"state.db{s}") for s in ("-wal", "-shm"))]
        for path in files:
            path.chmod(0o644)  # as a daemon of an earlier version left them
        open_store(f"sqlite:///{database}").close()
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    finally:
        connection.close()
