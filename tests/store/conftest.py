"""Every store test runs on both backends: a SQLite file of its own and a Postgres database of
its own on the session's server (see ``tests/postgres.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runnerscale.protocols import Store
from runnerscale.store import SqlStore, open_store
from runnerscale.store.memory import MemoryStore
from tests.postgres import postgres_server, postgres_url

__all__ = ["make_store", "postgres_server", "postgres_url", "store", "store_url"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A directory that does not exist yet: open_store creates it.
        return f"sqlite:///{tmp_path / 'state' / 'runnerscale.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Opens more stores on the test's database (a restarted daemon); closes them all."""
    opened: list[SqlStore] = []

    def make() -> SqlStore:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """One store per test on each backend, the in-memory one (used by the simulation) too:
    they share one contract, so they share these tests."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'runnerscale.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    yield opened
    opened.close()


@pytest.fixture
def sql_store(make_store: Callable[[], SqlStore]) -> SqlStore:
    """A SQL store on each database backend (for what only SQL has: migrations, files)."""
    return make_store()
