"""The SQL store's active view (``store/view.py``) equals what the database holds: after each
kind of write, under a concurrent writer thread, after another process's write (counted, or
reread), and after a write that failed (unchanged)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import text

from runnerscale.model import Job, JobState, Runner, RunnerState
from runnerscale.protocols import Delivery, ObservedJob
from runnerscale.store import SqlStore
from runnerscale.store.view import ACTIVE_JOB_STATES, LIVE_RUNNER_STATES
from tests.store.test_transitions import runner as a_runner

ACTIVE = sorted(ACTIVE_JOB_STATES)
LIVE = sorted(LIVE_RUNNER_STATES)


def observed(job_id: int, state: JobState = JobState.QUEUED, **fields: object) -> ObservedJob:
    job = ObservedJob(
        id=job_id, repo="acme/app", labels=("linux",), state=state, created_at=100.0 - job_id
    )
    return replace(job, **fields)  # type: ignore[arg-type]


def runner(name: str, state: RunnerState = RunnerState.PENDING, **fields: object) -> Runner:
    """A runner of the transitions' tests, ``pending`` unless said, with labels of its own."""
    return a_runner(name, state=state, **{"labels": ("linux", "x64"), **fields})


def in_sql(store: SqlStore) -> tuple[list[Job], list[Runner]]:
    """The active jobs and live runners as SQL holds them (reads of every row never use the
    view)."""
    return (
        [job for job in store.jobs() if job.state in ACTIVE_JOB_STATES],
        [r for r in store.runners() if r.state in LIVE_RUNNER_STATES],
    )


def assert_view_is_sql(store: SqlStore) -> None:
    """The view holds what SQL holds, and counts as current (no reread would happen)."""
    jobs, runners = in_sql(store)
    view = store._view
    assert view.jobs(ACTIVE) == jobs
    assert view.runners(None, LIVE) == runners
    assert view.count_jobs(ACTIVE) == Counter(job.state for job in jobs)
    for job in jobs:
        assert view.job(job.id) == job
    for one in runners:
        assert view.runner(one.name) == one
    with store.engine.connect() as connection:
        assert store._view_current(connection)


@pytest.fixture
def sql(make_store: Callable[[], SqlStore]) -> SqlStore:
    store = make_store()
    store.resync()
    return store


def test_each_kind_of_write_reaches_the_view(sql: SqlStore) -> None:
    writes: list[Callable[[], object]] = [
        lambda: sql.observe_job(observed(1), 10.0),
        lambda: sql.observe_job(observed(1, JobState.IN_PROGRESS, runner_name="r-1"), 11.0),
        lambda: sql.observe_job(observed(1, JobState.QUEUED), 12.0),  # stale: fills, stays
        lambda: sql.take_deliveries(
            [
                Delivery("g-1", observed(2)),
                Delivery("g-2", observed(3, JobState.WAITING)),
                Delivery("g-1", observed(4)),  # a repeat: nothing
                Delivery("g-3", observed(2, JobState.IN_PROGRESS)),  # twice in the group
                Delivery("g-4", None),
            ],
            13.0,
        ),
        lambda: sql.set_job_pool(2, "linux"),
        lambda: sql.set_job_pools({1: "linux", 3: None, 99: "linux"}),
        lambda: sql.add_runner(runner("r-1")),
        lambda: sql.add_runners([runner("r-2", created_at=900.0), runner("r-3")]),
        lambda: sql.add_runners([runner("r-old", RunnerState.GONE)]),
        lambda: sql.transition("r-1", RunnerState.PENDING, RunnerState.BUSY, job_id=1),
        lambda: sql.transition("r-2", RunnerState.PENDING, RunnerState.GONE, state_since=5.0),
        lambda: sql.transition("r-3", RunnerState.IDLE, RunnerState.DELETING),  # not moved
        lambda: sql.transition("r-old", RunnerState.GONE, RunnerState.CREATING),  # back to live
        lambda: sql.observe_job(observed(1, JobState.COMPLETED, conclusion="success"), 14.0),
        lambda: sql.prune_jobs(1e12),
        lambda: sql.prune_runners(1e12),
    ]
    for write in writes:
        write()
        assert_view_is_sql(sql)
    assert [job.id for job in sql.jobs(ACTIVE)] == [3, 2]
    assert [r.name for r in sql.runners(states=LIVE)] == ["r-1", "r-3", "r-old"]
    assert sql.count_jobs(ACTIVE) == {JobState.IN_PROGRESS: 1, JobState.WAITING: 1}
    assert sql.count_runners(LIVE) == {
        ("linux", RunnerState.BUSY): 1,
        ("linux", RunnerState.PENDING): 1,
        ("linux", RunnerState.CREATING): 1,
    }


def test_reads_hand_out_copies(sql: SqlStore) -> None:
    sql.observe_job(observed(1), 10.0)
    sql.add_runner(runner("r-1"))
    sql.jobs(ACTIVE)[0].pool = "changed by a caller"
    sql.runners(states=LIVE)[0].state = RunnerState.GONE
    got = sql.get_job(1)
    assert got is not None
    got.pool = "changed by a caller"
    assert_view_is_sql(sql)
    assert sql.get_job(1) == replace(got, pool=None)


