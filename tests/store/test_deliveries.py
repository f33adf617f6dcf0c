"""A webhook delivery's GUID and its job are recorded in one transaction (``take_deliveries``).

The bug this guards against: the GUID was committed before the job was, so a delivery answered
202 and then lost to a crash between the two writes was dropped as a duplicate when GitHub (or
an operator) delivered it again: the job was never known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runnerscale.model import JobState
from runnerscale.protocols import Delivery, ObservedJob, Store
from runnerscale.store import SqlStore
from runnerscale.store.memory import MemoryStore
from runnerscale.store.sql import DELIVERY_TTL


def queued(job_id: int) -> ObservedJob:
    return ObservedJob(
        id=job_id, repo="acme/app", labels=("linux",), state=JobState.QUEUED, created_at=1.0
    )


class CrashError(Exception):
    """The process dying between the GUID's write and the job's."""


def test_the_guid_and_the_job_are_recorded_together(store: Store) -> None:
    taken = store.take_deliveries([Delivery("g-1", queued(1)), Delivery("g-2", queued(2))], 10.0)
    assert [t.new for t in taken] == [True, True]
    assert [t.before for t in taken] == [None, None]
    assert [t.after.id if t.after else None for t in taken] == [1, 2]
    assert [job.id for job in store.jobs([JobState.QUEUED])] == [1, 2]
    assert store.remember_delivery("g-1", 11.0) is False


def test_duplicates_within_and_across_batches_record_nothing(store: Store) -> None:
    store.take_deliveries([Delivery("g-1", queued(1))], 10.0)
    in_progress = ObservedJob(
        id=1,
        repo="acme/app",
        labels=("linux",),
        state=JobState.IN_PROGRESS,
        created_at=1.0,
        started_at=5.0,
    )
    taken = store.take_deliveries(
        [Delivery("g-1", in_progress), Delivery("g-3", queued(3)), Delivery("g-3", queued(4))],
        11.0,
    )
    assert [t.new for t in taken] == [False, True, False]
    assert taken[0].after is None
    assert store.get_job(1) is not None
    assert store.get_job(1).state is JobState.QUEUED  # type: ignore[union-attr]
    assert store.get_job(4) is None


def test_no_guid_is_never_a_duplicate_and_no_job_records_the_guid_alone(store: Store) -> None:
    taken = store.take_deliveries([Delivery(None, queued(1)), Delivery(None, queued(1))], 10.0)
    assert [t.new for t in taken] == [True, True]
    assert taken[0].before is None
    assert taken[1].before is not None  # the second saw the first
    taken = store.take_deliveries([Delivery("g-9")], 10.0)
    assert taken[0].new
    assert taken[0].after is None
    assert store.take_deliveries([Delivery("g-9")], 11.0)[0].new is False


def test_guids_older_than_a_day_are_forgotten(store: Store) -> None:
    store.take_deliveries([Delivery("old", queued(1))], 1000.0)
    later = 1000.0 + DELIVERY_TTL + 1
    assert store.take_deliveries([Delivery("old", queued(1))], later)[0].new is True


def _crash_on_the_job_write(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise CrashError

    # (the SQL stores insert jobs first heard of in bulk, and merge the others one by one)
    for write in ("_observe", "_insert_jobs"):
        if hasattr(store, write):
            monkeypatch.setattr(store, write, crash)


def test_a_crash_before_the_job_is_written_loses_no_job(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole group is undone: the redelivery is taken, not dropped as a duplicate."""
    with monkeypatch.context() as patch:
        _crash_on_the_job_write(store, patch)
        with pytest.raises(CrashError):
            store.take_deliveries([Delivery("g-1", queued(1))], 10.0)
    if isinstance(store, MemoryStore):
        return  # nothing survives its process anyway: the SQL stores are what a crash tests
    assert store.get_job(1) is None
    redelivered = store.take_deliveries([Delivery("g-1", queued(1))], 20.0)
    assert redelivered[0].new is True
    assert store.get_job(1) is not None


def test_a_restarted_store_holds_each_acknowledged_job(
    make_store: Callable[[], SqlStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a 202 stands for survives a restart; a group that failed is absent whole."""
    first = make_store()
    first.take_deliveries([Delivery(f"g-{n}", queued(n)) for n in range(1, 4)], 10.0)
    with monkeypatch.context() as patch:
        _crash_on_the_job_write(first, patch)
        with pytest.raises(CrashError):
            first.take_deliveries([Delivery("g-4", queued(4)), Delivery("g-5", queued(5))], 11.0)
    first.close()
    second = make_store()
    assert [job.id for job in second.jobs()] == [1, 2, 3]
    taken = second.take_deliveries([Delivery("g-4", queued(4)), Delivery("g-1", queued(1))], 12.0)
    assert [t.new for t in taken] == [True, False]


def test_set_job_pools_writes_each_and_skips_jobs_gone(store: Store) -> None:
    for job_id in (1, 2, 3):
        store.observe_job(queued(job_id), 1.0)
    store.set_job_pools({1: "linux", 2: "gpu", 3: None, 404: "linux"})
    assert {job.id: job.pool for job in store.jobs()} == {1: "linux", 2: "gpu", 3: None}
    store.set_job_pools({})
    store.set_job_pools({2: None})
    assert store.get_job(2).pool is None  # type: ignore[union-attr]
