"""A deployment's controller id is kept in its state: the same for every daemon on that state,
new for a new state, and ``runnerscale`` for a state from before ids were per deployment."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from runnerscale.model import Runner, RunnerState
from runnerscale.store import SqlStore, open_store
from runnerscale.store.deployment import (
    CONTROLLER_ID_KEY,
    LEGACY_CONTROLLER_ID,
    choose_controller_id,
)


def test_a_new_state_gets_an_id_of_its_own_that_every_daemon_on_it_shares(
    make_store: Callable[[], SqlStore],
) -> None:
    first = choose_controller_id(make_store(), None)
    assert re.fullmatch(r"rs-[0-9a-f]{8}", first)
    assert choose_controller_id(make_store(), None) == first  # a second daemon, a restart


def test_another_state_gets_another_id(
    make_store: Callable[[], SqlStore], tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = open_store(f"sqlite:///{tmp_path_factory.mktemp('other') / 'state.db'}")
    try:
        assert choose_controller_id(make_store(), None) != choose_controller_id(other, None)
    finally:
        other.close()


def test_a_state_with_runners_from_before_keeps_adopting_them(
    make_store: Callable[[], SqlStore],
) -> None:
    store = make_store()
    store.add_runner(
        Runner(
            name="rs-linux-1",
            pool="linux",
            target="org:acme",
            state=RunnerState.IDLE,
            created_at=1.0,
            state_since=1.0,
        )
    )
    assert choose_controller_id(store, None) == LEGACY_CONTROLLER_ID
    assert store.get_value(CONTROLLER_ID_KEY) == LEGACY_CONTROLLER_ID


def test_the_configured_id_wins_and_is_remembered(
    make_store: Callable[[], SqlStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store()
    generated = choose_controller_id(store, None)
    assert choose_controller_id(store, "ci-eu") == "ci-eu"
    assert generated in caplog.text  # replacing an id is said: its runners are orphaned
    assert choose_controller_id(make_store(), None) == "ci-eu"  # the key dropped later


def test_daemons_starting_at_once_on_a_new_state_agree(
    make_store: Callable[[], SqlStore],
) -> None:
    stores = [make_store() for _ in range(4)]
    candidates = iter([f"rs-0000000{i}" for i in range(4)])
    with ThreadPoolExecutor(4) as pool:
        chosen = list(
            pool.map(
                lambda store: choose_controller_id(store, None, lambda: next(candidates)),
                stores,
            )
        )
    assert len(set(chosen)) == 1


def test_add_value_keeps_the_first_value(sql_store: SqlStore) -> None:
    assert sql_store.add_value("k", "first") == "first"
    assert sql_store.add_value("k", "second") == "first"
    sql_store.set_value("k", "third")  # an overwrite is what set_value is for
    assert sql_store.add_value("k", "fourth") == "third"