def test_a_failed_write_leaves_the_view_unchanged(sql: SqlStore) -> None:
    sql.observe_job(observed(1), 10.0)
    sql.add_runner(runner("r-1"))
    with pytest.raises(ValueError, match="already exists"):
        sql.add_runners([runner("r-2"), runner("r-1")])
    with pytest.raises(KeyError):
        sql.set_job_pool(42, "linux")
    with pytest.raises(KeyError):
        sql.transition("nobody", RunnerState.PENDING, RunnerState.IDLE)
    assert_view_is_sql(sql)
    assert [r.name for r in sql.runners(states=LIVE)] == ["r-1"]


def test_a_write_that_fails_at_its_end_is_rolled_back_and_not_applied(
    sql: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes after every statement of the write (the count is its last)."""
    sql.add_runner(runner("r-1"))

    def fail(*_: object) -> int:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(sql, "_count_write", fail)
    with pytest.raises(ConnectionError):
        sql.transition("r-1", RunnerState.PENDING, RunnerState.IDLE)
    with pytest.raises(ConnectionError):
        sql.take_deliveries([Delivery("g-1", observed(7))], 10.0)
    monkeypatch.undo()
    assert_view_is_sql(sql)
    assert sql.get_runner("r-1") == runner("r-1")
    assert sql.get_job(7) is None


def test_a_writer_thread_never_shows_half_a_batch(sql: SqlStore) -> None:
    """The webhook writer thread takes groups while the event loop reads."""
    group, groups = 5, 20
    done = threading.Event()

    def write() -> None:
        for n in range(groups):
            batch = [Delivery(f"g-{n}-{i}", observed(1000 + n * group + i)) for i in range(group)]
            sql.take_deliveries(batch, 10.0)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        assert len(sql.jobs(ACTIVE)) % group == 0
    writer.join()
    assert len(sql.jobs(ACTIVE)) == group * groups
    assert_view_is_sql(sql)


def test_another_process_write_is_seen_at_the_next_read(
    make_store: Callable[[], SqlStore],
) -> None:
    """Another daemon (a standby's webhooks, its runner moves) counts its writes; this one
    rereads its view when the count is not its own."""
    mine, other = make_store(), make_store()
    mine.observe_job(observed(1), 10.0)
    mine.add_runner(runner("r-1"))
    assert [job.id for job in mine.jobs(ACTIVE)] == [1]
    other.observe_job(observed(2), 11.0)
    other.transition("r-1", RunnerState.PENDING, RunnerState.IDLE)
    assert [job.id for job in mine.jobs(ACTIVE)] == [2, 1]
    assert [r.state for r in mine.runners(states=LIVE)] == [RunnerState.IDLE]
    other.observe_job(observed(1, JobState.COMPLETED), 12.0)
    got = mine.get_job(1)
    assert got is not None
    assert got.state is JobState.COMPLETED
    mine.set_job_pool(2, "linux")  # this process's write after another's: still reread
    assert [(job.id, job.pool) for job in mine.jobs(ACTIVE)] == [(2, "linux")]
    assert_view_is_sql(mine)


def test_an_uncounted_write_is_seen_after_a_resync(make_store: Callable[[], SqlStore]) -> None:
    """A writer that does not count itself (an older version, a hand-made SQL change) is seen
    when the view is reread: on taking the lead, or every ``resync_interval``."""
    store = make_store()
    store.add_runner(runner("r-1"))
    assert store.runners(states=LIVE)[0].state is RunnerState.PENDING
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runners SET state = 'idle' WHERE name = 'r-1'"))
    assert store.runners(states=LIVE)[0].state is RunnerState.PENDING
    store.resync()
    assert store.runners(states=LIVE)[0].state is RunnerState.IDLE
    assert_view_is_sql(store)


def test_the_periodic_resync(make_store: Callable[[], SqlStore]) -> None:
    store = make_store()
    every_read = SqlStore(store.engine, resync_interval=0.0)
    store.add_runner(runner("r-1"))
    assert every_read.runners(states=LIVE)[0].state is RunnerState.PENDING
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runners SET state = 'idle' WHERE name = 'r-1'"))
    assert every_read.runners(states=LIVE)[0].state is RunnerState.IDLE


def test_a_failed_compare_and_set_refreshes_the_row(make_store: Callable[[], SqlStore]) -> None:
    """A row the view missed a change of (an uncounted write) is put right when a transition
    from the state the view believed fails."""
    store = make_store()
    store.add_runner(runner("r-1"))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runners SET state = 'busy' WHERE name = 'r-1'"))
    assert not store.transition("r-1", RunnerState.PENDING, RunnerState.CREATING)
    assert store.get_runner("r-1") == runner("r-1", RunnerState.BUSY)
