"""Runner transitions are compare-and-set: a row moves only from the state its writer read, and
only the fields the writer changes are written (on every store; across two stores on one
database; under threads racing)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from runnerscale.model import Runner, RunnerState
from runnerscale.protocols import Store
from runnerscale.store import SqlStore

PENDING, CREATING, BOOTING, IDLE, BUSY, DELETING, GONE = (
    RunnerState.PENDING,
    RunnerState.CREATING,
    RunnerState.BOOTING,
    RunnerState.IDLE,
    RunnerState.BUSY,
    RunnerState.DELETING,
    RunnerState.GONE,
)


def runner(name: str = "rs-linux-1", **changes: object) -> Runner:
    base = Runner(
        name=name,
        pool="linux",
        target="org:octo",
        state=CREATING,
        created_at=1000.0,
        state_since=1000.0,
        github_id=2**40,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_transition_from_the_stored_state_moves_the_row(store: Store) -> None:
    store.add_runner(runner())
    assert store.transition("rs-linux-1", CREATING, BOOTING, instance_id="i-1", state_since=1010.0)
    assert store.get_runner("rs-linux-1") == runner(
        state=BOOTING, instance_id="i-1", state_since=1010.0
    )


def test_a_transition_from_another_state_changes_nothing(store: Store) -> None:
    store.add_runner(runner(state=GONE, state_since=1050.0))
    assert not store.transition("rs-linux-1", CREATING, BOOTING, instance_id="i-1")
    assert store.get_runner("rs-linux-1") == runner(state=GONE, state_since=1050.0)


def test_only_the_fields_named_are_written(store: Store) -> None:
    """A writer holding an old copy does not put back what another writer changed."""
    store.add_runner(runner(state=BOOTING))
    stale = store.get_runner("rs-linux-1")
    assert stale is not None
    assert store.transition("rs-linux-1", BOOTING, BOOTING, last_error="seen by another writer")
    assert store.transition("rs-linux-1", stale.state, IDLE, idle_since=1020.0)
    assert store.get_runner("rs-linux-1") == runner(
        state=IDLE, idle_since=1020.0, last_error="seen by another writer"
    )


def test_several_expected_states(store: Store) -> None:
    store.add_runner(runner(state=BOOTING))
    assert not store.transition("rs-linux-1", [PENDING, CREATING], DELETING)
    assert store.transition("rs-linux-1", {CREATING, BOOTING, IDLE}, DELETING)
    assert store.get_runner("rs-linux-1") == runner(state=DELETING)


def test_fields_only_while_the_state_holds(store: Store) -> None:
    store.add_runner(runner(state=BUSY))
    assert store.transition("rs-linux-1", BUSY, BUSY, job_id=2**41)
    assert not store.transition("rs-linux-1", IDLE, IDLE, job_id=1)
    assert store.get_runner("rs-linux-1") == runner(state=BUSY, job_id=2**41)


def test_a_value_can_be_cleared(store: Store) -> None:
    store.add_runner(runner(state=BOOTING, instance_id="i-1", last_error="x"))
    assert store.transition("rs-linux-1", BOOTING, BOOTING, instance_id=None, last_error=None)
    assert store.get_runner("rs-linux-1") == runner(state=BOOTING)


def test_an_unknown_runner_is_an_error(store: Store) -> None:
    with pytest.raises(KeyError, match="ghost"):
        store.transition("ghost", CREATING, BOOTING)
    assert store.get_runner("ghost") is None


@pytest.mark.parametrize("field", ["name", "state", "colour"])
def test_only_a_runners_other_fields_can_be_written(store: Store, field: str) -> None:
    store.add_runner(runner())
    with pytest.raises(TypeError, match=field):
        store.transition("rs-linux-1", CREATING, BOOTING, **{field: "x"})
    with pytest.raises(TypeError):
        store.transition("rs-linux-1", [], BOOTING)
    assert store.get_runner("rs-linux-1") == runner()  # nothing was written


def test_the_slow_writer_on_another_connection_loses(make_store: Callable[[], SqlStore]) -> None:
    """Two daemons (or two connections) on one database: the database refuses the stale
    write, not the daemon's memory."""
    janitor, creator = make_store(), make_store()
    creator.add_runner(runner())
    assert janitor.transition("rs-linux-1", CREATING, DELETING, state_since=1200.0)
    assert janitor.transition("rs-linux-1", DELETING, GONE, state_since=1201.0)
    assert not creator.transition("rs-linux-1", CREATING, BOOTING, instance_id="i-1")
    assert janitor.get_runner("rs-linux-1") == runner(state=GONE, state_since=1201.0)


def test_racing_threads_move_a_runner_once(make_store: Callable[[], SqlStore]) -> None:
    stores = [make_store(), make_store()]
    names = [f"rs-linux-{i}" for i in range(10)]
    for name in names:
        stores[0].add_runner(runner(name, state=IDLE))

    def claim(worker: int) -> list[str]:
        store = stores[worker % 2]
        return [name for name in names if store.transition(name, IDLE, DELETING)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        claimed = [name for f in [pool.submit(claim, w) for w in range(6)] for name in f.result()]

    assert sorted(claimed) == names  # each runner claimed by exactly one writer
    assert {r.state for r in stores[1].runners()} == {DELETING}
