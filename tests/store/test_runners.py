"""Runners: unique names, every field round-trips, filters and order, pruning."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from runnerscale.model import Runner, RunnerState
from runnerscale.protocols import RunnerNameTaken, Store
from runnerscale.store import SqlStore


def runner(name: str = "rs-linux-1", **changes: object) -> Runner:
    base = Runner(
        name=name,
        pool="linux",
        target="org:octo",
        state=RunnerState.PENDING,
        created_at=1000.0,
        state_since=1000.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_add_and_get(store: SqlStore) -> None:
    store.add_runner(runner())
    assert store.get_runner("rs-linux-1") == runner()
    assert store.get_runner("nope") is None


def test_duplicate_name_is_refused(store: SqlStore) -> None:
    store.add_runner(runner())
    with pytest.raises(ValueError, match="rs-linux-1"):
        store.add_runner(runner(pool="other", state=RunnerState.IDLE))
    assert store.get_runner("rs-linux-1") == runner()  # the first one is untouched
    store.add_runner(runner("rs-linux-2"))  # and the store still works after the refusal


def test_update_round_trips_every_field(store: SqlStore) -> None:
    store.add_runner(runner())
    changed = Runner(
        name="rs-linux-1",
        pool="linux-big",
        target="repo:octo/app",
        state=RunnerState.BUSY,
        created_at=1000.25,
        state_since=1234.5678,
        github_id=2**40 + 1,
        instance_id="i-0123456789abcdef0",
        job_id=2**41 + 3,
        attempts=3,
        last_error="docker: no space left on device\nsecond line ünïcode",
        idle_since=1200.125,
        labels=("self-hosted", "Linux", "x64", "deploy"),
    )
    # The test must change every field but the name, or it proves nothing.
    for field in fields(Runner):
        if field.name != "name":
            assert getattr(changed, field.name) != getattr(runner(), field.name), field.name
    _write_whole(store, RunnerState.PENDING, changed)
    assert store.get_runner("rs-linux-1") == changed

    cleared = replace(
        changed, github_id=None, instance_id=None, job_id=None, idle_since=None, labels=()
    )
    _write_whole(store, RunnerState.BUSY, replace(cleared, last_error=None))
    assert store.get_runner("rs-linux-1") == replace(cleared, last_error=None)


def _write_whole(store: Store, expected: RunnerState, runner: Runner) -> None:
    """Every field of a stored runner, through a transition (there is no whole-row write)."""
    changes = {f.name: getattr(runner, f.name) for f in fields(Runner)}
    del changes["name"], changes["state"]
    assert store.transition(runner.name, expected, runner.state, **changes)


def test_a_runners_labels_are_kept_through_its_lifecycle(store: Store) -> None:
    """Written when it is planned (the labels it registers with), never lost by a transition
    that does not name them, nor by a restart's adoption (``creating`` to ``booting``)."""
    labels = ("self-hosted", "linux", "x64", "deploy")
    store.add_runner(runner(labels=labels))
    assert store.transition("rs-linux-1", RunnerState.PENDING, RunnerState.CREATING, github_id=7)
    assert store.transition(
        "rs-linux-1", RunnerState.CREATING, RunnerState.BOOTING, instance_id="i-1"
    )
    assert store.transition("rs-linux-1", RunnerState.BOOTING, RunnerState.IDLE, idle_since=5.0)
    stored = store.get_runner("rs-linux-1")
    assert stored is not None
    assert stored.labels == labels
    assert [r.labels for r in store.runners(pool="linux")] == [labels]


def test_update_of_an_unknown_runner(store: SqlStore) -> None:
    with pytest.raises(KeyError):
        store.transition("ghost", RunnerState.PENDING, RunnerState.IDLE)
    assert store.get_runner("ghost") is None


def test_runners_filter_by_pool_and_state_in_creation_order(store: SqlStore) -> None:
    store.add_runner(runner("c", created_at=3.0, state=RunnerState.IDLE))
    store.add_runner(runner("b", created_at=1.0, state=RunnerState.BUSY))
    store.add_runner(runner("a", created_at=1.0, state=RunnerState.IDLE))  # same time: by name
    store.add_runner(runner("d", created_at=2.0, pool="gpu", state=RunnerState.IDLE))
    store.add_runner(runner("e", created_at=0.5, pool="gpu", state=RunnerState.GONE))

    def names(**kwargs: object) -> list[str]:
        return [r.name for r in store.runners(**kwargs)]  # type: ignore[arg-type]

    assert names() == ["e", "a", "b", "d", "c"]
    assert names(pool="linux") == ["a", "b", "c"]
    assert names(pool="gpu") == ["e", "d"]
    assert names(pool="none") == []
    assert names(states=[RunnerState.IDLE]) == ["a", "d", "c"]
    assert names(states=[RunnerState.IDLE, RunnerState.BUSY]) == ["a", "b", "d", "c"]
    assert names(pool="linux", states=[RunnerState.IDLE]) == ["a", "c"]
    assert names(pool="gpu", states=[s for s in RunnerState if s.live]) == ["d"]
    assert names(states=[]) == []


