"""Jobs lost with a runner that died mid-job: the first account of a loss is kept, and a loss
is settled once (the compare-and-set a re-run is claimed with), or reopened by its settler."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from runnerscale.model import RERUN, JobLoss, JobState
from runnerscale.protocols import ObservedJob, Store
from runnerscale.store import SqlStore

BIG_ID = 2**40 + 7  # GitHub job ids no longer fit 32 bits


def lost(job_id: int = BIG_ID, *, at: float = 100.0, reason: str = "runner rs-1 died") -> JobLoss:
    return JobLoss(job_id=job_id, repo="acme/app", pool="linux", reason=reason, lost_at=at)


def job(store: Store, job_id: int = BIG_ID, *, completed_at: float = 200.0) -> None:
    store.observe_job(
        ObservedJob(
            id=job_id,
            repo="acme/app",
            labels=("linux",),
            state=JobState.COMPLETED,
            created_at=1.0,
            completed_at=completed_at,
            conclusion="failure",
        ),
        now=completed_at,
    )


def test_the_first_account_of_a_loss_is_kept(store: Store) -> None:
    assert store.record_job_loss(lost(reason="runner rs-1 died mid-job: exit code 137"))
    assert not store.record_job_loss(lost(at=150.0, reason="its instance disappeared"))
    assert store.job_losses() == [lost(reason="runner rs-1 died mid-job: exit code 137")]


def test_losses_are_listed_oldest_first_settled_or_not(store: Store) -> None:
    for job_id, at in ((3, 30.0), (1, 10.0), (2, 20.0)):
        store.record_job_loss(lost(job_id, at=at))
    assert [loss.job_id for loss in store.job_losses()] == [1, 2, 3]
    assert store.settle_job_loss(2, RERUN, now=40.0)
    assert [loss.job_id for loss in store.job_losses(settled=False)] == [1, 3]
    assert store.job_losses(settled=True) == [
        JobLoss(2, "acme/app", "linux", "runner rs-1 died", 20.0, settled_at=40.0, outcome=RERUN)
    ]


def test_a_loss_is_settled_once(store: Store) -> None:
    store.record_job_loss(lost())
    assert store.settle_job_loss(BIG_ID, RERUN, now=200.0)
    assert not store.settle_job_loss(BIG_ID, RERUN, now=201.0)
    assert not store.settle_job_loss(BIG_ID, "not re-run: the job ended success", now=202.0)
    (settled,) = store.job_losses()
    assert (settled.settled_at, settled.outcome) == (200.0, RERUN)
    assert not store.settle_job_loss(12345, RERUN, now=203.0)  # no such loss


def test_only_its_settler_reopens_a_loss(store: Store) -> None:
    store.record_job_loss(lost())
    assert not store.reopen_job_loss(BIG_ID, settled_at=200.0)  # not settled at all
    assert store.settle_job_loss(BIG_ID, RERUN, now=200.0)
    assert not store.reopen_job_loss(BIG_ID, settled_at=199.0)  # another settlement
    assert store.job_losses(settled=False) == []
    assert store.reopen_job_loss(BIG_ID, settled_at=200.0)
    assert store.job_losses(settled=False) == [lost()]
    assert store.settle_job_loss(BIG_ID, RERUN, now=260.0)  # a later pass claims it again
    assert not store.reopen_job_loss(BIG_ID, settled_at=200.0)


def test_losses_are_pruned_with_their_jobs(store: Store) -> None:
    job(store, 1, completed_at=100.0)
    job(store, 2, completed_at=900.0)
    store.record_job_loss(lost(1))
    store.record_job_loss(lost(2))
    assert store.prune_jobs(completed_before=500.0) == 1
    assert [loss.job_id for loss in store.job_losses()] == [2]


def test_losses_survive_a_restart(make_store: Callable[[], SqlStore]) -> None:
    first = make_store()
    first.record_job_loss(lost())
    first.settle_job_loss(BIG_ID, RERUN, now=200.0)
    first.close()
    (settled,) = make_store().job_losses()
    assert (settled.job_id, settled.outcome, settled.settled_at) == (BIG_ID, RERUN, 200.0)


def test_of_many_writers_on_two_daemons_one_settles_a_loss(
    make_store: Callable[[], SqlStore],
) -> None:
    stores = [make_store(), make_store()]
    stores[0].record_job_loss(lost())

    def settle(worker: int) -> bool:
        return stores[worker % 2].settle_job_loss(BIG_ID, RERUN, now=200.0 + worker)

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(settle, range(16)))
    assert won.count(True) == 1
    (settled,) = stores[1].job_losses(settled=True)
    assert settled.settled_at == 200.0 + won.index(True)
