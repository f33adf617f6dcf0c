"""Every store test runs on both backends: a SQLite file of its own and a Postgres database of
its own on the session's server (see ``tests/postgres.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runnerscale.store import SqlStore, open_store
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


@pytest.fixture
def store(make_store: Callable[[], SqlStore]) -> SqlStore:
    return make_store()