def test_prune_runners_deletes_only_long_gone_ones(store: SqlStore) -> None:
    store.add_runner(runner("old-gone", state=RunnerState.GONE, state_since=100.0))
    store.add_runner(runner("new-gone", state=RunnerState.GONE, state_since=300.0))
    store.add_runner(runner("old-failed", state=RunnerState.FAILED, state_since=100.0))
    store.add_runner(runner("old-idle", state=RunnerState.IDLE, state_since=100.0))
    assert store.prune_runners(gone_before=200.0) == 1
    assert {r.name for r in store.runners()} == {"new-gone", "old-failed", "old-idle"}
    assert store.prune_runners(gone_before=200.0) == 0
    assert store.prune_runners(gone_before=301.0) == 1


def test_add_runners_inserts_them_all_together(store: SqlStore) -> None:
    many = [runner(f"rs-linux-{i}", created_at=1000.0 + i) for i in range(1200)]
    store.add_runners(many)
    assert store.runners() == many
    store.add_runners([])
    assert len(store.runners()) == 1200


def test_add_runners_with_a_taken_name_inserts_none(store: SqlStore) -> None:
    store.add_runner(runner("rs-linux-5"))
    with pytest.raises(ValueError, match="rs-linux-5"):
        store.add_runners([runner(f"rs-linux-{i}") for i in range(10)])
    assert [r.name for r in store.runners()] == ["rs-linux-5"]
    with pytest.raises(ValueError, match="twice"):
        store.add_runners([runner("rs-linux-7"), runner("rs-linux-7")])
    assert [r.name for r in store.runners()] == ["rs-linux-5"]


def test_a_taken_name_is_refused_naming_the_taken_ones(store: Store) -> None:
    """Its writer names those runners again (``Actions``): the refusal says which."""
    store.add_runners([runner("rs-linux-1"), runner("rs-linux-2")])
    with pytest.raises(RunnerNameTaken) as one:
        store.add_runner(runner("rs-linux-2"))
    assert one.value.names == {"rs-linux-2"}
    with pytest.raises(RunnerNameTaken) as several:
        store.add_runners([runner(f"rs-linux-{i}") for i in range(4)])
    assert several.value.names == {"rs-linux-1", "rs-linux-2"}
    with pytest.raises(RunnerNameTaken) as twice:
        store.add_runners([runner("rs-linux-7"), runner("rs-linux-8"), runner("rs-linux-7")])
    assert twice.value.names == {"rs-linux-7"}
    assert [r.name for r in store.runners()] == ["rs-linux-1", "rs-linux-2"]


def test_count_runners_counts_by_pool_and_state(store: SqlStore) -> None:
    store.add_runners(
        [
            runner("a", state=RunnerState.IDLE),
            runner("b", state=RunnerState.IDLE),
            runner("c", state=RunnerState.BUSY),
            runner("d", pool="big", state=RunnerState.IDLE),
            runner("e", state=RunnerState.GONE),
        ]
    )
    assert store.count_runners([RunnerState.IDLE, RunnerState.BUSY]) == {
        ("linux", RunnerState.IDLE): 2,
        ("linux", RunnerState.BUSY): 1,
        ("big", RunnerState.IDLE): 1,
    }
    assert store.count_runners([RunnerState.FAILED]) == {}


def test_shared_rows_are_the_rows_read_and_stay_as_read(store: SqlStore) -> None:
    store.add_runners(
        [
            runner("a", state=RunnerState.IDLE),
            runner("b", state=RunnerState.BUSY),
            runner("c", state=RunnerState.GONE),
        ]
    )
    live = [RunnerState.IDLE, RunnerState.BUSY]
    shared = store.runners(states=live, shared=True)
    assert shared == store.runners(states=live)
    assert store.runners(pool="linux", shared=True) == store.runners(pool="linux")
    # A later change replaces the kept row: what a reader holds stays as it read it.
    assert store.transition("a", RunnerState.IDLE, RunnerState.DELETING, last_error="gone")
    assert (shared[0].name, shared[0].state, shared[0].last_error) == ("a", RunnerState.IDLE, None)
    assert [r.state for r in store.runners(states=[RunnerState.DELETING], shared=True)] == [
        RunnerState.DELETING
    ]
