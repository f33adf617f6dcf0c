"""Job observations only move forward, fill what was unknown, and never lose a conclusion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runnerscale.model import Job, JobState
from runnerscale.protocols import ObservedJob
from runnerscale.store import SqlStore

W, Q, P, C = JobState.WAITING, JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED
BIG_ID = 2**40 + 7  # GitHub job ids no longer fit 32 bits


def observed(state: JobState, job_id: int = BIG_ID, **fields: object) -> ObservedJob:
    job = ObservedJob(
        id=job_id,
        repo="octo/app",
        labels=("self-hosted", "Linux", "x64"),
        state=state,
        created_at=1000.0,
        run_id=2**35,
    )
    defaults: dict[str, object] = {}
    if state in (P, C):
        defaults |= {"started_at": 1010.0, "runner_name": "rs-linux-1"}
    if state is C:
        defaults |= {"completed_at": 1100.0, "conclusion": "success"}
    return replace(job, **(defaults | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sequence", "final"),
    [
        pytest.param([Q, P, C], C, id="queued-in_progress-completed"),
        pytest.param([C, Q], C, id="completed-then-late-queued"),
        pytest.param([C, P, Q, W], C, id="completed-then-everything-stale"),
        pytest.param([P, P], P, id="duplicate-in_progress"),
        pytest.param([Q, Q, Q], Q, id="duplicate-queued"),
        pytest.param([W, Q], Q, id="waiting-queued"),
        pytest.param([Q, W], Q, id="queued-then-late-waiting"),
        pytest.param([Q, C, P], C, id="completed-before-in_progress"),
        pytest.param([P, Q], P, id="in_progress-then-late-queued"),
    ],
)
def test_states_only_move_forward(
    store: SqlStore, sequence: list[JobState], final: JobState
) -> None:
    for step, state in enumerate(sequence):
        stored = store.observe_job(observed(state), now=2000.0 + step)
        assert stored.state is max(sequence[: step + 1], key=lambda s: s.rank)
    job = store.get_job(BIG_ID)
    assert job is not None
    assert job.state is final
    assert job.observed_at == 2000.0 + len(sequence) - 1


def test_a_new_job_is_stored_as_observed(store: SqlStore) -> None:
    stored = store.observe_job(observed(Q, name="build"), now=1005.5)
    assert stored == Job(
        id=BIG_ID,
        repo="octo/app",
        labels=("self-hosted", "Linux", "x64"),
        state=Q,
        created_at=1000.0,
        run_id=2**35,
        name="build",
        observed_at=1005.5,
    )
    assert store.get_job(BIG_ID) == stored


def test_forward_observation_takes_the_new_fields(store: SqlStore) -> None:
    store.observe_job(observed(Q), now=1001.0)
    running = store.observe_job(observed(P, started_at=1010.0, runner_name="rs-a"), now=1011.0)
    assert (running.started_at, running.runner_name) == (1010.0, "rs-a")
    done = store.observe_job(observed(C, conclusion="failure", completed_at=1050.0), now=1051.0)
    assert (done.state, done.conclusion, done.completed_at) == (C, "failure", 1050.0)
    assert done.started_at == 1010.0


def test_stale_observation_fills_unknown_fields_only(store: SqlStore) -> None:
    # The completed webhook came first and knew nothing of the start; the poll that saw the
    # job in progress arrives late.
    store.observe_job(observed(C, started_at=None, runner_name=None), now=1100.0)
    late = store.observe_job(observed(P, started_at=1010.0, runner_name="rs-b"), now=1101.0)
    assert late.state is C
    assert (late.started_at, late.runner_name) == (1010.0, "rs-b")
    assert late.observed_at == 1101.0

    # ...but what is known stays: a later stale report with other values changes nothing.
    again = store.observe_job(observed(P, started_at=999.0, runner_name="rs-x"), now=1102.0)
    assert (again.started_at, again.runner_name) == (1010.0, "rs-b")


def test_completed_job_keeps_its_conclusion(store: SqlStore) -> None:
    store.observe_job(observed(C, conclusion="success"), now=1100.0)
    for conclusion in ("cancelled", None):
        job = store.observe_job(observed(C, conclusion=conclusion), now=1200.0)
        assert job.conclusion == "success"
    stored = store.get_job(BIG_ID)
    assert stored is not None
    assert stored.conclusion == "success"


def test_duplicate_observation_refreshes_observed_at_only(store: SqlStore) -> None:
    first = store.observe_job(observed(P), now=1020.0)
    second = store.observe_job(observed(P), now=1030.0)
    assert second == replace(first, observed_at=1030.0)


def test_observation_never_moves_observed_at_back(store: SqlStore) -> None:
    store.observe_job(observed(Q), now=1030.0)
    assert store.observe_job(observed(Q), now=1020.0).observed_at == 1030.0


def test_identity_fields_do_not_change(store: SqlStore) -> None:
    store.observe_job(observed(Q), now=1001.0)
    job = store.observe_job(replace(observed(P), repo="other/repo", created_at=5.0), now=1002.0)
    assert (job.repo, job.created_at) == ("octo/app", 1000.0)


def test_jobs_filters_by_state(store: SqlStore) -> None:
    store.observe_job(observed(Q, job_id=3, created_at=30.0), now=1.0)
    store.observe_job(observed(P, job_id=1, created_at=10.0), now=1.0)
    store.observe_job(observed(C, job_id=2, created_at=20.0), now=1.0)
    store.observe_job(observed(W, job_id=4, created_at=40.0), now=1.0)
    assert [job.id for job in store.jobs()] == [1, 2, 3, 4]  # oldest first
    assert [job.id for job in store.jobs([Q])] == [3]
    assert [job.id for job in store.jobs([Q, P])] == [1, 3]
    assert [job.id for job in store.jobs([C, W])] == [2, 4]
    assert store.jobs([]) == []


def test_count_jobs_counts_by_state_in_the_order_asked(store: SqlStore) -> None:
    for job_id, state in enumerate([Q, P, P, C, W, P, Q], start=1):
        store.observe_job(observed(state, job_id=job_id, created_at=float(job_id)), now=1.0)
    store.observe_job(observed(P, job_id=1), now=2.0)  # queued -> in progress
    assert store.count_jobs([P, Q, W]) == {P: 4, Q: 1, W: 1}
    assert list(store.count_jobs([W, Q, P])) == [W, Q, P]
    assert store.count_jobs([C, Q, Q]) == {C: 1, Q: 1}  # the database's rows too
    store.observe_job(observed(C, job_id=7), now=3.0)
    assert store.count_jobs([Q, W]) == {W: 1}  # a state with none is left out
    assert store.count_jobs([]) == {}


def test_shared_rows_are_the_rows_read_and_stay_as_read(store: SqlStore) -> None:
    store.observe_job(observed(Q, job_id=1, created_at=10.0), now=1.0)
    store.observe_job(observed(W, job_id=2, created_at=20.0), now=1.0)
    shared = store.jobs([Q, W], shared=True)
    assert shared == store.jobs([Q, W])
    # Later changes replace the kept rows: what a reader holds stays as it read it.
    store.set_job_pools({1: "linux", 2: "linux"})
    store.observe_job(observed(P, job_id=1), now=2.0)
    assert [(job.id, job.state, job.pool) for job in shared] == [(1, Q, None), (2, W, None)]
    assert [(job.id, job.state, job.pool) for job in store.jobs([P, W], shared=True)] == [
        (1, P, "linux"),
        (2, W, "linux"),
    ]


def test_set_job_pool(store: SqlStore) -> None:
    store.observe_job(observed(Q), now=1.0)
    store.set_job_pool(BIG_ID, "linux-x64")
    job = store.get_job(BIG_ID)
    assert job is not None
    assert job.pool == "linux-x64"
    # Later observations keep the pool.
    assert store.observe_job(observed(P), now=2.0).pool == "linux-x64"
    store.set_job_pool(BIG_ID, None)
    assert store.observe_job(observed(P), now=3.0).pool is None


def test_set_job_pool_of_an_unknown_job(store: SqlStore) -> None:
    with pytest.raises(KeyError):
        store.set_job_pool(404, "linux-x64")


def test_get_unknown_job(store: SqlStore) -> None:
    assert store.get_job(404) is None


def test_prune_jobs_deletes_only_old_completed_jobs(store: SqlStore) -> None:
    store.observe_job(observed(C, job_id=1, completed_at=100.0), now=100.0)
    store.observe_job(observed(C, job_id=2, completed_at=300.0), now=300.0)
    # Completed with no completion time: judged by when it was last observed.
    store.observe_job(observed(C, job_id=3, completed_at=None), now=150.0)
    store.observe_job(observed(Q, job_id=4, created_at=1.0), now=50.0)
    store.observe_job(observed(P, job_id=5, created_at=1.0), now=50.0)
    assert store.prune_jobs(completed_before=200.0) == 2
    assert sorted(job.id for job in store.jobs()) == [2, 4, 5]
    assert store.prune_jobs(completed_before=200.0) == 0
    assert store.prune_jobs(completed_before=300.0) == 0  # strictly before
    assert store.prune_jobs(completed_before=301.0) == 1


def test_jobs_completed_since_a_moment(store: SqlStore) -> None:
    """What the examination of failed jobs reads (an index serves it, not a scan of a week)."""
    store.observe_job(observed(C, job_id=1, completed_at=1100.0), now=1.0)
    store.observe_job(observed(C, job_id=2, completed_at=1200.0), now=1.0)
    store.observe_job(observed(P, job_id=3), now=1.0)
    assert [job.id for job in store.jobs([C], completed_since=1150.0)] == [2]
    assert [job.id for job in store.jobs([C], completed_since=1100.0)] == [1, 2]
    assert [job.id for job in store.jobs(completed_since=1000.0)] == [1, 2]
